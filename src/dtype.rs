//! Element types dsk computes with: the NumPy names, their sizes, and the [`Elem`] trait that lets
//! kernels and the store be written once, generic over the element type.
//!
//! This module owns the mapping between NumPy/Zarr dtype spellings and [`DType`]; it knows nothing of
//! files or expressions. Use [`with_dtype!`](crate::with_dtype) to turn a run-time [`DType`] into a
//! compile-time type parameter.

use std::fmt;

/// The element types dsk supports (NumPy names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Float32,
    Float64,
}

/// Every supported dtype, in NumPy's order (used in error messages and tests).
pub const ALL_DTYPES: [DType; 11] = [
    DType::Bool,
    DType::Int8,
    DType::Int16,
    DType::Int32,
    DType::Int64,
    DType::Uint8,
    DType::Uint16,
    DType::Uint32,
    DType::Uint64,
    DType::Float32,
    DType::Float64,
];

/// Whether `t` names float16 (`float16`, `f2`, `<f2`, `f16`, `half`): an array stored as
/// float16 and computed as float32 (see `ArrayMeta::half`).
pub fn is_half_name(t: &str) -> bool {
    matches!(t.trim().to_ascii_lowercase().as_str(), "float16" | "f2" | "<f2" | "f16" | "half")
}

/// The dtype of the parts of a complex dtype named `t` (`complex64` → float32, `complex128` →
/// float64; NumPy's spellings `c8`, `<c16`, `F`, `D`, `complex`, `cdouble`, …), or `None` when
/// `t` is not complex. dsk holds a complex array as its real and imaginary parts side by side on
/// a last axis of length 2 (see `ArrayMeta::complex`).
pub fn complex_part(t: &str) -> Option<DType> {
    let t = t.trim();
    let t = t.strip_prefix("np.").or_else(|| t.strip_prefix("numpy.")).unwrap_or(t);
    match t {
        "F" => return Some(DType::Float32),
        "D" => return Some(DType::Float64),
        _ => {}
    }
    let t = t.to_ascii_lowercase();
    let t = t.strip_prefix(['<', '|', '=']).unwrap_or(&t);
    match t {
        "complex64" | "c8" | "csingle" | "singlecomplex" => Some(DType::Float32),
        "complex128" | "c16" | "complex" | "complex_" | "cdouble" | "cfloat" => Some(DType::Float64),
        _ => None,
    }
}

/// The NumPy name of the complex dtype whose parts are `part` (float32 → complex64).
pub fn complex_name(part: DType) -> &'static str {
    if part == DType::Float32 {
        "complex64"
    } else {
        "complex128"
    }
}

