//! NumPy's type rules (NumPy 2, NEP 50) for dsk's dtypes: promotion between arrays, "weak" Python
//! scalars, and the result dtype of every operator and function. docs/expressions.md has the table.
//!
//! Where NumPy would produce float16 (`sqrt` of int8, uint8 or bool), dsk produces float32: it has
//! no float16.

use crate::dtype::DType;

/// The type of an operand while typing an expression: an array dtype, or a Python literal whose
/// type is "weak" (it adapts to the array it meets, as in NumPy 2).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ty {
    Array(DType),
    WeakInt,
    WeakFloat,
    WeakBool,
}

impl Ty {
    /// The dtype this operand has on its own (a literal alone: int64, float64, bool).
    pub fn concrete(self) -> DType {
        match self {
            Ty::Array(d) => d,
            Ty::WeakInt => DType::Int64,
            Ty::WeakFloat => DType::Float64,
            Ty::WeakBool => DType::Bool,
        }
    }
}

fn rank_int(d: DType) -> (bool, usize) {
    (d.is_signed_int(), d.size())
}

fn int_of(signed: bool, size: usize) -> DType {
    match (signed, size) {
        (true, 1) => DType::Int8,
        (true, 2) => DType::Int16,
        (true, 4) => DType::Int32,
        (true, _) => DType::Int64,
        (false, 1) => DType::Uint8,
        (false, 2) => DType::Uint16,
        (false, 4) => DType::Uint32,
        (false, _) => DType::Uint64,
    }
}

/// `numpy.promote_types(a, b)` for dsk's dtypes.
pub fn promote(a: DType, b: DType) -> DType {
    use DType::*;
    if a == b {
        return a;
    }
    match (a, b) {
        (Bool, x) | (x, Bool) => x,
        (Float64, _) | (_, Float64) => Float64,
        (Float32, x) | (x, Float32) => {
            if x.size() <= 2 {
                Float32
            } else {
                Float64
            }
        }
        _ => {
            let (sa, za) = rank_int(a);
            let (sb, zb) = rank_int(b);
            if sa == sb {
                int_of(sa, za.max(zb))
            } else {
                // one signed, one unsigned
                let (zs, zu) = if sa { (za, zb) } else { (zb, za) };
                if zs > zu {
                    int_of(true, zs)
                } else if zu < 8 {
                    int_of(true, zu * 2)
                } else {
                    Float64
                }
            }
        }
    }
}

/// The common type of operands, weak literals adapting to arrays (NEP 50): an int literal takes the
/// array's integer type (or float type); a float literal takes the array's float type, or float64
/// for integer arrays; a bool literal takes anything.
pub fn result_type(tys: &[Ty]) -> DType {
    let arrays: Vec<DType> = tys.iter().filter_map(|t| if let Ty::Array(d) = t { Some(*d) } else { None }).collect();
    let has_float_lit = tys.contains(&Ty::WeakFloat);
    let has_int_lit = tys.contains(&Ty::WeakInt);
    match arrays.split_first() {
        None => {
            if has_float_lit {
                DType::Float64
            } else if has_int_lit {
                DType::Int64
            } else {
                DType::Bool
            }
        }
        Some((first, rest)) => {
            let mut d = rest.iter().fold(*first, |acc, &x| promote(acc, x));
            if has_float_lit && !d.is_float() {
                d = DType::Float64;
            } else if has_int_lit && d.is_bool() {
                d = DType::Int64;
            }
            d
        }
    }
}

/// The float type NumPy's float functions (sqrt, sin, exp, true division…) compute in.
pub fn float_of(d: DType) -> DType {
    match d {
        DType::Float32 | DType::Float64 => d,
        DType::Int16 | DType::Uint16 => DType::Float32,
        // NumPy: float16 for bool, int8, uint8 — dsk has no float16
        DType::Bool | DType::Int8 | DType::Uint8 => DType::Float32,
        _ => DType::Float64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DType::*;

    #[test]
    fn promotion_matches_numpy() {
        // numpy.promote_types
        assert_eq!(promote(Int8, Uint8), Int16);
        assert_eq!(promote(Int16, Uint16), Int32);
        assert_eq!(promote(Int32, Uint32), Int64);
        assert_eq!(promote(Int64, Uint64), Float64);
        assert_eq!(promote(Uint8, Int32), Int32);
        assert_eq!(promote(Uint32, Int8), Int64);
        assert_eq!(promote(Int16, Float32), Float32);
        assert_eq!(promote(Int32, Float32), Float64);
        assert_eq!(promote(Float32, Float64), Float64);
        assert_eq!(promote(Bool, Uint16), Uint16);
        assert_eq!(promote(Uint8, Uint64), Uint64);
    }

    #[test]
    fn weak_scalars_follow_nep50() {
        assert_eq!(result_type(&[Ty::Array(Int8), Ty::WeakInt]), Int8);
        assert_eq!(result_type(&[Ty::Array(Uint8), Ty::WeakFloat]), Float64);
        assert_eq!(result_type(&[Ty::Array(Float32), Ty::WeakFloat]), Float32);
        assert_eq!(result_type(&[Ty::Array(Bool), Ty::WeakInt]), Int64);
        assert_eq!(result_type(&[Ty::Array(Bool), Ty::WeakFloat]), Float64);
        assert_eq!(result_type(&[Ty::WeakInt, Ty::WeakInt]), Int64);
        assert_eq!(result_type(&[Ty::WeakInt, Ty::WeakFloat]), Float64);
    }
}
