//! Exact serialisation of the floats inside plans and job files.
//!
//! JSON has no NaN or infinities (serde_json writes them as `null`, which cannot be read back), so
//! every `f64` of a plan goes through [`exact_f64`]: a finite value is written as a JSON number in
//! its shortest round-trip form (read back bit for bit: serde_json's `float_roundtrip`), anything
//! else as a string — `"inf"`, `"-inf"`, `"nan"` for the canonical quiet NaN, and `"nan:<hex bits>"`
//! for any other NaN, so no bit is lost.

/// `#[serde(with = "crate::serial::exact_f64")]` for an `f64` field.
pub mod exact_f64 {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        let v = *v;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v == f64::INFINITY {
            s.serialize_str("inf")
        } else if v == f64::NEG_INFINITY {
            s.serialize_str("-inf")
        } else if v.to_bits() == f64::NAN.to_bits() {
            s.serialize_str("nan")
        } else {
            s.serialize_str(&format!("nan:{:016x}", v.to_bits()))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, or \"inf\", \"-inf\", \"nan\" or \"nan:<hex bits>\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "inf" => Ok(f64::INFINITY),
                    "-inf" => Ok(f64::NEG_INFINITY),
                    "nan" => Ok(f64::NAN),
                    _ => v
                        .strip_prefix("nan:")
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                        .map(f64::from_bits)
                        .filter(|f| f.is_nan())
                        .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct W(#[serde(with = "super::exact_f64")] f64);

    #[test]
    fn every_float_reads_back_bit_for_bit() {
        let odd_nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let neg_nan = -f64::NAN;
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            -2.5e-308,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            std::f64::consts::PI,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            odd_nan,
            neg_nan,
            9007199254740993.0,
        ];
        let mut state = 7u64;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            values.push(f64::from_bits(state));
        }
        for v in values {
            let text = serde_json::to_string(&W(v)).expect("serialise");
            let back: W = serde_json::from_str(&text).expect("read back");
            assert_eq!(back.0.to_bits(), v.to_bits(), "{v:e} written as {text}");
        }
    }
}

/// `#[serde(with = "crate::serial::os_path")]` for a `PathBuf` field: a UTF-8 path is written as a
/// string, any other path (Unix names are bytes) as the list of its bytes, so that every path the
/// OS accepts survives a job file.
pub mod os_path {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    fn repr(p: &Path) -> Repr {
        match p.to_str() {
            Some(t) => Repr::Text(t.to_string()),
            None => Repr::Bytes(p.as_os_str().as_bytes().to_vec()),
        }
    }

    fn path(r: Repr) -> PathBuf {
        match r {
            Repr::Text(t) => PathBuf::from(t),
            Repr::Bytes(b) => PathBuf::from(std::ffi::OsString::from_vec(b)),
        }
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        repr(p).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Repr::deserialize(d).map(path)
    }

    /// The same for an `Option<PathBuf>` field.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
            p.as_deref().map(repr).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
            Option::<Repr>::deserialize(d).map(|r| r.map(path))
        }
    }
}
