//! Lexer and recursive-descent parser with Python's operator precedence:
//!
//! ```text
//! |   <   ^   <   &   <   comparisons?   (NumPy users write (a > 0) & (b < 1))
//! ```
//! Precisely, from loosest to tightest: comparisons, `|`, `^`, `&`, `+ -`, `* / // %`, unary
//! `- + ~`, `**` (right-associative; `-x**2` is `-(x**2)`), then calls, indexing, attributes.
//! As in Python, `&` binds tighter than `<`. Chained comparisons (`a < b < c`) are refused: on
//! arrays they are ambiguous.

use super::ast::{BinOp, Expr, ExprKind, IndexItem, Span, UnOp};

/// A parse or type error at a span of the expression text.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprError {
    pub msg: String,
    pub span: Span,
}

impl ExprError {
    pub fn new(msg: impl Into<String>, span: Span) -> ExprError {
        ExprError { msg: msg.into(), span }
    }

    /// The message, then the expression with a caret under the offending columns.
    pub fn render(&self, text: &str) -> String {
        let col = text[..self.span.start.min(text.len())].chars().count();
        let width = text[self.span.start.min(text.len())..self.span.end.min(text.len())].chars().count().max(1);
        format!("{} (column {})\n  {}\n  {}{}", self.msg, col + 1, text, " ".repeat(col), "^".repeat(width))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64, Option<i64>),
    Imag(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
    End,
}

const OPS: [&str; 25] = [
    "**", "//", "<=", ">=", "==", "!=", "...", "+", "-", "*", "/", "%", "<", ">", "&", "|", "^", "~", "(", ")", "[",
    "]", ",", ":", ".",
];

fn lex(text: &str) -> Result<Vec<(Tok, Span)>, ExprError> {
    let bytes = text.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && bytes.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let mut is_int = true;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'.' && !text[i..].starts_with("...") {
                is_int = false;
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                    i += 1;
                }
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                let mut j = i + 1;
                if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                    j += 1;
                }
                if j < bytes.len() && bytes[j].is_ascii_digit() {
                    is_int = false;
                    i = j;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let lit = text[start..i].replace('_', "");
            // an imaginary literal, as Python's 2j or 1.5e3J
            if i < bytes.len()
                && (bytes[i] == b'j' || bytes[i] == b'J')
                && !bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                let span = Span::new(start, i + 1);
                let value: f64 = lit.parse().map_err(|_| ExprError::new(format!("{lit:?} is not a number"), span))?;
                out.push((Tok::Imag(value), span));
                i += 1;
                continue;
            }
            let span = Span::new(start, i);
            if is_int && lit.len() > 1 && lit.starts_with('0') && lit.bytes().any(|b| b != b'0') {
                return Err(ExprError::new(
                    format!(
                        "leading zeros in an integer are not allowed (as in Python): write {}",
                        lit.trim_start_matches('0')
                    ),
                    span,
                ));
            }
            let value: f64 = lit.parse().map_err(|_| ExprError::new(format!("{lit:?} is not a number"), span))?;
            let int = if is_int {
                Some(lit.parse::<i64>().map_err(|_| ExprError::new(format!("integer {lit} is too large"), span))?)
            } else {
                None
            };
            out.push((Tok::Num(value, int), span));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(text[start..i].to_string()), Span::new(start, i)));
            continue;
        }
        if c == b'\'' || c == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += 1;
            }
            if i >= bytes.len() {
                return Err(ExprError::new("this string is not closed", Span::new(start, text.len())));
            }
            i += 1;
            out.push((Tok::Str(text[start + 1..i - 1].to_string()), Span::new(start, i)));
            continue;
        }
        if c == b'=' && !text[i..].starts_with("==") {
            out.push((Tok::Op("="), Span::new(i, i + 1)));
            i += 1;
            continue;
        }
        match OPS.iter().find(|op| text[i..].starts_with(*op)) {
            Some(op) => {
                out.push((Tok::Op(op), Span::new(i, i + op.len())));
                i += op.len();
            }
            None => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(ExprError::new(format!("unexpected character {ch:?}"), Span::new(i, i + ch.len_utf8())));
            }
        }
    }
    out.push((Tok::End, Span::new(text.len(), text.len())));
    Ok(out)
}

