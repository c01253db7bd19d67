//! Complex numbers, lowered to their real and imaginary parts before planning.
//!
//! dsk holds a complex64/complex128 array as its *view*: the parts side by side on a last axis of
//! length 2, which is how complex elements lie in memory (`ArrayMeta::complex`). An expression
//! over complex values is rewritten here into real expressions of the parts, with NumPy's
//! formulas, so that the planner, the kernels and the executor only ever see real arrays:
//!
//! - an input `z` is `z[..., 0]` + `z[..., 1]`·i; a literal `2j` is 0.0 + 2.0·i;
//! - a real operand `x` of a complex operation is `x` + zeros·i (zeros of `x`'s shape and type:
//!   NumPy converts it to complex, so `(inf+1j) * 2` is `inf+nanj` here too);
//! - `+`, `-`, unary `-`, `conj`, `real`, `imag`, `where` (a complex condition holds where the
//!   number is not 0), indexing, `.T`, `transpose`,
//!   `rechunk`, `sum`, `mean` and `cumsum` act on each part; `astype(x, 'complex64')` casts both;
//! - `*` is (ac − bd) + (ad + bc)i and `square(z)` is `z * z`, as NumPy's loops compute them; `/`
//!   is Smith's algorithm exactly as NumPy's loop runs it, in the operands' common type; `abs` is
//!   the C library's `hypot(a, b)`, as NumPy's; `==` compares both parts, `!=` either; `isnan` is
//!   either part NaN, `isfinite` both parts finite;
//! - refused: `<`, `<=`, `>`, `>=` (complex numbers have no order; NumPy orders them by real part,
//!   then imaginary, Python refuses — dsk does as Python), `//` and `%` (NumPy refuses them too),
//!   `**`, bitwise operators, and every other function and reduction of a complex value.
//!
//! A complex result is its parts stacked on a last axis of 2 ([`PAIR`], a
//! [`NodeKind::Pair`](super::NodeKind::Pair)), which the store writes as a complex array and the
//! exporters print as complex numbers.

use crate::expr::ast::{BinOp, Expr, ExprKind, IndexItem, Span, UnOp};
use crate::expr::parser::ExprError;

/// The internal function that stacks a complex value's parts (a name no expression can spell).
pub const PAIR: &str = "complex parts";
/// The internal function giving zeros of its argument's shape and type.
pub const ZERO: &str = "zeros like";
/// The internal function casting its first argument to the common type of the other four.
pub const COMMON: &str = "common part";
/// The internal function giving the conjugate of a real value: itself, but int8 for bools (NumPy's
/// `conjugate` has no bool loop), and a NumPy scalar for a Python literal (a ufunc's result).
pub const CONJ_REAL: &str = "real conj";
/// The internal function giving the number of elements of its first argument summed into each of
/// its second (a Python int, as NumPy's `mean` divides by).
pub const COUNT: &str = "count summed";
/// The internal function making a Python literal the NumPy scalar a ufunc gives for it (float64;
/// arrays are left as they are).
pub const STRONG: &str = "numpy scalar";

/// What dsk computes with complex values, for the errors that refuse the rest.
const SUPPORTED: &str = "dsk computes + - * / == != and abs, real, imag, conj, square, where, isnan, isfinite, astype, sum, mean and cumsum with complex values";

/// A lowered expression: real, or the real and imaginary parts of a complex one (always of one
/// shape).
enum Low {
    Real(Expr),
    Complex(Expr, Expr),
}

/// Rewrite `e` over real values: the expression and whether its result is complex (its parts then
/// stacked by [`PAIR`]). `complex` names the inputs that are complex arrays (given as their views).
pub fn lower(e: &Expr, complex: &[&str]) -> Result<(Expr, bool), ExprError> {
    let l = Lowering { complex };
    let out = match l.lower(e)? {
        Low::Real(r) => (r, false),
        Low::Complex(re, im) => (call(PAIR, vec![re, im], e.span), true),
    };
    // the rewritten tree is deeper than the text (a division is several levels): keep every
    // recursive walk of it as far from the end of the stack as the parser keeps the text's
    if out.0.depth > 4 * crate::expr::parser::MAX_DEPTH {
        return Err(ExprError::new(
            "the expression nests too deeply once its complex operations are expanded; split it into steps (eval -o an intermediate)",
            e.span,
        ));
    }
    Ok(out)
}

