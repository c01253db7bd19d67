//! `--codec` specifications (`auto`, `none`, `zstd[:LEVEL]`, `blosc[:CNAME[:CLEVEL[:SHUFFLE]]]`,
//! `gzip[:LEVEL]`) and the zarrs codec objects they become. `auto` is chosen per array when a run
//! starts, from samples of what it writes ([`crate::exec::autocodec`]).

use std::sync::Arc;

use zarrs::array::codec::{BloscCodec, BloscCompressionLevel, BloscCompressor, BloscShuffleMode, GzipCodec, ZstdCodec};
use zarrs::array::BytesToBytesCodecTraits;

use crate::dtype::DType;
use crate::error::{Error, Result};

/// Default zstd level. 1, as Apache Arrow and Parquet default to: on typical float data it compresses
/// within a few percent of level 3 (zarr-python's `level=0`) at about twice the speed.
pub const ZSTD_DEFAULT_LEVEL: i32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CodecSpec {
    /// Chosen from samples of the data when the run starts; never built into an array.
    Auto,
    None,
    Zstd {
        level: i32,
    },
    Blosc {
        cname: String,
        clevel: u8,
        #[serde(default)]
        shuffle: Shuffle,
    },
    Gzip {
        level: u32,
    },
}

/// Blosc's filter before compressing: none, bytes of each element grouped by significance
/// (`shuffle`, blosc's and numcodecs' default) or bits (`bitshuffle`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shuffle {
    No,
    #[default]
    Byte,
    Bit,
}

impl Shuffle {
    /// The name Zarr v3's blosc configuration uses.
    pub fn name(self) -> &'static str {
        match self {
            Shuffle::No => "noshuffle",
            Shuffle::Byte => "shuffle",
            Shuffle::Bit => "bitshuffle",
        }
    }

    /// numcodecs' (Zarr v2) and blosc's number for it.
    pub fn number(self) -> u8 {
        match self {
            Shuffle::No => 0,
            Shuffle::Byte => 1,
            Shuffle::Bit => 2,
        }
    }

    /// What an array of one-byte elements gets: byte shuffling one byte moves nothing.
    pub fn for_dtype(self, dtype: DType) -> Shuffle {
        if self == Shuffle::Byte && dtype.size() == 1 {
            Shuffle::No
        } else {
            self
        }
    }
}

/// What `auto` writes when it has nothing to sample (values that depend on a reduction's result,
/// chunks that all hold the fill value): blosc with lz4 level 5 and byte shuffling, the fastest
/// codec in docs/benchmarks.md that compresses float data at least as well as zstd level 1.
impl Default for CodecSpec {
    fn default() -> Self {
        CodecSpec::Blosc { cname: "lz4".into(), clevel: 5, shuffle: Shuffle::Byte }
    }
}

/// The blosc block dsk writes: 32 KiB. c-blosc's automatic choice for lz4 on 8-byte elements is
/// 256 KiB, and a decompression holds about four blocks of scratch per thread — with eight threads
/// decoding, 8 MiB that no memory bound counts (measured: peak RSS 57–58 MiB against 49–50 MiB for
/// the same reduction of a zstd array under `--memory 5MiB --workers 8`; 50–51 MiB with 32 KiB
/// blocks, which compress random normals as well: ratio 1.05 either way).
pub const BLOSC_BLOCKSIZE: usize = 32 << 10;

const BLOSC_CNAMES: [&str; 5] = ["lz4", "lz4hc", "blosclz", "zstd", "zlib"];

