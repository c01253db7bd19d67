//! What a chunk or shard file of an array may look like before anything decodes it: the largest
//! size it can have (from the chunk shape, the data type and the codecs) and, for shards, an index
//! whose every entry points inside the shard's data. [`super::fs::Fs`] checks both on every read,
//! so that a hostile or damaged store gives an error naming the file instead of an endless read, an
//! allocation of the whole memory, or a panic inside zarrs.
//!
//! Pure functions of the metadata and the bytes: no file system access here.

use serde_json::Value;

use super::meta::ArrayMeta;

/// Slack added to every bound: headers, checksums and framing of the codecs.
const SLACK: u64 = 64 << 10;

/// Largest metadata document (zarr.json, .zarray, .zattrs) read.
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// Codecs whose output is at most about the size of their input (compressors, checksums, byte
/// order): a chunk encoded by them is at most twice its raw size plus [`SLACK`]. Anything else
/// (e.g. a Zarr v2 filter that widens the type) is allowed sixteen times.
const KNOWN_CODECS: [&str; 12] =
    ["bytes", "transpose", "crc32c", "zstd", "gzip", "zlib", "blosc", "lz4", "bz2", "lzma", "packbits", "shuffle"];

/// What [`super::fs::Fs`] enforces when reading the files of one array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest chunk file (or shard file) of this array, in bytes.
    pub object: u64,
    /// How the shard index is laid out, when the array is sharded and dsk can check the index
    /// before zarrs reads it (see [`ShardLayout::of`]).
    pub shard: Option<ShardLayout>,
}

/// The index of a shard (sharding_indexed codec, index encoded as `bytes` then optionally
/// `crc32c`): one (offset, length) pair of u64 per inner chunk, at the start or the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardLayout {
    /// Inner chunks per shard along each axis (the index is C-ordered over these).
    pub per_shard: Vec<u64>,
    pub at_start: bool,
    pub big_endian: bool,
    pub crc32c: bool,
    /// Largest encoded inner chunk.
    pub inner: u64,
}

