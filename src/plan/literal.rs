//! Python's arithmetic on literals. In a NumPy expression, `2 * 3.5`, `-1`, `4 - 2` or `2 ** -1`
//! are computed by Python before NumPy sees them, and the result is again a Python scalar — a weak
//! literal under NEP 50 (`u8 + (4 - 2)` stays uint8). The plan folds such operations into one
//! literal with Python's semantics: integers are exact (an overflow of 64 bits is refused, as dsk's
//! literals are 64-bit), `/` and negative powers of integers give floats, `//` and `%` floor,
//! division by zero and complex results are refused, and bools are integers in arithmetic.

use crate::expr::ast::{BinOp, UnOp};
use crate::kernels::elementwise::divmod;

/// A Python scalar.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Py {
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl Py {
    fn int(self) -> Option<i64> {
        match self {
            Py::Bool(b) => Some(b as i64),
            Py::Int(i) => Some(i),
            Py::Float(_) => None,
        }
    }

    fn float(self) -> f64 {
        match self {
            Py::Bool(b) => b as u8 as f64,
            Py::Int(i) => i as f64,
            Py::Float(f) => f,
        }
    }
}

const OVERFLOW: &str = "this integer arithmetic on literals exceeds 64 bits (dsk's literals are 64-bit integers)";

/// `a op b` as Python computes it.
pub fn binary(op: BinOp, a: Py, b: Py) -> Result<Py, String> {
    use BinOp::*;
    if op.is_comparison() {
        return Ok(Py::Bool(compare(op, a, b)));
    }
    match op {
        And | Or | Xor => {
            return match (a, b) {
                (Py::Bool(x), Py::Bool(y)) => Ok(Py::Bool(match op {
                    And => x & y,
                    Or => x | y,
                    _ => x ^ y,
                })),
                (Py::Float(_), _) | (_, Py::Float(_)) => {
                    Err(format!("bitwise {} needs integer or bool literals, not floats", op.symbol()))
                }
                _ => {
                    let (x, y) = (a.int().unwrap_or(0), b.int().unwrap_or(0));
                    Ok(Py::Int(match op {
                        And => x & y,
                        Or => x | y,
                        _ => x ^ y,
                    }))
                }
            };
        }
        _ => {}
    }
    match (a.int(), b.int()) {
        (Some(x), Some(y)) => int_op(op, x, y),
        _ => float_op(op, a.float(), b.float()),
    }
}

fn int_op(op: BinOp, x: i64, y: i64) -> Result<Py, String> {
    use BinOp::*;
    let checked = |v: Option<i64>| v.map(Py::Int).ok_or_else(|| OVERFLOW.to_string());
    match op {
        Add => checked(x.checked_add(y)),
        Sub => checked(x.checked_sub(y)),
        Mul => checked(x.checked_mul(y)),
        Div => {
            if y == 0 {
                return Err("division by zero".into());
            }
            Ok(Py::Float(x as f64 / y as f64))
        }
        FloorDiv | Mod => {
            if y == 0 {
                return Err("integer division or modulo by zero".into());
            }
            let q = x.checked_div_euclid(y).ok_or_else(|| OVERFLOW.to_string())?;
            let r = x.rem_euclid(y);
            // Python floors: the remainder takes the divisor's sign
            let (q, r) = if r != 0 && y < 0 { (q - 1, r + y) } else { (q, r) };
            Ok(Py::Int(if op == FloorDiv { q } else { r }))
        }
        Pow => {
            if y < 0 {
                if x == 0 {
                    return Err("0 cannot be raised to a negative power".into());
                }
                return Ok(Py::Float((x as f64).powf(y as f64)));
            }
            let e = u32::try_from(y).map_err(|_| OVERFLOW.to_string())?;
            checked(x.checked_pow(e))
        }
        _ => Err(format!("{} is not arithmetic", op.symbol())),
    }
}

fn float_op(op: BinOp, x: f64, y: f64) -> Result<Py, String> {
    use BinOp::*;
    Ok(Py::Float(match op {
        Add => x + y,
        Sub => x - y,
        Mul => x * y,
        Div => {
            if y == 0.0 {
                return Err("float division by zero".into());
            }
            x / y
        }
        FloorDiv | Mod => {
            if y == 0.0 {
                return Err("float floor division or modulo by zero".into());
            }
            let (q, r) = divmod(x, y);
            if op == FloorDiv {
                q
            } else {
                r
            }
        }
        Pow => {
            if x == 0.0 && y < 0.0 {
                return Err("0.0 cannot be raised to a negative power".into());
            }
            if x < 0.0 && y.is_finite() && y.fract() != 0.0 {
                return Err("a negative number raised to a fractional power is complex".into());
            }
            let r = x.powf(y);
            if r.is_infinite() && x.is_finite() && y.is_finite() {
                // Python raises OverflowError where a float power overflows
                return Err("this power of literals overflows a float (Python refuses it too)".into());
            }
            r
        }
        _ => return Err(format!("{} is not arithmetic", op.symbol())),
    }))
}

/// Python compares numbers exactly, ints against floats included.
fn compare(op: BinOp, a: Py, b: Py) -> bool {
    use std::cmp::Ordering;
    let ord = match (a.int(), b.int()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        (Some(x), None) => cmp_int_float(x, b.float()),
        (None, Some(y)) => cmp_int_float(y, a.float()).map(Ordering::reverse),
        (None, None) => a.float().partial_cmp(&b.float()),
    };
    match (op, ord) {
        (BinOp::Ne, None) => true,
        (_, None) => false,
        (BinOp::Lt, Some(o)) => o == Ordering::Less,
        (BinOp::Le, Some(o)) => o != Ordering::Greater,
        (BinOp::Gt, Some(o)) => o == Ordering::Greater,
        (BinOp::Ge, Some(o)) => o != Ordering::Less,
        (BinOp::Eq, Some(o)) => o == Ordering::Equal,
        (_, Some(o)) => o != Ordering::Equal,
    }
}