impl CodecSpec {
    /// Parse a `--codec` value; errors name the argument and list what is accepted.
    pub fn parse(text: &str) -> Result<CodecSpec> {
        let bad = |msg: String| Error::usage("--codec", msg);
        let parts: Vec<&str> = text.trim().split(':').collect();
        let num = |s: &str, what: &str| -> Result<i64> {
            s.trim().parse::<i64>().map_err(|_| bad(format!("{what} {s:?} is not a whole number")))
        };
        match parts[0].to_ascii_lowercase().as_str() {
            "auto" if parts.len() == 1 => Ok(CodecSpec::Auto),
            "none" | "raw" if parts.len() == 1 => Ok(CodecSpec::None),
            "zstd" if parts.len() <= 2 => {
                let level = if parts.len() == 2 { num(parts[1], "zstd level")? } else { ZSTD_DEFAULT_LEVEL as i64 };
                if !(-7..=22).contains(&level) {
                    return Err(bad(format!(
                        "zstd level {level} is out of range; use -7..22 (default {ZSTD_DEFAULT_LEVEL})"
                    )));
                }
                Ok(CodecSpec::Zstd { level: level as i32 })
            }
            "gzip" if parts.len() <= 2 => {
                let level = if parts.len() == 2 { num(parts[1], "gzip level")? } else { 5 };
                if !(0..=9).contains(&level) {
                    return Err(bad(format!("gzip level {level} is out of range; use 0..9 (default 5)")));
                }
                Ok(CodecSpec::Gzip { level: level as u32 })
            }
            "blosc" if parts.len() <= 4 => {
                let cname = parts.get(1).map(|s| s.trim().to_ascii_lowercase()).unwrap_or_else(|| "lz4".into());
                if !BLOSC_CNAMES.contains(&cname.as_str()) {
                    return Err(bad(format!(
                        "blosc compressor {cname:?} is unknown; use one of {}",
                        BLOSC_CNAMES.join(", ")
                    )));
                }
                let clevel = if parts.len() >= 3 { num(parts[2], "blosc level")? } else { 5 };
                if !(0..=9).contains(&clevel) {
                    return Err(bad(format!("blosc level {clevel} is out of range; use 0..9 (default 5)")));
                }
                let shuffle = match parts.get(3).map(|s| s.trim().to_ascii_lowercase()).as_deref() {
                    None | Some("shuffle") => Shuffle::Byte,
                    Some("bitshuffle") => Shuffle::Bit,
                    Some("noshuffle") => Shuffle::No,
                    Some(other) => {
                        return Err(bad(format!(
                            "blosc shuffle {other:?} is unknown; use shuffle (default), bitshuffle or noshuffle"
                        )))
                    }
                };
                Ok(CodecSpec::Blosc { cname, clevel: clevel as u8, shuffle })
            }
            _ => Err(bad(format!(
                "unknown codec {text:?}; use auto, none, zstd[:LEVEL], blosc[:CNAME[:CLEVEL[:SHUFFLE]]] or gzip[:LEVEL]"
            ))),
        }
    }

    /// The bytes-to-bytes codecs for arrays of `dtype`.
    pub fn build(&self, dtype: DType) -> Result<Vec<Arc<dyn BytesToBytesCodecTraits>>> {
        Ok(match self {
            CodecSpec::Auto => return Err(Error::Internal("the codec `auto` was not chosen before writing".into())),
            CodecSpec::None => vec![],
            CodecSpec::Zstd { level } => vec![Arc::new(ZstdCodec::new(*level, false))],
            CodecSpec::Gzip { level } => {
                vec![Arc::new(GzipCodec::new(*level).map_err(|e| Error::usage("--codec", format!("gzip: {e}")))?)]
            }
            CodecSpec::Blosc { cname, clevel, shuffle } => {
                let c = match cname.as_str() {
                    "lz4" => BloscCompressor::LZ4,
                    "lz4hc" => BloscCompressor::LZ4HC,
                    "blosclz" => BloscCompressor::BloscLZ,
                    "zstd" => BloscCompressor::Zstd,
                    _ => BloscCompressor::Zlib,
                };
                let level = BloscCompressionLevel::try_from(*clevel)
                    .map_err(|_| Error::usage("--codec", format!("blosc level {clevel} is out of range; use 0..9")))?;
                let shuffle = match shuffle.for_dtype(dtype) {
                    Shuffle::No => BloscShuffleMode::NoShuffle,
                    Shuffle::Byte => BloscShuffleMode::Shuffle,
                    Shuffle::Bit => BloscShuffleMode::BitShuffle,
                };
                let codec = BloscCodec::new(c, level, Some(BLOSC_BLOCKSIZE), shuffle, Some(dtype.size()))
                    .map_err(|e| Error::usage("--codec", format!("blosc: {e}")))?;
                vec![Arc::new(codec)]
            }
        })
    }