impl ShardLayout {
    /// The layout of the index of `codec` (a `sharding_indexed` codec object) for shards of
    /// `shard` elements, when it is the one dsk checks: index codecs `bytes` (either byte order)
    /// optionally followed by `crc32c`. `None` otherwise (zarrs reads it unchecked; a panic is
    /// still caught, see `ZArray::read_region`).
    pub fn of(codec: &Value, shard: &[u64], item: u64) -> Option<ShardLayout> {
        let conf = codec.get("configuration")?;
        let inner_shape = u64_list(conf.get("chunk_shape")?)?;
        if inner_shape.len() != shard.len() || inner_shape.contains(&0) {
            return None;
        }
        let per_shard: Vec<u64> = shard.iter().zip(&inner_shape).map(|(s, c)| s.div_ceil(*c)).collect();
        let index = conf.get("index_codecs").and_then(Value::as_array)?;
        let names: Vec<&str> = index.iter().map(|c| c.get("name").and_then(Value::as_str)).collect::<Option<_>>()?;
        let crc32c = match names.as_slice() {
            ["bytes"] => false,
            ["bytes", "crc32c"] => true,
            _ => return None,
        };
        let big_endian = match index[0].pointer("/configuration/endian") {
            None | Some(Value::Null) => false,
            Some(v) => match v.as_str()? {
                "little" => false,
                "big" => true,
                _ => return None,
            },
        };
        let at_start = match conf.get("index_location") {
            None => false,
            Some(v) => match v.as_str()? {
                "end" => false,
                "start" => true,
                _ => return None,
            },
        };
        let inner_codecs = conf.get("codecs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        let raw = inner_shape.iter().try_fold(item, |a, &b| a.checked_mul(b))?;
        Some(ShardLayout { per_shard, at_start, big_endian, crc32c, inner: encoded_bound(raw, inner_codecs) })
    }

    /// Inner chunks per shard.
    pub fn n(&self) -> u64 {
        self.per_shard.iter().fold(1u64, |a, &b| a.saturating_mul(b))
    }

    /// Bytes of the encoded index.
    pub fn index_bytes(&self) -> u64 {
        self.n().saturating_mul(16).saturating_add(if self.crc32c { 4 } else { 0 })
    }

    /// Largest shard file.
    pub fn shard_bound(&self) -> u64 {
        self.n().saturating_mul(self.inner).saturating_add(self.index_bytes())
    }

    /// Check the encoded index `index` (as stored, with its checksum if any) of a shard file of
    /// `file_len` bytes: every entry is either missing (both u64::MAX) or a non-empty byte range
    /// inside the data part of the file (not overlapping the index) no longer than an inner chunk
    /// can be. The checksum itself is left to zarrs. The message names the inner chunk.
    pub fn check_index(&self, index: &[u8], file_len: u64) -> Result<(), String> {
        let want = self.index_bytes();
        if index.len() as u64 != want {
            return Err(format!("its index holds {} bytes where {want} were expected", index.len()));
        }
        let index_len = want;
        if file_len < index_len {
            return Err(format!("it holds {file_len} bytes, less than its {index_len}-byte index"));
        }
        let (data_start, data_end) = if self.at_start { (index_len, file_len) } else { (0, file_len - index_len) };
        for (i, (offset, len)) in self.pairs(index).enumerate() {
            if offset == u64::MAX && len == u64::MAX {
                continue;
            }
            let which = || format!("its index entry for inner chunk ({})", self.unravel(i as u64));
            let problem = if offset == u64::MAX || len == u64::MAX {
                Some("is half a missing-chunk marker".to_string())
            } else if len == 0 {
                Some("has length 0".to_string())
            } else if len > self.inner {
                Some(format!("has length {len}, more than an encoded inner chunk can have ({})", self.inner))
            } else {
                let in_index =
                    if self.at_start { offset < data_start } else { offset >= data_end && offset < file_len };
                match offset.checked_add(len) {
                    Some(end) if offset >= data_start && end <= data_end => None,
                    Some(end) if end <= file_len => Some("overlaps the index".to_string()),
                    _ if in_index => Some("points into the index".to_string()),
                    _ => Some(format!("points beyond the end of the file ({file_len} bytes)")),
                }
            };
            if let Some(p) = problem {
                return Err(format!("{} (offset {offset}, length {len}) {p}", which()));
            }
        }
        Ok(())
    }

    /// The entries of the encoded index `index` (as stored) of a shard file of `file_len` bytes,
    /// checked as [`ShardLayout::check_index`] does and against its checksum: per inner chunk in C
    /// order, its byte range (offset, length), or `None` for one never written.
    pub fn entries(&self, index: &[u8], file_len: u64) -> Result<Vec<Option<(u64, u64)>>, String> {
        self.check_index(index, file_len)?;
        let body = &index[..index.len() - if self.crc32c { 4 } else { 0 }];
        if self.crc32c {
            let mut b = [0u8; 4];
            b.copy_from_slice(&index[body.len()..]);
            let (stored, actual) = (u32::from_le_bytes(b), crc32c::crc32c(body));
            if stored != actual {
                return Err(format!(
                    "its index checksum is {stored:#010x} where its bytes give {actual:#010x} (the index was altered)"
                ));
            }
        }
        Ok(self.pairs(index).map(|(offset, len)| (offset != u64::MAX).then_some((offset, len))).collect())
    }

    /// The (offset, length) words of the encoded index `index`, its checksum left out.
    fn pairs<'b>(&'b self, index: &'b [u8]) -> impl Iterator<Item = (u64, u64)> + 'b {
        let body = &index[..index.len().saturating_sub(if self.crc32c { 4 } else { 0 })];
        let word = move |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            if self.big_endian {
                u64::from_be_bytes(a)
            } else {
                u64::from_le_bytes(a)
            }
        };
        body.chunks_exact(16).map(move |pair| (word(&pair[..8]), word(&pair[8..])))
    }

    /// The encoded index (with its checksum when the layout has one) of `entries`, as
    /// [`ShardLayout::entries`] returns them.
    pub fn encode_index(&self, entries: &[Option<(u64, u64)>]) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.index_bytes() as usize);
        for e in entries {
            let (o, l) = e.unwrap_or((u64::MAX, u64::MAX));
            for w in [o, l] {
                v.extend_from_slice(&if self.big_endian { w.to_be_bytes() } else { w.to_le_bytes() });
            }
        }
        if self.crc32c {
            let c = crc32c::crc32c(&v);
            v.extend_from_slice(&c.to_le_bytes());
        }
        v
    }

    /// Where the index sits in a file of `file_len` bytes: (start, length).
    pub fn index_range(&self, file_len: u64) -> Option<(u64, u64)> {
        let n = self.index_bytes();
        if self.at_start {
            (file_len >= n).then_some((0, n))
        } else {
            file_len.checked_sub(n).map(|s| (s, n))
        }
    }

    fn unravel(&self, mut i: u64) -> String {
        let mut idx = vec![0u64; self.per_shard.len()];
        for (a, &n) in self.per_shard.iter().enumerate().rev() {
            if n > 0 {
                idx[a] = i % n;
                i /= n;
            }
        }
        idx.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
    }
}

fn u64_list(v: &Value) -> Option<Vec<u64>> {
    v.as_array()?.iter().map(Value::as_u64).collect()
}