struct Lowering<'a> {
    complex: &'a [&'a str],
}

fn node(kind: ExprKind, span: Span) -> Expr {
    Expr::new(kind, span)
}

fn call(func: &str, args: Vec<Expr>, span: Span) -> Expr {
    node(ExprKind::Call { func: func.to_string(), args, kwargs: vec![] }, span)
}

fn bin(op: BinOp, a: Expr, b: Expr, span: Span) -> Expr {
    node(ExprKind::Binary { op, lhs: Box::new(a), rhs: Box::new(b) }, span)
}

fn neg(a: Expr, span: Span) -> Expr {
    node(ExprKind::Unary { op: UnOp::Neg, arg: Box::new(a) }, span)
}

fn float(v: f64, span: Span) -> Expr {
    node(ExprKind::Num { value: v, int: None }, span)
}

/// `z[..., k]`: part `k` of the complex input `z` (its view's last axis).
fn part(z: &Expr, k: i64) -> Expr {
    let span = z.span;
    let k = node(ExprKind::Num { value: k as f64, int: Some(k) }, span);
    node(ExprKind::Index { recv: Box::new(z.clone()), items: vec![IndexItem::Ellipsis, IndexItem::Index(k)] }, span)
}

fn zero(x: &Expr) -> Expr {
    call(ZERO, vec![x.clone()], x.span)
}

fn strong(x: Expr) -> Expr {
    let span = x.span;
    call(STRONG, vec![x], span)
}

/// The value of a Python number literal as lowering writes them: `2`, `-2.5`, and the zero
/// imaginary part of a real literal.
fn literal(e: &Expr) -> Option<f64> {
    match &e.kind {
        ExprKind::Num { value, .. } => Some(*value),
        ExprKind::Unary { op: UnOp::Neg, arg } => literal(arg).map(|v| -v),
        ExprKind::Unary { op: UnOp::Pos, arg } => literal(arg),
        ExprKind::Call { func, args, .. } if func == ZERO && args.len() == 1 => literal(&args[0]).map(|_| 0.0),
        _ => None,
    }
}

/// `a op b` of Python complex numbers (or of a real and a complex one), as Python computes it
/// before NumPy sees the result: `None` for operations Python does not fold here.
fn python_complex(op: BinOp, (a, b): (f64, f64), (c, d): (f64, f64)) -> Option<Result<Low, String>> {
    let span = Span::default();
    let num = |re: f64, im: f64| Ok(Low::Complex(float(re, span), float(im, span)));
    Some(match op {
        BinOp::Add => num(a + c, b + d),
        BinOp::Sub => num(a - c, b - d),
        BinOp::Mul => num(a * c - b * d, a * d + b * c),
        // CPython's _Py_c_quot
        BinOp::Div => {
            let (abs_c, abs_d) = (c.abs(), d.abs());
            if abs_c >= abs_d {
                if abs_c == 0.0 {
                    return Some(Err("complex division by zero (Python raises ZeroDivisionError)".into()));
                }
                let ratio = d / c;
                let denom = c + d * ratio;
                num((a + b * ratio) / denom, (b - a * ratio) / denom)
            } else if abs_d >= abs_c {
                let ratio = c / d;
                let denom = c * ratio + d;
                num((a * ratio + b) / denom, (b * ratio - a) / denom)
            } else {
                num(f64::NAN, f64::NAN) // a NaN divisor
            }
        }
        BinOp::Eq | BinOp::Ne => {
            let eq = a == c && b == d;
            let v = if op == BinOp::Eq { eq } else { !eq };
            Ok(Low::Real(node(ExprKind::Name(if v { "True" } else { "False" }.into()), span)))
        }
        _ => return None,
    })
}