/// The deepest expression accepted: nesting (parentheses, calls, indexing, unary operators) and
/// chains of binary operators both count. Deeper input is refused with a clear error instead of
/// exhausting the stack in the parser or in the passes that walk the tree.
pub const MAX_DEPTH: u32 = 200;

struct Parser {
    toks: Vec<(Tok, Span)>,
    pos: usize,
    /// Nested `expr`/`unary` calls in progress (bounded by [`MAX_DEPTH`]).
    nest: u32,
}

fn too_deep(span: Span) -> ExprError {
    ExprError::new(
        format!("the expression nests too deeply (more than {MAX_DEPTH} levels); split it into steps (eval -o an intermediate)"),
        span,
    )
}

/// `e`, refused when it is deeper than [`MAX_DEPTH`].
fn checked(e: Expr) -> Result<Expr, ExprError> {
    if e.depth > MAX_DEPTH {
        return Err(too_deep(e.span));
    }
    Ok(e)
}

/// Parse an expression.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    if text.trim().is_empty() {
        return Err(ExprError::new("the expression is empty", Span::new(0, 0)));
    }
    let mut p = Parser { toks: lex(text)?, pos: 0, nest: 0 };
    let e = p.expr()?;
    match p.peek() {
        Tok::End => Ok(e),
        _ => Err(ExprError::new("expected an operator or the end of the expression", p.span())),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn span(&self) -> Span {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> (Tok, Span) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn expect_op(&mut self, op: &str, what: &str) -> Result<Span, ExprError> {
        if self.is_op(op) {
            Ok(self.bump().1)
        } else {
            Err(ExprError::new(format!("expected '{op}' {what}"), self.span()))
        }
    }

    fn expr(&mut self) -> Result<Expr, ExprError> {
        self.nest += 1;
        if self.nest > MAX_DEPTH {
            return Err(too_deep(self.span()));
        }
        let e = self.comparison();
        self.nest -= 1;
        e
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let lhs = self.bitor()?;
        let op = match self.peek() {
            Tok::Op("<") => BinOp::Lt,
            Tok::Op("<=") => BinOp::Le,
            Tok::Op(">") => BinOp::Gt,
            Tok::Op(">=") => BinOp::Ge,
            Tok::Op("==") => BinOp::Eq,
            Tok::Op("!=") => BinOp::Ne,
            _ => return Ok(lhs),
        };
        self.bump();
        let rhs = self.bitor()?;
        if let Tok::Op("<" | "<=" | ">" | ">=" | "==" | "!=") = self.peek() {
            return Err(ExprError::new(
                "chained comparisons are ambiguous on arrays; write (a < b) & (b < c)",
                self.span(),
            ));
        }
        let span = lhs.span.to(rhs.span);
        checked(Expr::new(ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span))
    }

    fn left_assoc(
        &mut self,
        ops: &[(&str, BinOp)],
        next: fn(&mut Parser) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        let mut lhs = next(self)?;
        loop {
            let Some(op) = ops.iter().find(|(s, _)| self.is_op(s)).map(|x| x.1) else { return Ok(lhs) };
            self.bump();
            let rhs = next(self)?;
            let span = lhs.span.to(rhs.span);
            lhs = checked(Expr::new(ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span))?;
        }
    }

    fn bitor(&mut self) -> Result<Expr, ExprError> {
        self.left_assoc(&[("|", BinOp::Or)], Parser::bitxor)
    }

    fn bitxor(&mut self) -> Result<Expr, ExprError> {
        self.left_assoc(&[("^", BinOp::Xor)], Parser::bitand)
    }

    fn bitand(&mut self) -> Result<Expr, ExprError> {
        self.left_assoc(&[("&", BinOp::And)], Parser::sum)
    }

    fn sum(&mut self) -> Result<Expr, ExprError> {
        self.left_assoc(&[("+", BinOp::Add), ("-", BinOp::Sub)], Parser::term)
    }

    fn term(&mut self) -> Result<Expr, ExprError> {
        self.left_assoc(
            &[("*", BinOp::Mul), ("//", BinOp::FloorDiv), ("/", BinOp::Div), ("%", BinOp::Mod)],
            Parser::unary,
        )
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        let op = match self.peek() {
            Tok::Op("-") => UnOp::Neg,
            Tok::Op("+") => UnOp::Pos,
            Tok::Op("~") => UnOp::Invert,
            _ => return self.power(),
        };
        let start = self.bump().1;
        self.nest += 1;
        if self.nest > MAX_DEPTH {
            return Err(too_deep(start));
        }
        let arg = self.unary()?;
        self.nest -= 1;
        let span = start.to(arg.span);
        checked(Expr::new(ExprKind::Unary { op, arg: Box::new(arg) }, span))
    }

    fn power(&mut self) -> Result<Expr, ExprError> {
        let base = self.postfix()?;
        if self.is_op("**") {
            let op = self.bump().1;
            self.nest += 1;
            if self.nest > MAX_DEPTH {
                return Err(too_deep(op));
            }
            let exp = self.unary()?; // right-associative, and 2**-1 is allowed
            self.nest -= 1;
            let span = base.span.to(exp.span);
            return checked(Expr::new(
                ExprKind::Binary { op: BinOp::Pow, lhs: Box::new(base), rhs: Box::new(exp) },
                span,
            ));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.atom()?;
        loop {
            if self.is_op(".") {
                self.bump();
                let (tok, nspan) = self.bump();
                let Tok::Ident(name) = tok else {
                    return Err(ExprError::new("expected a method or attribute name after '.'", nspan));
                };
                if self.is_op("(") {
                    let open = self.bump().1;
                    let (args, kwargs, close) = self.call_args(open)?;
                    let span = e.span.to(close);
                    e = checked(Expr::new(ExprKind::Method { recv: Box::new(e), name, args, kwargs }, span))?;
                } else {
                    let span = e.span.to(nspan);
                    e = checked(Expr::new(ExprKind::Attr { recv: Box::new(e), name }, span))?;
                }
            } else if self.is_op("[") {
                let open = self.bump().1;
                let mut items = vec![];
                loop {
                    if self.is_op("]") {
                        break;
                    }
                    items.push(self.index_item()?);
                    if self.is_op(",") {
                        self.bump();
                        continue;
                    }
                    break;
                }
                let close = self.expect_op("]", &format!("to close '[' at column {}", open.start + 1))?;
                let span = e.span.to(close);
                e = checked(Expr::new(ExprKind::Index { recv: Box::new(e), items }, span))?;
            } else {
                return Ok(e);
            }
        }
    }

    fn index_item(&mut self) -> Result<IndexItem, ExprError> {
        if self.is_op("...") {
            self.bump();
            return Ok(IndexItem::Ellipsis);
        }
        let bound = |p: &mut Parser| -> Result<Option<Expr>, ExprError> {
            if p.is_op(":") || p.is_op(",") || p.is_op("]") {
                Ok(None)
            } else {
                p.expr().map(Some)
            }
        };
        let start = bound(self)?;
        if !self.is_op(":") {
            return match start {
                Some(e) => Ok(IndexItem::Index(e)),
                None => Err(ExprError::new("expected an index or a slice", self.span())),
            };
        }
        self.bump();
        let stop = bound(self)?;
        let step = if self.is_op(":") {
            self.bump();
            bound(self)?
        } else {
            None
        };
        Ok(IndexItem::Slice { start: start.map(Box::new), stop: stop.map(Box::new), step: step.map(Box::new) })
    }

    /// Arguments after '(' up to and including ')'.
    #[allow(clippy::type_complexity)]
    fn call_args(&mut self, open: Span) -> Result<(Vec<Expr>, Vec<(String, Expr)>, Span), ExprError> {
        let mut args = vec![];
        let mut kwargs: Vec<(String, Expr)> = vec![];
        loop {
            if self.is_op(")") {
                break;
            }
            // keyword argument: NAME '=' expr
            if let (Tok::Ident(name), Some((Tok::Op("="), _))) = (self.peek().clone(), self.toks.get(self.pos + 1)) {
                let nspan = self.bump().1;
                self.bump();
                if kwargs.iter().any(|(k, _)| *k == name) {
                    return Err(ExprError::new(format!("keyword argument {name:?} is repeated"), nspan));
                }
                kwargs.push((name, self.expr()?));
            } else {
                if !kwargs.is_empty() {
                    return Err(ExprError::new("positional argument after keyword arguments", self.span()));
                }
                args.push(self.expr()?);
            }
            if self.is_op(",") {
                self.bump();
                continue;
            }
            break;
        }
        let close = self.expect_op(")", &format!("to close '(' at column {}", open.start + 1))?;
        Ok((args, kwargs, close))
    }

    fn atom(&mut self) -> Result<Expr, ExprError> {
        let (tok, span) = self.bump();
        match tok {
            Tok::Num(value, int) => Ok(Expr::new(ExprKind::Num { value, int }, span)),
            Tok::Imag(value) => Ok(Expr::new(ExprKind::Imag(value), span)),
            Tok::Str(s) => Ok(Expr::new(ExprKind::Str(s), span)),
            Tok::Ident(name) => {
                if self.is_op("(") {
                    let open = self.bump().1;
                    let (args, kwargs, close) = self.call_args(open)?;
                    return checked(Expr::new(ExprKind::Call { func: name, args, kwargs }, span.to(close)));
                }
                // constants (nan, inf, pi, e) are names too: an input of that name shadows them
                Ok(Expr::new(ExprKind::Name(name), span))
            }
            Tok::Op("(") => {
                if self.is_op(")") {
                    let close = self.bump().1;
                    return Ok(Expr::new(ExprKind::Tuple(vec![]), span.to(close)));
                }
                let first = self.expr()?;
                if self.is_op(",") {
                    let mut items = vec![first];
                    while self.is_op(",") {
                        self.bump();
                        if self.is_op(")") {
                            break;
                        }
                        items.push(self.expr()?);
                    }
                    let close = self.expect_op(")", &format!("to close '(' at column {}", span.start + 1))?;
                    return checked(Expr::new(ExprKind::Tuple(items), span.to(close)));
                }
                self.expect_op(")", &format!("to close '(' at column {}", span.start + 1))?;
                Ok(first)
            }
            Tok::End => Err(ExprError::new("the expression ends too early: expected a value", span)),
            Tok::Op(op) => Err(ExprError::new(format!("expected a value, found '{op}'"), span)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Num { value, .. } => format!("{value}"),
            ExprKind::Imag(value) => format!("{value}j"),
            ExprKind::Str(s) => format!("'{s}'"),
            ExprKind::Name(n) => n.clone(),
            ExprKind::Unary { op, arg } => format!("({op:?} {})", show(arg)),
            ExprKind::Binary { op, lhs, rhs } => format!("({} {} {})", show(lhs), op.symbol(), show(rhs)),
            ExprKind::Call { func, args, kwargs } => {
                let mut a: Vec<String> = args.iter().map(show).collect();
                a.extend(kwargs.iter().map(|(k, v)| format!("{k}={}", show(v))));
                format!("{func}({})", a.join(", "))
            }
            ExprKind::Method { recv, name, args, .. } => {
                format!("{}.{name}({})", show(recv), args.iter().map(show).collect::<Vec<_>>().join(", "))
            }
            ExprKind::Attr { recv, name } => format!("{}.{name}", show(recv)),
            ExprKind::Index { recv, items } => format!("{}[{}]", show(recv), items.len()),
            ExprKind::Tuple(items) => format!("({})", items.iter().map(show).collect::<Vec<_>>().join(", ")),
        }
    }

    fn p(t: &str) -> String {
        match parse(t) {
            Ok(e) => show(&e),
            Err(e) => format!("ERR {}", e.render(t)),
        }
    }

    #[test]
    fn precedence_follows_python() {
        assert_eq!(p("-x**2"), "(Neg (x ** 2))");
        assert_eq!(p("2**-1"), "(2 ** (Neg 1))");
        assert_eq!(p("a**b**c"), "(a ** (b ** c))");
        assert_eq!(p("a + b * c - d"), "((a + (b * c)) - d)");
        assert_eq!(p("(x > 0) & (x < 1)"), "((x > 0) & (x < 1))");
        assert_eq!(p("x > 0 & y"), "(x > (0 & y))");
        assert_eq!(p("a // b % c"), "((a // b) % c)");
        assert_eq!(p("cos(x)**2"), "(cos(x) ** 2)");
        assert_eq!(p("x.T.astype('float32')"), "x.T.astype('float32')");
        assert_eq!(p("x[::-1, ::-1] * x"), "(x[2] * x)");
        assert_eq!(p("ones((3, 4), chunks=(2, 2))"), "ones((3, 4), chunks=(2, 2))");
        assert_eq!(p("x.mean(axis=1)"), "x.mean()");
        assert_eq!(p("1e-3 + .5"), "(0.001 + 0.5)");
        assert_eq!(p("e + nan"), "(e + nan)");
    }

    #[test]
    fn errors_point_at_the_column() {
        let t = "cos(x**2";
        let e = parse(t).err().map(|e| e.render(t)).unwrap_or_default();
        assert!(e.contains("expected ')'"), "{e}");
        assert!(e.ends_with("\n  cos(x**2\n          ^"), "{e}");
        assert!(p("a < b < c").contains("chained"));
        assert!(p("x +").contains("ends too early"));
        assert!(p("x $ y").contains("unexpected character '$'"));
        assert!(p("").contains("empty"));
        assert!(p("f(a=1, 2)").contains("positional argument after keyword"));
        assert!(p("'abc").contains("not closed"));
    }

    #[test]
    fn issue8_deep_nesting_is_a_clear_error_not_a_stack_overflow() {
        // the binary parses on a thread with dsk::STACK_BYTES of stack; so does this test
        std::thread::Builder::new()
            .stack_size(crate::STACK_BYTES)
            .spawn(deep_nesting)
            .expect("spawn")
            .join()
            .expect("no panic");
    }

    fn deep_nesting() {
        let n = 100_000;
        for text in [
            format!("{}x{}", "(".repeat(n), ")".repeat(n)),
            format!("{}x", "-".repeat(n)),
            format!("{}x", "~".repeat(n)),
            vec!["x"; n].join(" + "),
            vec!["2"; n].join(" ** "),
            format!("x{}", ".T".repeat(n)),
            format!("x{}", "[0]".repeat(n)),
            format!("{}x{}", "cos(".repeat(n), ")".repeat(n)),
            format!("{}x{}", "f(1, ".repeat(n), ")".repeat(n)),
            format!("{}x{}", "x[".repeat(n), "]".repeat(n)),
            format!("{}1{}", "(1, ".repeat(n), ")".repeat(n)),
        ] {
            let e = parse(&text).expect_err("too deep");
            assert!(e.msg.contains("nests too deeply"), "{}: {}", &text[..20], e.msg);
        }
        // just under the limit is fine
        let ok = format!("{}x{}", "(".repeat(50), ")".repeat(50));
        assert!(parse(&ok).is_ok());
        assert!(parse(&vec!["x"; 150].join(" + ")).is_ok());
    }

    #[test]
    fn no_input_panics_the_parser() {
        // a cheap fuzz: every prefix and many mutations of some expressions
        let seeds = ["(x * x[::-1, ::-1]).mean(axis=(0, 1))", "where(x > 0, sqrt(x), -x)**2 // 3", "a[1:2:3, ..., 4]"];
        let alphabet: Vec<char> = "()[],:.=+-*/%<>&|~^'\"0123456789ex_ ".chars().collect();
        let mut state = 12345u64;
        for s in seeds {
            for i in 0..=s.len() {
                let _ = parse(&s[..i]);
            }
            for _ in 0..3000 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut chars: Vec<char> = s.chars().collect();
                let pos = (state >> 33) as usize % chars.len();
                let c = alphabet[(state >> 20) as usize % alphabet.len()];
                match (state >> 10) % 3 {
                    0 => chars[pos] = c,
                    1 => chars.insert(pos, c),
                    _ => {
                        chars.remove(pos);
                    }
                }
                let t: String = chars.into_iter().collect();
                if let Err(e) = parse(&t) {
                    let _ = e.render(&t);
                }
            }
        }
    }
}
