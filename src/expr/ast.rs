//! The syntax tree of an expression, with the source span of every node (for error carets).

/// Byte offsets `[start, end)` into the expression text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
    Xor,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&",
            BinOp::Or => "|",
            BinOp::Xor => "^",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Pos,
    Invert,
}

/// One item inside `x[...]`.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexItem {
    Index(Expr),
    Slice { start: Option<Box<Expr>>, stop: Option<Box<Expr>>, step: Option<Box<Expr>> },
    Ellipsis,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number; `int` is set when it was written without a fraction or exponent.
    Num {
        value: f64,
        int: Option<i64>,
    },
    /// An imaginary literal, `2j` (`plan::complex` lowers it to its parts before planning).
    Imag(f64),
    Str(String),
    Name(String),
    Unary {
        op: UnOp,
        arg: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `f(a, b, key=c)`
    Call {
        func: String,
        args: Vec<Expr>,
        kwargs: Vec<(String, Expr)>,
    },
    /// `x.f(a, key=b)`
    Method {
        recv: Box<Expr>,
        name: String,
        args: Vec<Expr>,
        kwargs: Vec<(String, Expr)>,
    },
    /// `x.T`
    Attr {
        recv: Box<Expr>,
        name: String,
    },
    Index {
        recv: Box<Expr>,
        items: Vec<IndexItem>,
    },
    Tuple(Vec<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Levels of nodes below and including this one (a leaf is 1): the parser refuses trees
    /// deeper than [`MAX_DEPTH`](crate::expr::parser::MAX_DEPTH), so that every recursive walk of
    /// a tree (typing, planning, dropping it) stays far from the end of the stack.
    pub depth: u32,
}

impl Expr {
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        let depth = 1 + kind.children().map(|c| c.depth).max().unwrap_or(0);
        Expr { kind, span, depth }
    }
}

impl ExprKind {
    /// The sub-expressions of a node.
    pub fn children(&self) -> impl Iterator<Item = &Expr> {
        let v: Vec<&Expr> = match self {
            ExprKind::Num { .. } | ExprKind::Imag(_) | ExprKind::Str(_) | ExprKind::Name(_) => vec![],
            ExprKind::Unary { arg, .. } => vec![arg],
            ExprKind::Binary { lhs, rhs, .. } => vec![lhs, rhs],
            ExprKind::Call { args, kwargs, .. } => args.iter().chain(kwargs.iter().map(|(_, v)| v)).collect(),
            ExprKind::Method { recv, args, kwargs, .. } => {
                std::iter::once(&**recv).chain(args.iter()).chain(kwargs.iter().map(|(_, v)| v)).collect()
            }
            ExprKind::Attr { recv, .. } => vec![recv],
            ExprKind::Index { recv, items } => {
                let mut v = vec![&**recv];
                for it in items {
                    match it {
                        IndexItem::Index(e) => v.push(e),
                        IndexItem::Slice { start, stop, step } => {
                            v.extend(start.as_deref().into_iter().chain(stop.as_deref()).chain(step.as_deref()))
                        }
                        IndexItem::Ellipsis => {}
                    }
                }
                v
            }
            ExprKind::Tuple(items) => items.iter().collect(),
        };
        v.into_iter()
    }
}