/// The order of an integer and a float, exactly (NaN: none).
fn cmp_int_float(i: i64, f: f64) -> Option<std::cmp::Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= 9.3e18 {
        return Some(std::cmp::Ordering::Less);
    }
    if f <= -9.3e18 {
        return Some(std::cmp::Ordering::Greater);
    }
    // i against floor(f), then the fraction decides ties
    let fl = f.floor();
    Some(match (i as i128).cmp(&(fl as i128)) {
        std::cmp::Ordering::Equal if f > fl => std::cmp::Ordering::Less,
        o => o,
    })
}

/// The value of an expression made only of literals and operators (`4 - 2`, `-1`, `2 ** 10`,
/// `nan`), as Python computes it; `None` when it is anything else.
pub fn eval(e: &crate::expr::ast::Expr) -> Option<Result<Py, String>> {
    use crate::expr::ast::ExprKind;
    match &e.kind {
        ExprKind::Num { value, int } => Some(Ok(match int {
            Some(i) => Py::Int(*i),
            None => Py::Float(*value),
        })),
        ExprKind::Name(n) => match n.as_str() {
            "nan" | "NaN" => Some(Ok(Py::Float(f64::NAN))),
            "inf" | "Infinity" => Some(Ok(Py::Float(f64::INFINITY))),
            "pi" => Some(Ok(Py::Float(std::f64::consts::PI))),
            "e" => Some(Ok(Py::Float(std::f64::consts::E))),
            "True" | "true" => Some(Ok(Py::Bool(true))),
            "False" | "false" => Some(Ok(Py::Bool(false))),
            _ => None,
        },
        ExprKind::Unary { op, arg } => Some(eval(arg)?.and_then(|v| unary(*op, v))),
        ExprKind::Binary { op, lhs, rhs } => {
            let (a, b) = (eval(lhs)?, eval(rhs)?);
            Some(a.and_then(|a| b.and_then(|b| binary(*op, a, b))))
        }
        _ => None,
    }
}

/// `op a` as Python computes it.
pub fn unary(op: UnOp, a: Py) -> Result<Py, String> {
    match (op, a) {
        (UnOp::Pos, Py::Float(f)) => Ok(Py::Float(f)),
        (UnOp::Neg, Py::Float(f)) => Ok(Py::Float(-f)),
        (UnOp::Invert, Py::Float(_)) => Err("~ needs an integer or bool, not a float".into()),
        (UnOp::Pos, x) => Ok(Py::Int(x.int().unwrap_or(0))),
        (UnOp::Neg, x) => x.int().unwrap_or(0).checked_neg().map(Py::Int).ok_or_else(|| OVERFLOW.to_string()),
        (UnOp::Invert, x) => Ok(Py::Int(!x.int().unwrap_or(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_semantics() {
        assert_eq!(binary(BinOp::Pow, Py::Int(2), Py::Int(-1)), Ok(Py::Float(0.5)));
        assert_eq!(binary(BinOp::Sub, Py::Int(4), Py::Int(2)), Ok(Py::Int(2)));
        assert_eq!(binary(BinOp::FloorDiv, Py::Int(-7), Py::Int(2)), Ok(Py::Int(-4)));
        assert_eq!(binary(BinOp::Mod, Py::Int(-7), Py::Int(2)), Ok(Py::Int(1)));
        assert_eq!(binary(BinOp::Mod, Py::Int(7), Py::Int(-2)), Ok(Py::Int(-1)));
        assert_eq!(binary(BinOp::FloorDiv, Py::Int(7), Py::Int(-2)), Ok(Py::Int(-4)));
        assert_eq!(binary(BinOp::Div, Py::Int(1), Py::Int(2)), Ok(Py::Float(0.5)));
        assert_eq!(binary(BinOp::Add, Py::Bool(true), Py::Bool(true)), Ok(Py::Int(2)));
        assert_eq!(binary(BinOp::And, Py::Bool(true), Py::Bool(false)), Ok(Py::Bool(false)));
        assert_eq!(binary(BinOp::Mod, Py::Float(-5.5), Py::Float(2.0)), Ok(Py::Float(0.5)));
        assert!(binary(BinOp::FloorDiv, Py::Int(1), Py::Int(0)).is_err());
        assert!(binary(BinOp::Div, Py::Float(1.0), Py::Float(0.0)).is_err());
        assert!(binary(BinOp::Mul, Py::Int(i64::MAX), Py::Int(2)).is_err());
        assert!(binary(BinOp::Pow, Py::Float(-8.0), Py::Float(0.5)).is_err());
        assert_eq!(binary(BinOp::Eq, Py::Int(9007199254740993), Py::Float(9007199254740992.0)), Ok(Py::Bool(false)));
        assert_eq!(binary(BinOp::Lt, Py::Int(2), Py::Float(2.5)), Ok(Py::Bool(true)));
        assert_eq!(binary(BinOp::Ne, Py::Float(f64::NAN), Py::Int(1)), Ok(Py::Bool(true)));
        assert_eq!(unary(UnOp::Neg, Py::Bool(true)), Ok(Py::Int(-1)));
        assert_eq!(unary(UnOp::Invert, Py::Bool(true)), Ok(Py::Int(-2)));
        assert_eq!(unary(UnOp::Pos, Py::Bool(true)), Ok(Py::Int(1)));
    }
}