/// Largest encoded size of a chunk of `raw` bytes through `codecs`: generous (twice plus 64 KiB for
/// the codecs dsk knows, sixteen times for others), since it only has to stop absurd files.
pub fn encoded_bound(raw: u64, codecs: &[Value]) -> u64 {
    let known = codecs.iter().all(|c| c.get("name").and_then(Value::as_str).is_some_and(|n| KNOWN_CODECS.contains(&n)));
    raw.saturating_mul(if known { 2 } else { 16 }).saturating_add(SLACK)
}

impl ReadLimits {
    /// The limits of the files of the array described by `meta`.
    pub fn of(meta: &ArrayMeta) -> ReadLimits {
        // (float16 is read as float32; a complex element is two of its parts)
        let item = meta.itemsize().max(meta.dtype.size() as u64);
        let raw = |shape: &[u64]| shape.iter().fold(item, |a, &b| a.saturating_mul(b));
        let sharding =
            meta.codecs.iter().position(|c| c.get("name").and_then(Value::as_str) == Some("sharding_indexed"));
        match (sharding, &meta.shards) {
            (Some(i), Some(shard)) => {
                let codec = &meta.codecs[i];
                // checked only when the shard is stored as is (no codec after sharding) and its
                // inner chunks are not shards themselves
                let nested = codec.pointer("/configuration/codecs").and_then(Value::as_array).is_some_and(|inner| {
                    inner.iter().any(|c| c.get("name").and_then(Value::as_str) == Some("sharding_indexed"))
                });
                let layout =
                    if i + 1 == meta.codecs.len() && !nested { ShardLayout::of(codec, shard, item) } else { None };
                match layout {
                    Some(l) => ReadLimits { object: l.shard_bound(), shard: Some(l) },
                    None => ReadLimits {
                        object: encoded_bound(raw(shard), &meta.codecs[i + 1..]).saturating_mul(16),
                        shard: None,
                    },
                }
            }
            _ => ReadLimits { object: encoded_bound(raw(&meta.chunks), &meta.codecs), shard: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layout(per_shard: Vec<u64>, at_start: bool) -> ShardLayout {
        ShardLayout { per_shard, at_start, big_endian: false, crc32c: true, inner: 1000 }
    }

    fn index(entries: &[(u64, u64)]) -> Vec<u8> {
        let mut v = vec![];
        for (o, l) in entries {
            v.extend_from_slice(&o.to_le_bytes());
            v.extend_from_slice(&l.to_le_bytes());
        }
        v.extend_from_slice(&[0; 4]);
        v
    }

    #[test]
    fn a_shard_index_entry_must_point_inside_the_data() {
        let l = layout(vec![2], false);
        let file = 100 + 36;
        assert_eq!(l.check_index(&index(&[(0, 50), (50, 50)]), file), Ok(()));
        assert_eq!(l.check_index(&index(&[(u64::MAX, u64::MAX), (0, 100)]), file), Ok(()));
        for (bad, needle) in [
            ((u64::MAX, 10), "half a missing"),
            ((0, u64::MAX), "half a missing"),
            ((u64::MAX - 1, 2), "beyond the end"),
            ((10, 0), "length 0"),
            ((90, 20), "overlaps the index"),
            ((200, 20), "beyond the end"),
            ((0, 5000), "more than an encoded inner chunk"),
        ] {
            let e = l.check_index(&index(&[(0, 10), bad]), file).expect_err("refused");
            assert!(e.contains(needle) && e.contains("inner chunk (1)"), "{bad:?}: {e}");
        }
        let s = layout(vec![1, 2], true);
        assert!(s.check_index(&index(&[(0, 10), (36, 10)]), 100).expect_err("refused").contains("(0, 0)"));
        assert_eq!(s.check_index(&index(&[(36, 10), (46, 10)]), 100), Ok(()));
        assert!(l.check_index(&index(&[(0, 10)]), file).is_err());
        assert!(l.check_index(&index(&[(0, 10), (10, 10)]), 20).is_err());
    }

    #[test]
    fn bounds_follow_chunk_bytes_and_codecs() {
        assert_eq!(encoded_bound(1000, &[json!({"name": "bytes"}), json!({"name": "zstd"})]), 2000 + SLACK);
        assert_eq!(encoded_bound(1000, &[json!({"name": "delta"})]), 16000 + SLACK);
        let codec = json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": [2, 2], "codecs": [{"name": "bytes"}],
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]}});
        let l = ShardLayout::of(&codec, &[4, 6], 8).expect("layout");
        assert_eq!((l.n(), l.index_bytes(), l.inner), (6, 100, 64 + SLACK));
        let odd = json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": [2, 2], "codecs": [], "index_codecs": [{"name": "gzip"}]}});
        assert_eq!(ShardLayout::of(&odd, &[4, 6], 8), None);
    }
}