fn err<T>(msg: impl Into<String>, span: Span) -> Result<T, ExprError> {
    Err(ExprError::new(msg, span))
}

/// `l` with the source span `span` (for error carets).
fn with_span(l: Low, span: Span) -> Low {
    let at = |mut e: Expr| {
        e.span = span;
        e
    };
    match l {
        Low::Real(x) => Low::Real(at(x)),
        Low::Complex(a, b) => Low::Complex(at(a), at(b)),
    }
}

impl Low {
    /// The parts: a real value's imaginary part is zeros of its shape and type.
    fn parts(self) -> (Expr, Expr) {
        match self {
            Low::Real(x) => {
                let z = zero(&x);
                (x, z)
            }
            Low::Complex(a, b) => (a, b),
        }
    }
}

impl Lowering<'_> {
    fn lower(&self, e: &Expr) -> Result<Low, ExprError> {
        let span = e.span;
        Ok(match &e.kind {
            ExprKind::Num { .. } | ExprKind::Str(_) | ExprKind::Tuple(_) => Low::Real(e.clone()),
            ExprKind::Imag(v) => Low::Complex(float(0.0, span), float(*v, span)),
            ExprKind::Name(n) if self.complex.contains(&n.as_str()) => Low::Complex(part(e, 0), part(e, 1)),
            ExprKind::Name(_) => Low::Real(e.clone()),
            ExprKind::Unary { op, arg } => match (self.lower(arg)?, op) {
                (Low::Real(a), _) => Low::Real(node(ExprKind::Unary { op: *op, arg: Box::new(a) }, span)),
                (Low::Complex(a, b), UnOp::Neg) => Low::Complex(neg(a, span), neg(b, span)),
                (c @ Low::Complex(..), UnOp::Pos) => c,
                (Low::Complex(..), UnOp::Invert) => {
                    return err("~ needs a bool or integer operand, not a complex one", span)
                }
            },
            ExprKind::Binary { op, lhs, rhs } => {
                let (l, r) = (self.lower(lhs)?, self.lower(rhs)?);
                self.binary(*op, l, r, span)?
            }
            ExprKind::Call { func, args, kwargs } => self.call(func, args, kwargs, span)?,
            ExprKind::Method { recv, name, args, kwargs } => self.method(recv, name, args, kwargs, span)?,
            ExprKind::Attr { recv, name } => match (self.lower(recv)?, name.as_str()) {
                (Low::Real(r), "real") => Low::Real(r),
                (Low::Real(r), "imag") => Low::Real(zero(&r)),
                (Low::Real(r), _) => Low::Real(node(ExprKind::Attr { recv: Box::new(r), name: name.clone() }, span)),
                (Low::Complex(a, _), "real") => Low::Real(a),
                (Low::Complex(_, b), "imag") => Low::Real(b),
                (Low::Complex(a, b), _) => {
                    let attr = |x: Expr| node(ExprKind::Attr { recv: Box::new(x), name: name.clone() }, span);
                    Low::Complex(attr(a), attr(b))
                }
            },
            ExprKind::Index { recv, items } => {
                let items = items.iter().map(|it| self.real_item(it)).collect::<Result<Vec<_>, _>>()?;
                let index = |x: Expr| node(ExprKind::Index { recv: Box::new(x), items: items.clone() }, span);
                match self.lower(recv)? {
                    Low::Real(r) => Low::Real(index(r)),
                    Low::Complex(a, b) => Low::Complex(index(a), index(b)),
                }
            }
        })
    }

    /// `e`, which must be real (an index, a shape, an axis, a condition).
    fn real(&self, e: &Expr, what: &str) -> Result<Expr, ExprError> {
        match self.lower(e)? {
            Low::Real(r) => Ok(r),
            Low::Complex(..) => err(format!("{what} cannot be complex"), e.span),
        }
    }

    fn real_item(&self, it: &IndexItem) -> Result<IndexItem, ExprError> {
        let b = |e: &Option<Box<Expr>>| -> Result<Option<Box<Expr>>, ExprError> {
            e.as_deref().map(|e| self.real(e, "an index").map(Box::new)).transpose()
        };
        Ok(match it {
            IndexItem::Ellipsis => IndexItem::Ellipsis,
            IndexItem::Index(e) => IndexItem::Index(self.real(e, "an index")?),
            IndexItem::Slice { start, stop, step } => {
                IndexItem::Slice { start: b(start)?, stop: b(stop)?, step: b(step)? }
            }
        })
    }

    fn real_kwargs(&self, kwargs: &[(String, Expr)]) -> Result<Vec<(String, Expr)>, ExprError> {
        kwargs.iter().map(|(k, v)| Ok((k.clone(), self.real(v, &format!("{k}="))?))).collect()
    }

    fn binary(&self, op: BinOp, l: Low, r: Low, span: Span) -> Result<Low, ExprError> {
        if let (Low::Real(a), Low::Real(b)) = (&l, &r) {
            return Ok(Low::Real(bin(op, a.clone(), b.clone(), span)));
        }
        let ((a, b), (c, d)) = (l.parts(), r.parts());
        // Python computes with its own numbers before NumPy sees them
        if let (Some(a), Some(b), Some(c), Some(d)) = (literal(&a), literal(&b), literal(&c), literal(&d)) {
            if let Some(folded) = python_complex(op, (a, b), (c, d)) {
                return folded.map_err(|m| ExprError::new(m, span)).map(|l| with_span(l, span));
            }
        }
        let (add, sub, mul) = (
            |x: Expr, y: Expr| bin(BinOp::Add, x, y, span),
            |x: Expr, y: Expr| bin(BinOp::Sub, x, y, span),
            |x: Expr, y: Expr| bin(BinOp::Mul, x, y, span),
        );
        Ok(match op {
            BinOp::Add => Low::Complex(add(a, c), add(b, d)),
            BinOp::Sub => Low::Complex(sub(a, c), sub(b, d)),
            BinOp::Mul => Low::Complex(
                sub(mul(a.clone(), c.clone()), mul(b.clone(), d.clone())),
                add(mul(a, d), mul(b, c)),
            ),
            BinOp::Div => divide(a, b, c, d, span),
            BinOp::Eq => Low::Real(bin(BinOp::And, bin(BinOp::Eq, a, c, span), bin(BinOp::Eq, b, d, span), span)),
            BinOp::Ne => Low::Real(bin(BinOp::Or, bin(BinOp::Ne, a, c, span), bin(BinOp::Ne, b, d, span), span)),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                return err(
                    format!(
                        "complex numbers have no order, so {} is refused (NumPy orders them by real part, then imaginary; Python refuses) — compare real(z) or abs(z)",
                        op.symbol()
                    ),
                    span,
                )
            }
            BinOp::FloorDiv | BinOp::Mod => {
                return err(format!("{} is not defined for complex numbers (NumPy refuses it too)", op.symbol()), span)
            }
            BinOp::Pow => return err(format!("** of complex numbers is not supported — write z * z; {SUPPORTED}"), span),
            BinOp::And | BinOp::Or | BinOp::Xor => {
                return err(format!("bitwise {} needs bool or integer operands, not complex ones", op.symbol()), span)
            }
        })
    }

    fn call(&self, func: &str, args: &[Expr], kwargs: &[(String, Expr)], span: Span) -> Result<Low, ExprError> {
        let one = |name: &str| -> Result<Low, ExprError> {
            match (args, kwargs) {
                ([x], []) => self.lower(x),
                _ => err(format!("{name}() takes one array: {name}(z)"), span),
            }
        };
        Ok(match func {
            "real" => Low::Real(match one(func)? {
                Low::Real(x) => x,
                Low::Complex(a, _) => a,
            }),
            "imag" => Low::Real(match one(func)? {
                Low::Real(x) => zero(&x),
                Low::Complex(_, b) => b,
            }),
            "conj" | "conjugate" => match one(func)? {
                Low::Real(x) => Low::Real(call(CONJ_REAL, vec![x], span)),
                Low::Complex(a, b) => Low::Complex(strong(a), strong(neg(b, span))),
            },
            "abs" | "absolute" => Low::Real(match one(func)? {
                Low::Real(x) => call("abs", vec![x], span),
                Low::Complex(a, b) => call("hypot", vec![a, b], span),
            }),
            "square" => match one(func)? {
                Low::Real(x) => Low::Real(call("square", vec![x], span)),
                z => {
                    let (a, b) = z.parts();
                    match self.binary(BinOp::Mul, Low::Complex(a.clone(), b.clone()), Low::Complex(a, b), span)? {
                        Low::Complex(re, im) => Low::Complex(strong(re), strong(im)),
                        real => real,
                    }
                }
            },
            "isnan" | "isfinite" => match one(func)? {
                Low::Real(x) => Low::Real(call(func, vec![x], span)),
                Low::Complex(a, b) => {
                    let (f, join) = if func == "isnan" { ("isnan", BinOp::Or) } else { ("isfinite", BinOp::And) };
                    Low::Real(bin(join, call(f, vec![a], span), call(f, vec![b], span), span))
                }
            },
            "where" if args.len() == 3 && kwargs.is_empty() => {
                let c = match self.lower(&args[0])? {
                    Low::Real(c) => c,
                    // a complex condition holds where the number is not 0, as NumPy's truth value
                    Low::Complex(a, b) => {
                        let zero = || node(ExprKind::Num { value: 0.0, int: Some(0) }, span);
                        bin(BinOp::Or, bin(BinOp::Ne, a, zero(), span), bin(BinOp::Ne, b, zero(), span), span)
                    }
                };
                match (self.lower(&args[1])?, self.lower(&args[2])?) {
                    (Low::Real(x), Low::Real(y)) => Low::Real(call("where", vec![c, x, y], span)),
                    (x, y) => {
                        let ((a, b), (p, q)) = (x.parts(), y.parts());
                        Low::Complex(call("where", vec![c.clone(), a, p], span), call("where", vec![c, b, q], span))
                    }
                }
            }
            "astype" if args.len() == 2 && kwargs.is_empty() => {
                let name = match &args[1].kind {
                    ExprKind::Str(t) | ExprKind::Name(t) => Some(t.as_str()),
                    _ => None,
                };
                match (self.lower(&args[0])?, name.and_then(crate::dtype::complex_part)) {
                    (x, Some(p)) => {
                        let (a, b) = x.parts();
                        let t = node(ExprKind::Str(p.name().to_string()), args[1].span);
                        Low::Complex(call("astype", vec![a, t.clone()], span), call("astype", vec![b, t], span))
                    }
                    (Low::Real(x), None) => Low::Real(call("astype", vec![x, args[1].clone()], span)),
                    (Low::Complex(..), None) if name.and_then(crate::dtype::DType::parse).is_some() => {
                        return err(
                            "casting complex numbers to a real dtype discards the imaginary part (NumPy warns) — write astype(real(z), …) or astype(abs(z), …)",
                            span,
                        )
                    }
                    (Low::Complex(..), None) => {
                        return err(
                            format!("unknown dtype {}; complex values take complex64 or complex128", name.map(|n| format!("'{n}'")).unwrap_or_else(|| "(not a name)".into())),
                            args[1].span,
                        )
                    }
                }
            }
            "sum" | "mean" | "cumsum" | "transpose" | "rechunk" if !args.is_empty() => {
                let rest = args[1..]
                    .iter()
                    .map(|a| self.real(a, &format!("{func}'s argument")))
                    .collect::<Result<Vec<_>, _>>()?;
                let kwargs = self.real_kwargs(kwargs)?;
                let apply = |f: &str, x: Expr| {
                    let mut all = vec![x];
                    all.extend(rest.iter().cloned());
                    node(ExprKind::Call { func: f.to_string(), args: all, kwargs: kwargs.clone() }, span)
                };
                match self.lower(&args[0])? {
                    Low::Real(x) => Low::Real(apply(func, x)),
                    Low::Complex(a, b) if func == "mean" => mean(apply("sum", a.clone()), apply("sum", b), a, span),
                    Low::Complex(a, b) => Low::Complex(apply(func, a), apply(func, b)),
                }
            }
            _ => {
                if let Some(t) = kwargs.iter().find(|(k, _)| k == "dtype").and_then(|(_, v)| match &v.kind {
                    ExprKind::Str(t) if crate::dtype::complex_part(t).is_some() => Some(t),
                    _ => None,
                }) {
                    return err(format!("{func}() makes real arrays, not {t} — add 0j to make them complex"), span);
                }
                let mut real_args = vec![];
                for a in args {
                    match self.lower(a)? {
                        Low::Real(x) => real_args.push(x),
                        Low::Complex(..) => {
                            return err(format!("{func}() of complex numbers is not supported — {SUPPORTED}"), a.span)
                        }
                    }
                }
                let kwargs = self.real_kwargs(kwargs)?;
                Low::Real(node(ExprKind::Call { func: func.to_string(), args: real_args, kwargs }, span))
            }
        })
    }

    fn method(
        &self,
        recv: &Expr,
        name: &str,
        args: &[Expr],
        kwargs: &[(String, Expr)],
        span: Span,
    ) -> Result<Low, ExprError> {
        match name {
            "conj" | "conjugate" if args.is_empty() && kwargs.is_empty() => {
                return self.call(name, std::slice::from_ref(recv), &[], span)
            }
            "astype" if args.len() == 1 && kwargs.is_empty() => {
                return self.call("astype", &[recv.clone(), args[0].clone()], &[], span)
            }
            _ => {}
        }
        let args =
            args.iter().map(|a| self.real(a, &format!(".{name}()'s argument"))).collect::<Result<Vec<_>, _>>()?;
        let kwargs = self.real_kwargs(kwargs)?;
        let apply = |x: Expr| {
            node(
                ExprKind::Method {
                    recv: Box::new(x),
                    name: name.to_string(),
                    args: args.clone(),
                    kwargs: kwargs.clone(),
                },
                span,
            )
        };
        Ok(match self.lower(recv)? {
            Low::Real(x) => Low::Real(apply(x)),
            Low::Complex(a, b) if name == "mean" => {
                let sum = |x: Expr| {
                    let kind = ExprKind::Method {
                        recv: Box::new(x),
                        name: "sum".into(),
                        args: args.clone(),
                        kwargs: kwargs.clone(),
                    };
                    node(kind, span)
                };
                mean(sum(a.clone()), sum(b), a, span)
            }
            Low::Complex(a, b) if matches!(name, "sum" | "cumsum" | "transpose" | "rechunk") => {
                Low::Complex(apply(a), apply(b))
            }
            Low::Complex(..) => {
                return err(format!(".{name}() of complex numbers is not supported — {SUPPORTED}"), span)
            }
        })
    }
}