    /// The compression an existing array uses, as a spec (the inner codecs of a sharded array),
    /// when dsk can write it; `None` for codecs dsk does not write (e.g. v2 filters).
    pub fn from_codecs(codecs: &[serde_json::Value]) -> Option<CodecSpec> {
        let mut spec = CodecSpec::None;
        for c in codecs {
            let name = c.get("name").and_then(|v| v.as_str()).unwrap_or("");
            let conf = c.get("configuration");
            let num = |k: &str| conf.and_then(|x| x.get(k)).and_then(|v| v.as_i64());
            spec = match name {
                "bytes" | "crc32c" | "transpose" => continue,
                "sharding_indexed" => {
                    let inner = conf.and_then(|x| x.get("codecs")).and_then(|v| v.as_array())?;
                    return CodecSpec::from_codecs(inner);
                }
                // level 0 means "the library's default": dsk's default level
                "zstd" => CodecSpec::Zstd {
                    level: num("level").filter(|&l| l != 0).map(|l| l as i32).unwrap_or(ZSTD_DEFAULT_LEVEL),
                },
                "gzip" | "zlib" => CodecSpec::Gzip { level: num("level").unwrap_or(5).clamp(0, 9) as u32 },
                "blosc" => {
                    let cname = conf.and_then(|x| x.get("cname")).and_then(|v| v.as_str()).unwrap_or("lz4").to_string();
                    if !BLOSC_CNAMES.contains(&cname.as_str()) {
                        return None;
                    }
                    // v3 names the shuffle, numcodecs (v2) numbers it
                    let shuffle = match conf.and_then(|x| x.get("shuffle")) {
                        Some(v) if v == "noshuffle" || v == 0 => Shuffle::No,
                        Some(v) if v == "bitshuffle" || v == 2 => Shuffle::Bit,
                        _ => Shuffle::Byte,
                    };
                    CodecSpec::Blosc { cname, clevel: num("clevel").unwrap_or(5).clamp(0, 9) as u8, shuffle }
                }
                _ => return None,
            };
        }
        Some(spec)
    }

    /// Bytes of scratch a codec may hold besides its input and output while encoding a chunk of
    /// `chunk_bytes` (compressors size their tables and windows to the input, up to a few MiB).
    pub fn scratch_bytes(&self, chunk_bytes: u64) -> u64 {
        match self {
            CodecSpec::None => 0,
            _ => (chunk_bytes / 2 + (64 << 10)).min(4 << 20),
        }
    }
}

impl std::fmt::Display for CodecSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecSpec::Auto => write!(f, "auto"),
            CodecSpec::None => write!(f, "none"),
            CodecSpec::Zstd { level } => write!(f, "zstd:{level}"),
            CodecSpec::Gzip { level } => write!(f, "gzip:{level}"),
            CodecSpec::Blosc { cname, clevel, shuffle: Shuffle::Byte } => write!(f, "blosc:{cname}:{clevel}"),
            CodecSpec::Blosc { cname, clevel, shuffle } => write!(f, "blosc:{cname}:{clevel}:{}", shuffle.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_specs_parse() {
        assert_eq!(CodecSpec::parse("zstd").ok(), Some(CodecSpec::Zstd { level: 1 }));
        assert_eq!(CodecSpec::parse("zstd:7").ok(), Some(CodecSpec::Zstd { level: 7 }));
        assert_eq!(CodecSpec::parse("none").ok(), Some(CodecSpec::None));
        assert_eq!(
            CodecSpec::parse("blosc:zstd:9").ok(),
            Some(CodecSpec::Blosc { cname: "zstd".into(), clevel: 9, shuffle: Shuffle::Byte })
        );
        assert_eq!(
            CodecSpec::parse("blosc:lz4:5:bitshuffle").ok(),
            Some(CodecSpec::Blosc { cname: "lz4".into(), clevel: 5, shuffle: Shuffle::Bit })
        );
        assert!(CodecSpec::parse("blosc:lz4:5:bytes").is_err());
        assert_eq!(CodecSpec::parse("auto").ok(), Some(CodecSpec::Auto));
        for text in
            ["auto", "none", "zstd:3", "blosc:lz4:5", "blosc:zstd:1:bitshuffle", "blosc:lz4:9:noshuffle", "gzip:5"]
        {
            let spec = CodecSpec::parse(text).ok();
            assert_eq!(spec.map(|s| s.to_string()).as_deref(), Some(text));
        }
        assert_eq!(CodecSpec::parse("gzip").ok(), Some(CodecSpec::Gzip { level: 5 }));
        assert!(CodecSpec::parse("lzma").is_err());
        assert!(CodecSpec::parse("zstd:99").is_err());
        assert!(CodecSpec::parse("blosc:snappy").is_err());
    }
}