impl DType {
    /// The NumPy name (`float64`), which is also the Zarr v3 `data_type` name.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::Int8 => "int8",
            DType::Int16 => "int16",
            DType::Int32 => "int32",
            DType::Int64 => "int64",
            DType::Uint8 => "uint8",
            DType::Uint16 => "uint16",
            DType::Uint32 => "uint32",
            DType::Uint64 => "uint64",
            DType::Float32 => "float32",
            DType::Float64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::Int8 | DType::Uint8 => 1,
            DType::Int16 | DType::Uint16 => 2,
            DType::Int32 | DType::Uint32 | DType::Float32 => 4,
            DType::Int64 | DType::Uint64 | DType::Float64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::Float32 | DType::Float64)
    }

    pub fn is_bool(self) -> bool {
        self == DType::Bool
    }

    pub fn is_signed_int(self) -> bool {
        matches!(self, DType::Int8 | DType::Int16 | DType::Int32 | DType::Int64)
    }

    pub fn is_unsigned_int(self) -> bool {
        matches!(self, DType::Uint8 | DType::Uint16 | DType::Uint32 | DType::Uint64)
    }

    pub fn is_int(self) -> bool {
        self.is_signed_int() || self.is_unsigned_int()
    }

    /// Parse a user-facing dtype name: NumPy names (`float64`, `int32`, `bool`), short Rust-style
    /// names (`f64`, `i32`, `u8`) and NumPy type codes (`f8`, `<i4`, `|b1`, `float`, `int`).
    ///
    /// NumPy's spellings, with NumPy's meaning: names (`float32`, `int`, `double`), type strings
    /// counting bytes (`i8` is int64, `u1` uint8, `f4` float32; with `<`, `|` or `=` byte order) and
    /// one-letter codes (`b` int8, `B` uint8, `h`, `i`, `l`, `q`, `f`, `d`, `?`). Names counting
    /// bits without the type word (`i16`, `u32`, `f64`) are accepted too where they cannot be read
    /// as byte counts.
    pub fn parse(s: &str) -> Option<DType> {
        let t = s.trim();
        let t = t.strip_prefix("np.").or_else(|| t.strip_prefix("numpy.")).unwrap_or(t);
        // one-letter codes are case-sensitive (b is int8, B uint8)
        let code = match t {
            "?" => Some(DType::Bool),
            "b" => Some(DType::Int8),
            "B" => Some(DType::Uint8),
            "h" => Some(DType::Int16),
            "H" => Some(DType::Uint16),
            "i" => Some(DType::Int32),
            "I" => Some(DType::Uint32),
            "l" | "q" => Some(DType::Int64),
            "L" | "Q" => Some(DType::Uint64),
            "f" => Some(DType::Float32),
            "d" => Some(DType::Float64),
            _ => None,
        };
        if code.is_some() {
            return code;
        }
        let t = t.to_ascii_lowercase();
        let t = t.strip_prefix(['<', '|', '=']).unwrap_or(&t);
        Some(match t {
            "bool" | "bool_" | "b1" => DType::Bool,
            "int8" | "i1" => DType::Int8,
            "int16" | "i2" | "i16" | "short" => DType::Int16,
            "int32" | "i4" | "i32" | "intc" => DType::Int32,
            "int64" | "i8" | "i64" | "int" | "int_" | "long" | "longlong" | "intp" => DType::Int64,
            "uint8" | "u1" | "ubyte" => DType::Uint8,
            "uint16" | "u2" | "u16" | "ushort" => DType::Uint16,
            "uint32" | "u4" | "u32" | "uintc" => DType::Uint32,
            "uint64" | "u8" | "u64" | "uint" | "ulong" | "ulonglong" | "uintp" => DType::Uint64,
            "float32" | "f4" | "f32" | "single" => DType::Float32,
            "float64" | "f8" | "f64" | "float" | "double" | "float_" => DType::Float64,
            "byte" => DType::Int8,
            _ => return None,
        })
    }

    /// Parse a Zarr v2 / NumPy array-protocol type string such as `<f8`, `>i4`, `|b1`, returning the
    /// dtype and whether the bytes are big-endian.
    pub fn parse_typestr(s: &str) -> Option<(DType, bool)> {
        let (order, code) = match s.chars().next()? {
            c @ ('<' | '>' | '|' | '=') => (c, &s[1..]),
            _ => ('=', s),
        };
        let dt = match code {
            "b1" | "?" => DType::Bool,
            "i1" => DType::Int8,
            "i2" => DType::Int16,
            "i4" => DType::Int32,
            "i8" => DType::Int64,
            "u1" => DType::Uint8,
            "u2" => DType::Uint16,
            "u4" => DType::Uint32,
            "u8" => DType::Uint64,
            "f4" => DType::Float32,
            "f8" => DType::Float64,
            _ => return None,
        };
        let big = match order {
            '>' => true,
            '=' => cfg!(target_endian = "big"),
            _ => false,
        };
        Some((dt, big && dt.size() > 1))
    }

    /// The little-endian NumPy type string (`<f8`, `|b1`) used in .npy headers.
    pub fn typestr(self) -> &'static str {
        match self {
            DType::Bool => "|b1",
            DType::Int8 => "|i1",
            DType::Int16 => "<i2",
            DType::Int32 => "<i4",
            DType::Int64 => "<i8",
            DType::Uint8 => "|u1",
            DType::Uint16 => "<u2",
            DType::Uint32 => "<u4",
            DType::Uint64 => "<u8",
            DType::Float32 => "<f4",
            DType::Float64 => "<f8",
        }
    }

    /// The list of accepted names, for error messages.
    pub fn accepted() -> String {
        ALL_DTYPES.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scalar value of any supported dtype, kept exactly (no float round trip for 64-bit ints).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(#[serde(with = "crate::serial::exact_f64")] f64),
}

impl Scalar {
    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => b as u8 as f64,
            Scalar::Int(i) => i as f64,
            Scalar::Uint(u) => u as f64,
            Scalar::Float(f) => f,
        }
    }

    /// Parse `text` as a value of `dtype`, refusing values the dtype cannot hold exactly
    /// (`300` for uint8, `1.5` for int32, `nan` for an integer type).
    pub fn parse_for(text: &str, dtype: DType) -> Result<Scalar, String> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        if dtype.is_bool() {
            return match lower.as_str() {
                "true" | "1" => Ok(Scalar::Bool(true)),
                "false" | "0" => Ok(Scalar::Bool(false)),
                _ => Err(format!("{t:?} is not a bool (use true or false)")),
            };
        }
        if dtype.is_float() {
            let v = match lower.as_str() {
                "nan" => f64::NAN,
                "inf" | "+inf" | "infinity" => f64::INFINITY,
                "-inf" | "-infinity" => f64::NEG_INFINITY,
                _ => t.parse::<f64>().map_err(|_| format!("{t:?} is not a number"))?,
            };
            return Ok(Scalar::Float(v));
        }
        let (lo, hi) = int_range(dtype);
        if let Ok(i) = t.parse::<i128>() {
            if i < lo || i > hi {
                return Err(format!("{t} does not fit in {dtype} (range {lo}..={hi})"));
            }
            return Ok(if dtype.is_signed_int() { Scalar::Int(i as i64) } else { Scalar::Uint(i as u64) });
        }
        match t.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f.is_finite() => Scalar::parse_for(&format!("{}", f as i128), dtype),
            Ok(_) => Err(format!("{t} is not an integer, as {dtype} needs")),
            Err(_) => Err(format!("{t:?} is not a number")),
        }
    }
}