/// The mean of a complex value as NumPy's `mean` computes it: its sum (`re`, `im`, the sums of
/// the parts of `part`) divided, as a complex number, by the count of elements summed.
fn mean(re: Expr, im: Expr, part: Expr, span: Span) -> Low {
    let count = call(COUNT, vec![part, re.clone()], span);
    let zero = node(ExprKind::Num { value: 0.0, int: Some(0) }, span);
    divide(re, im, count, zero, span)
}

/// `(a + bi) / (c + di)` as NumPy's loop computes it (Smith's algorithm), in the operands' common
/// type:
///
/// ```text
/// if |c| >= |d|:
///     if c == 0 and d == 0: (a / |c|, b / |c|)             # inf or nan, as C gives
///     else: rat = d / c; scl = 1 / (c + d·rat); ((a + b·rat)·scl, (b − a·rat)·scl)
/// else:     rat = c / d; scl = 1 / (d + c·rat); ((a·rat + b)·scl, (b·rat − a)·scl)
/// ```
fn divide(a: Expr, b: Expr, c: Expr, d: Expr, span: Span) -> Low {
    let all = [a.clone(), b.clone(), c.clone(), d.clone()];
    let t = |x: Expr| {
        let mut args = vec![x];
        args.extend(all.iter().cloned());
        call(COMMON, args, span)
    };
    let (a, b, c, d) = (t(a), t(b), t(c), t(d));
    let (add, sub, mul, div) = (
        |x: Expr, y: Expr| bin(BinOp::Add, x, y, span),
        |x: Expr, y: Expr| bin(BinOp::Sub, x, y, span),
        |x: Expr, y: Expr| bin(BinOp::Mul, x, y, span),
        |x: Expr, y: Expr| bin(BinOp::Div, x, y, span),
    );
    let abs = |x: Expr| call("abs", vec![x], span);
    let one = || float(1.0, span);
    let zero_lit = || node(ExprKind::Num { value: 0.0, int: Some(0) }, span);
    let r#where = |c: Expr, x: Expr, y: Expr| call("where", vec![c, x, y], span);
    let (ac, ad) = (abs(c.clone()), abs(d.clone()));
    let big = bin(BinOp::Ge, ac.clone(), ad.clone(), span);
    let both_zero =
        bin(BinOp::And, bin(BinOp::Eq, ac.clone(), zero_lit(), span), bin(BinOp::Eq, ad, zero_lit(), span), span);
    // |c| >= |d|
    let rat1 = div(d.clone(), c.clone());
    let scl1 = div(one(), add(c.clone(), mul(d.clone(), rat1.clone())));
    let re1 = mul(add(a.clone(), mul(b.clone(), rat1.clone())), scl1.clone());
    let im1 = mul(sub(b.clone(), mul(a.clone(), rat1)), scl1);
    let re1 = r#where(both_zero.clone(), div(a.clone(), ac.clone()), re1);
    let im1 = r#where(both_zero, div(b.clone(), ac), im1);
    // |c| < |d|
    let rat2 = div(c.clone(), d.clone());
    let scl2 = div(one(), add(d, mul(c, rat2.clone())));
    let re2 = mul(add(mul(a.clone(), rat2.clone()), b.clone()), scl2.clone());
    let im2 = mul(sub(mul(b, rat2), a), scl2);
    Low::Complex(r#where(big.clone(), re1, re2), r#where(big, im1, im2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lowered(text: &str, complex: &[&str]) -> Result<(String, bool), String> {
        let ast = crate::expr::parser::parse(text).map_err(|e| e.msg.clone())?;
        lower(&ast, complex).map(|(e, c)| (format!("{e:?}"), c)).map_err(|e| e.msg)
    }

    #[test]
    fn real_expressions_are_left_as_they_are() {
        let ast = crate::expr::parser::parse("sin(x) * 2 + x[1:, ::2].sum(axis=0)").unwrap();
        let (e, c) = lower(&ast, &[]).unwrap();
        assert_eq!(e, ast);
        assert!(!c);
    }

    #[test]
    fn complex_values_are_refused_where_numpy_or_python_refuse_them() {
        for (text, want) in [
            ("z < 1", "no order"),
            ("z // 2", "not defined for complex"),
            ("z % 2", "not defined for complex"),
            ("z ** 2", "write z * z"),
            ("~z", "not a complex one"),
            ("z & 1", "bitwise"),
            ("sin(z)", "not supported"),
            ("z.max()", "not supported"),
            ("z.astype('float32')", "discards the imaginary part"),
            ("x[1j]", "an index cannot be complex"),
            ("zeros((2, 2), dtype='complex64')", "add 0j"),
        ] {
            let got = lowered(text, &["z"]).unwrap_err();
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn complex_results_are_marked() {
        assert!(lowered("z * 2", &["z"]).unwrap().1);
        assert!(lowered("x + 1j", &[]).unwrap().1);
        assert!(!lowered("abs(z) + real(z) + imag(z)", &["z"]).unwrap().1);
        assert!(!lowered("z == 1j", &["z"]).unwrap().1);
        assert!(lowered("z.conj().T[::-1].sum(axis=0)", &["z"]).unwrap().1);
    }
}