/// Inclusive range of an integer dtype, as i128.
pub fn int_range(dtype: DType) -> (i128, i128) {
    match dtype {
        DType::Int8 => (i8::MIN as i128, i8::MAX as i128),
        DType::Int16 => (i16::MIN as i128, i16::MAX as i128),
        DType::Int32 => (i32::MIN as i128, i32::MAX as i128),
        DType::Int64 => (i64::MIN as i128, i64::MAX as i128),
        DType::Uint8 => (0, u8::MAX as i128),
        DType::Uint16 => (0, u16::MAX as i128),
        DType::Uint32 => (0, u32::MAX as i128),
        DType::Uint64 => (0, u64::MAX as i128),
        DType::Bool => (0, 1),
        DType::Float32 | DType::Float64 => (i128::MIN, i128::MAX),
    }
}

mod sealed {
    /// Only the eleven element types below implement [`Elem`](super::Elem): code elsewhere
    /// reinterprets slices of elements as bytes (and f64 slices by their `DTYPE`), which is sound
    /// only for these plain, padding-free types.
    pub trait Sealed {}
    impl Sealed for bool {}
    impl Sealed for i8 {}
    impl Sealed for i16 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type: the bridge between a run-time [`DType`] and generic kernels. Sealed: the
/// eleven dtypes are the only implementations.
///
/// Conversions follow NumPy's `astype` with `casting='unsafe'` for in-range values; they are used by
/// generators (which compute in f64 or i64 and store in the requested dtype).
pub trait Elem:
    sealed::Sealed
    + Copy
    + Default
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + fmt::Debug
    + zarrs::array::Element
    + zarrs::array::ElementOwned
    + 'static
{
    const DTYPE: DType;
    fn from_f64(v: f64) -> Self;
    fn from_i64(v: i64) -> Self;
    fn from_u64(v: u64) -> Self;
    fn to_f64(self) -> f64;
    /// As i64 (floats truncate toward zero and saturate, NaN gives 0; bools give 0 or 1).
    fn to_i64(self) -> i64;
    /// As u64 (negative integers wrap, as NumPy's casts do).
    fn to_u64(self) -> u64;
    /// Convert to another element type with NumPy's `astype` semantics (integers wrap; floats to
    /// integers truncate toward zero — dsk saturates out-of-range values and maps NaN to 0 where
    /// NumPy's result is undefined; anything non-zero, NaN included, is `true`).
    #[inline(always)]
    fn cast<U: Elem>(self) -> U {
        if Self::DTYPE.is_float() {
            U::from_f64(self.to_f64())
        } else if Self::DTYPE.is_unsigned_int() {
            U::from_u64(self.to_u64())
        } else {
            U::from_i64(self.to_i64())
        }
    }
    fn from_scalar(s: Scalar) -> Self {
        match s {
            Scalar::Bool(b) => Self::from_i64(b as i64),
            Scalar::Int(i) => Self::from_i64(i),
            Scalar::Uint(u) => Self::from_u64(u),
            Scalar::Float(f) => Self::from_f64(f),
        }
    }
    fn to_scalar(self) -> Scalar;
    /// Decode `dst.len()` elements from raw bytes (`src.len() == dst.len() * size`), swapping the byte
    /// order when `big_endian` differs from the host. Bools accept any non-zero byte as true.
    fn decode_bytes(src: &[u8], big_endian: bool, dst: &mut [Self]);
    /// The element as little-endian bytes appended to `out`.
    fn encode_le(src: &[Self], out: &mut Vec<u8>);
    /// Write the shortest text that reads back as the same value (NumPy-style `nan`, `inf`).
    fn write_text(self, out: &mut String);
}

/// `decode_bytes` and `encode_le` of a number type.
macro_rules! le_bytes {
    ($t:ty) => {
        fn decode_bytes(src: &[u8], big_endian: bool, dst: &mut [Self]) {
            const N: usize = std::mem::size_of::<$t>();
            let it = src.chunks_exact(N).zip(dst.iter_mut());
            if big_endian {
                for (b, d) in it {
                    *d = <$t>::from_be_bytes(b.try_into().unwrap_or([0; N]));
                }
            } else {
                for (b, d) in it {
                    *d = <$t>::from_le_bytes(b.try_into().unwrap_or([0; N]));
                }
            }
        }
        fn encode_le(src: &[Self], out: &mut Vec<u8>) {
            if cfg!(target_endian = "little") {
                out.extend_from_slice(bytemuck::cast_slice(src));
            } else {
                for v in src {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    };
}

macro_rules! impl_int_elem {
    ($t:ty, $dt:expr) => {
        impl Elem for $t {
            const DTYPE: DType = $dt;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            fn to_scalar(self) -> Scalar {
                #[allow(unused_comparisons)]
                if <$t>::MIN < 0 {
                    Scalar::Int(self as i64)
                } else {
                    Scalar::Uint(self as u64)
                }
            }
            le_bytes!($t);
            fn write_text(self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{}", self);
            }
        }
    };
}

impl_int_elem!(i8, DType::Int8);
impl_int_elem!(i16, DType::Int16);
impl_int_elem!(i32, DType::Int32);
impl_int_elem!(i64, DType::Int64);
impl_int_elem!(u8, DType::Uint8);
impl_int_elem!(u16, DType::Uint16);
impl_int_elem!(u32, DType::Uint32);
impl_int_elem!(u64, DType::Uint64);

macro_rules! impl_float_elem {
    ($t:ty, $dt:expr) => {
        impl Elem for $t {
            const DTYPE: DType = $dt;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            fn to_scalar(self) -> Scalar {
                Scalar::Float(self as f64)
            }
            le_bytes!($t);
            fn write_text(self, out: &mut String) {
                if self.is_nan() {
                    out.push_str("nan");
                } else if self.is_infinite() {
                    out.push_str(if self > 0.0 { "inf" } else { "-inf" });
                } else {
                    let mut b = ryu::Buffer::new();
                    out.push_str(b.format_finite(self));
                }
            }
        }
    };
}

impl_float_elem!(f32, DType::Float32);
impl_float_elem!(f64, DType::Float64);

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    #[inline(always)]
    fn from_u64(v: u64) -> Self {
        v != 0
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
    #[inline(always)]
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn to_scalar(self) -> Scalar {
        Scalar::Bool(self)
    }
    fn decode_bytes(src: &[u8], _big_endian: bool, dst: &mut [Self]) {
        for (b, d) in src.iter().zip(dst.iter_mut()) {
            *d = *b != 0;
        }
    }
    fn encode_le(src: &[Self], out: &mut Vec<u8>) {
        out.extend(src.iter().map(|&b| b as u8));
    }
    fn write_text(self, out: &mut String) {
        out.push_str(if self { "True" } else { "False" });
    }
}

/// Run `$body` with `$T` bound to the Rust type of the run-time dtype `$dt`.
///
/// ```ignore
/// with_dtype!(dtype, T => fill::<T>(&mut buf))
/// ```
#[macro_export]
macro_rules! with_dtype {
    ($dt:expr, $T:ident => $body:expr) => {
        match $dt {
            $crate::dtype::DType::Bool => {
                #[allow(dead_code)]
                type $T = bool;
                $body
            }
            $crate::dtype::DType::Int8 => {
                #[allow(dead_code)]
                type $T = i8;
                $body
            }
            $crate::dtype::DType::Int16 => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            $crate::dtype::DType::Int32 => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
            $crate::dtype::DType::Int64 => {
                #[allow(dead_code)]
                type $T = i64;
                $body
            }
            $crate::dtype::DType::Uint8 => {
                #[allow(dead_code)]
                type $T = u8;
                $body
            }
            $crate::dtype::DType::Uint16 => {
                #[allow(dead_code)]
                type $T = u16;
                $body
            }
            $crate::dtype::DType::Uint32 => {
                #[allow(dead_code)]
                type $T = u32;
                $body
            }
            $crate::dtype::DType::Uint64 => {
                #[allow(dead_code)]
                type $T = u64;
                $body
            }
            $crate::dtype::DType::Float32 => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::dtype::DType::Float64 => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in ALL_DTYPES {
            assert_eq!(DType::parse(d.name()), Some(d));
            assert_eq!(DType::parse_typestr(d.typestr()).map(|x| x.0), Some(d));
        }
        assert_eq!(DType::parse("f64"), Some(DType::Float64));
        assert_eq!(DType::parse("i32"), Some(DType::Int32));
        assert_eq!(DType::parse("complex128"), None);
    }

    #[test]
    fn issue8_type_strings_count_bytes_as_in_numpy() {
        // np.dtype('i8') is int64, not int8
        for (text, want) in [
            ("i8", DType::Int64),
            ("<i8", DType::Int64),
            ("u8", DType::Uint64),
            ("i1", DType::Int8),
            ("u1", DType::Uint8),
            ("|u1", DType::Uint8),
            ("f4", DType::Float32),
            ("=f8", DType::Float64),
            ("b", DType::Int8),
            ("B", DType::Uint8),
            ("h", DType::Int16),
            ("H", DType::Uint16),
            ("i", DType::Int32),
            ("I", DType::Uint32),
            ("q", DType::Int64),
            ("Q", DType::Uint64),
            ("f", DType::Float32),
            ("d", DType::Float64),
            ("?", DType::Bool),
            ("np.float32", DType::Float32),
            ("int", DType::Int64),
            ("float", DType::Float64),
        ] {
            assert_eq!(DType::parse(text), Some(want), "{text}");
        }
        assert_eq!(DType::parse(">i4"), None, "big-endian results are not written");
        assert_eq!(DType::parse("e"), None, "float16");
    }

    #[test]
    fn scalars_respect_the_dtype_range() {
        assert_eq!(Scalar::parse_for("255", DType::Uint8), Ok(Scalar::Uint(255)));
        assert!(Scalar::parse_for("256", DType::Uint8).is_err());
        assert!(Scalar::parse_for("-1", DType::Uint64).is_err());
        assert!(Scalar::parse_for("1.5", DType::Int32).is_err());
        assert_eq!(Scalar::parse_for("2.0", DType::Int32), Ok(Scalar::Int(2)));
        assert!(matches!(Scalar::parse_for("nan", DType::Float32), Ok(Scalar::Float(f)) if f.is_nan()));
        assert_eq!(Scalar::parse_for("true", DType::Bool), Ok(Scalar::Bool(true)));
    }

    #[test]
    fn text_is_shortest_round_trip() {
        let mut s = String::new();
        0.1f64.write_text(&mut s);
        s.push(',');
        f64::NEG_INFINITY.write_text(&mut s);
        s.push(',');
        1.0f32.write_text(&mut s);
        assert_eq!(s, "0.1,-inf,1.0");
    }
}

/// The shortest round-trip text of a number (as `write_text` gives it) in the form of Python's
/// `repr` inside a complex number: positional for decimal exponents from -4 to 15, without a
/// trailing `.0` (`1000000000000000`, `0.0001`), else scientific with a signed exponent of two
/// digits at least (`1e+16`, `1e-05`, `2.5e-300`); `nan`, `inf` unchanged.
fn python_repr(s: &str) -> String {
    let (sign, body) = s.strip_prefix('-').map(|b| ("-", b)).unwrap_or(("", s));
    if !body.starts_with(|c: char| c.is_ascii_digit()) {
        return s.to_string(); // nan, inf
    }
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0');
    if digits.is_empty() {
        return format!("{sign}0");
    }
    // value = 0.digits × 10^point
    let point = int.len() as i64 - lead as i64 + exp;
    let sci = point - 1;
    let n = digits.len() as i64;
    let text = if (-4..16).contains(&sci) {
        if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point >= n {
            format!("{digits}{}", "0".repeat((point - n) as usize))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        }
    } else {
        let rest = if n > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        format!("{}{rest}e{}{:02}", &digits[..1], if sci < 0 { '-' } else { '+' }, sci.abs())
    };
    format!("{sign}{text}")
}

/// Write `re + im·i` as Python's `repr` of a complex number does: `(1+2j)`, `(1.5-0j)`,
/// `(nan+infj)`, and `2j` without parentheses when the real part is +0.
pub fn write_complex<T: Elem>(re: T, im: T, out: &mut String) {
    let text = |v: T| {
        let mut s = String::new();
        v.write_text(&mut s);
        python_repr(&s)
    };
    let (r, i) = (re.to_f64(), im.to_f64());
    let imag = if i.is_sign_negative() && !i.is_nan() {
        format!("-{}j", text(T::from_f64(-i)))
    } else {
        format!("+{}j", text(T::from_f64(i.abs())))
    };
    if r == 0.0 && r.is_sign_positive() {
        out.push_str(imag.trim_start_matches('+'));
    } else {
        out.push_str(&format!("({}{imag})", text(re)));
    }
}

#[cfg(test)]
mod complex_text_tests {
    #[test]
    fn complex_numbers_print_as_python_prints_them() {
        let show = |re: f64, im: f64| {
            let mut s = String::new();
            super::write_complex(re, im, &mut s);
            s
        };
        assert_eq!(show(1.0, 2.0), "(1+2j)");
        assert_eq!(show(1.5, -0.0), "(1.5-0j)");
        assert_eq!(show(0.0, 2.0), "2j");
        assert_eq!(show(-0.0, 2.0), "(-0+2j)");
        assert_eq!(show(f64::NAN, f64::INFINITY), "(nan+infj)");
        assert_eq!(show(1.0, f64::NEG_INFINITY), "(1-infj)");
        assert_eq!(show(0.1, 0.2), "(0.1+0.2j)");
        assert_eq!(show(1e16, 1.0), "(1e+16+1j)");
        assert_eq!(show(0.0, 1e-7), "1e-07j");
        assert_eq!(show(1e22, 0.00001), "(1e+22+1e-05j)");
        assert_eq!(show(-1.5e-300, -2e100), "(-1.5e-300-2e+100j)");
        assert_eq!(show(1e15, 0.0001), "(1000000000000000+0.0001j)");
        assert_eq!(show(123.456, 1.5e-5), "(123.456+1.5e-05j)");
        assert_eq!(show(-0.0, -0.0), "(-0-0j)");
        let mut s = String::new();
        super::write_complex(0.1f32, 1.0f32, &mut s);
        assert_eq!(s, "(0.1+1j)");
    }
}

/// `v` rounded to the nearest float16, ties to even — NumPy's `astype(float16)` from float64.
/// (`half::f16::from_f64` may round through float32 first, which rounds twice near a tie.)
pub fn f16_nearest(v: f64) -> half::f16 {
    let c = half::f16::from_f64(v);
    if !v.is_finite() || !c.is_finite() {
        return c;
    }
    let step = |h: half::f16, up: bool| {
        // the next float16 away from h (bit patterns are ordered within a sign)
        let b = h.to_bits();
        let toward_bigger_magnitude = up == h.is_sign_positive() || b & 0x7fff == 0;
        if b & 0x7fff == 0 {
            return half::f16::from_bits(if up { 0x0001 } else { 0x8001 });
        }
        half::f16::from_bits(if toward_bigger_magnitude { b + 1 } else { b - 1 })
    };
    let mut best = c;
    for cand in [step(c, true), step(c, false)] {
        if !cand.is_finite() {
            continue;
        }
        let (d_best, d_cand) = ((v - best.to_f64()).abs(), (v - cand.to_f64()).abs());
        if d_cand < d_best || (d_cand == d_best && cand.to_bits() & 1 == 0 && best.to_bits() & 1 == 1) {
            best = cand;
        }
    }
    best
}

#[cfg(test)]
mod f16_tests {
    #[test]
    fn rounds_once_from_float64() {
        // just above the tie between 1.0 and 1.0009765625: up (a float32 detour lands on the tie,
        // then to even: 1.0)
        assert_eq!(super::f16_nearest(1.000488281250001).to_f64(), 1.0009765625);
        assert_eq!(super::f16_nearest(1.00048828125).to_f64(), 1.0); // the tie itself: to even
        assert_eq!(super::f16_nearest(2f64.powi(-25) + 2f64.powi(-50)).to_bits(), 1); // the smallest subnormal
        assert_eq!(super::f16_nearest(-0.1).to_f64(), half::f16::from_f32(-0.1).to_f64());
        assert!(super::f16_nearest(70000.0).is_infinite());
    }
}
