//! Sharded arrays read and written without zarrs' sharding codec, when the shard is what dsk can
//! decode itself: `sharding_indexed` as the only array codec, inner chunks through `bytes` and
//! optionally zstd or blosc ([`DirectCodec`]), the index through `bytes` and optionally `crc32c`
//! (zarr-python's and dsk's default), at either end of the file.
//!
//! Why: zarrs decodes a shard through its generic codec chain into a zeroed buffer and copies
//! each inner chunk into place, and encodes a shard by holding every encoded inner chunk before
//! concatenating them. Measured on the codec table's 800 MB float64 array (blosc-lz4, 160 MB
//! shards), a whole-array read took 1.33 s that way against 0.26 s for the same data unsharded,
//! and writes held 640–770 MiB. Here a shard is read with one open: its index is checked (every
//! entry inside the file, the checksum) and only the inner chunks a region needs are read, each
//! decoded straight into a vector ([`super::decode_direct`]) and copied into the result. A shard
//! is made one inner chunk at a time ([`ZArray::write_chunk_by`]) and each inner chunk, once
//! encoded, is appended to the shard's file ([`super::fs::Appender`]), the index last: a task
//! holds one inner chunk, whatever the shard size (800 MB shards: 48 MiB). Errors name the inner
//! chunk as well as the shard.
//!
//! On object storage a region that covers whole shards is read here (one request per shard);
//! parts of shards go through zarrs, which fetches the index and the byte ranges it needs. A shard
//! written there (or one whose index goes first) is filled in memory and stored at once.

use std::ops::Range;

use super::limits::ShardLayout;
use super::{all_fill, elem_bytes, DirectCodec};
use super::{codec_chain, decode_direct, encode_append, plain_elements, read_failure, write_failure, ZArray};
use crate::dtype::Elem;
use crate::error::{Error, Result};
use crate::grid::{copy_box, strides, unravel, Region};
use crate::store::meta::ArrayMeta;

/// How the shards of an array are laid out, when dsk reads and writes them itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ShardDirect {
    /// The codec of every inner chunk.
    codec: DirectCodec,
    /// The inner chunk shape.
    inner: Vec<u64>,
    layout: ShardLayout,
}

/// The bytes of some inner chunks of one shard: `ranges[i]` is where the i-th inner chunk asked
/// for lies in `bytes`, `None` when it was never written.
struct Parts {
    bytes: zarrs::storage::Bytes,
    ranges: Vec<Option<Range<usize>>>,
}

impl ShardDirect {
    /// The layout of `meta`'s shards, when dsk can read and write them itself.
    pub fn of(meta: &ArrayMeta) -> Option<ShardDirect> {
        let shard = meta.shards.as_ref()?;
        if !plain_elements(meta) || meta.zarr_format != 3 || meta.codecs.len() != 1 {
            return None;
        }
        let c = &meta.codecs[0];
        if c.get("name").and_then(|n| n.as_str()) != Some("sharding_indexed") {
            return None;
        }
        let inner_codecs = c.pointer("/configuration/codecs")?.as_array()?;
        let codec = codec_chain(3, inner_codecs, meta.dtype)?;
        let layout = ShardLayout::of(c, shard, meta.dtype.size() as u64)?;
        if meta.chunks.len() != shard.len() || layout.per_shard.len() != shard.len() {
            return None;
        }
        Some(ShardDirect { codec, inner: meta.chunks.clone(), layout })
    }

    fn inner_len(&self) -> usize {
        self.inner.iter().product::<u64>() as usize
    }
}

/// `v` as a tuple's inside: `1, 2`.
fn list(v: &[u64]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

impl ZArray {
    fn shard_err(&self, shard: &[u64], msg: String) -> Error {
        Error::Chunk { path: self.path.clone(), chunk: shard.to_vec(), msg }
    }

    /// Inner chunk `at` of shard `shard` cannot be decoded (`m` says why, as for a chunk file).
    fn inner_damaged(&self, shard: &[u64], at: &[u64], m: &str) -> Error {
        let file = self.path.join(self.array.chunk_key(shard).as_str());
        let m = m.replace("the chunk file is damaged", "the shard is damaged; restore it or rewrite the array");
        self.shard_err(shard, format!("inner chunk ({}) of {}: {m}", list(at), file.display()))
    }

    /// The bytes of inner chunks `wanted` (C-order positions in the shard) of shard `idx`, its
    /// index checked: `None` when the shard was never written. `whole` reads the file at once.
    fn shard_parts(&self, sd: &ShardDirect, idx: &[u64], wanted: &[usize], whole: bool) -> Result<Option<Parts>> {
        let key = self.array.chunk_key(idx);
        let store = self.array.storage();
        let cannot = |m: String| {
            if m.contains(" — ") {
                self.shard_err(idx, format!("cannot read: {m}"))
            } else {
                self.shard_err(idx, format!("cannot read: {}", read_failure(&m)))
            }
        };
        let damaged = |m: String| {
            let file = self.path.join(key.as_str());
            self.shard_err(
                idx,
                format!("cannot read: {}: damaged shard: {m} — restore the shard or rewrite the array", file.display()),
            )
        };
        if let (false, Some(fs)) = (whole, store.fs()) {
            return match fs.read_inner(&key, &sd.layout, wanted).map_err(cannot)? {
                None => Ok(None),
                Some((bytes, ranges)) => Ok(Some(Parts { bytes: bytes.into(), ranges })),
            };
        }
        let Some(bytes) = store.read_checked(&key).map_err(cannot)? else {
            return Ok(None);
        };
        let len = bytes.len() as u64;
        let (start, n) =
            sd.layout.index_range(len).ok_or_else(|| damaged(format!("it holds {len} bytes, less than its index")))?;
        let entries = sd.layout.entries(&bytes[start as usize..(start + n) as usize], len).map_err(damaged)?;
        let ranges = wanted
            .iter()
            .map(|&w| entries.get(w).copied().flatten().map(|(o, l)| o as usize..(o + l) as usize))
            .collect();
        Ok(Some(Parts { bytes, ranges }))
    }

    /// Read `region` of a sharded array whose shards dsk decodes itself (see the module): `None`
    /// when zarrs should (a part of a shard on object storage).
    pub(super) fn read_region_sharded<T: Elem>(
        &self,
        sd: &ShardDirect,
        region: &Region,
        concurrency: usize,
    ) -> Result<Option<Vec<T>>> {
        let grid = self.grid();
        let nd = region.ndim();
        let ranges: Vec<Range<u64>> =
            (0..nd).map(|a| grid.chunks_overlapping(a, region.start[a], region.end(a))).collect();
        let counts: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
        let shards: Vec<Vec<u64>> = (0..counts.iter().product::<u64>())
            .map(|k| unravel(k, &counts).iter().zip(&ranges).map(|(i, r)| i + r.start).collect())
            .collect();
        let local = self.array.storage().fs().is_some();
        let fill = T::from_scalar(self.fill);
        let mut out: Option<Vec<T>> = None;
        for sidx in &shards {
            let srange = grid.chunk_region(sidx);
            // the inner chunks of this shard that the region needs, and those inside the array
            let lo: Vec<u64> = (0..nd).map(|a| region.start[a].max(srange.start[a]) - srange.start[a]).collect();
            let hi: Vec<u64> = (0..nd).map(|a| region.end(a).min(srange.end(a)) - srange.start[a]).collect();
            let first: Vec<u64> = (0..nd).map(|a| lo[a] / sd.inner[a]).collect();
            let span: Vec<u64> = (0..nd).map(|a| (hi[a] - 1) / sd.inner[a] + 1 - first[a]).collect();
            let in_array: u64 = (0..nd).map(|a| srange.shape[a].div_ceil(sd.inner[a])).product();
            let per_strides = strides(&sd.layout.per_shard);
            let needed: Vec<(Vec<u64>, usize)> = (0..span.iter().product::<u64>())
                .map(|k| {
                    let at: Vec<u64> = unravel(k, &span).iter().zip(&first).map(|(i, f)| i + f).collect();
                    let lin = at.iter().zip(&per_strides).map(|(i, s)| i * s).sum::<u64>() as usize;
                    (at, lin)
                })
                .collect();
            // the whole file when every inner chunk in it is needed, else only theirs
            let whole = needed.len() as u64 >= in_array;
            if !local && !whole {
                return Ok(None);
            }
            let wanted: Vec<usize> = needed.iter().map(|(_, l)| *l).collect();
            let parts = self.shard_parts(sd, sidx, &wanted, whole)?;
            let decode = |i: usize| -> Result<Option<Vec<T>>> {
                let Some(parts) = &parts else { return Ok(None) };
                match &parts.ranges[i] {
                    None => Ok(None),
                    Some(r) => decode_direct::<T>(sd.codec, &parts.bytes[r.clone()], sd.inner_len())
                        .map(Some)
                        .map_err(|m| self.inner_damaged(sidx, &needed[i].0, &m)),
                }
            };
            // one inner chunk that is the whole region: its decoded vector is the result
            let exact = shards.len() == 1
                && needed.len() == 1
                && region.shape == sd.inner
                && (0..nd).all(|a| (region.start[a] - srange.start[a]).is_multiple_of(sd.inner[a]));
            if exact {
                return Ok(Some(match decode(0)? {
                    Some(v) => v,
                    None => vec![fill; region.len() as usize],
                }));
            }
            let out = out.get_or_insert_with(|| vec![fill; region.len() as usize]);
            let place = |i: usize, v: &[T], out: &mut Vec<T>| {
                // the inner chunk's box in the array, cut to the region
                let o: Vec<u64> = (0..nd).map(|a| srange.start[a] + needed[i].0[a] * sd.inner[a]).collect();
                let b_lo: Vec<u64> = (0..nd).map(|a| o[a].max(region.start[a])).collect();
                let b_hi: Vec<u64> = (0..nd).map(|a| (o[a] + sd.inner[a]).min(region.end(a))).collect();
                let us = |v: &[u64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
                let lo_s: Vec<u64> = (0..nd).map(|a| b_lo[a] - o[a]).collect();
                let lo_d: Vec<u64> = (0..nd).map(|a| b_lo[a] - region.start[a]).collect();
                let ext: Vec<u64> = (0..nd).map(|a| b_hi[a] - b_lo[a]).collect();
                copy_box(v, &us(&sd.inner), &us(&lo_s), out, &us(&region.shape), &us(&lo_d), &us(&ext));
            };
            if concurrency > 1 && needed.len() > 1 {
                use rayon::prelude::*;
                let ids: Vec<usize> = (0..needed.len()).collect();
                for batch in ids.chunks(2 * concurrency) {
                    let decoded: Vec<Option<Vec<T>>> = batch.par_iter().map(|&i| decode(i)).collect::<Result<_>>()?;
                    for (&i, v) in batch.iter().zip(decoded) {
                        if let Some(v) = v {
                            place(i, &v, out);
                        }
                    }
                }
            } else {
                for i in 0..needed.len() {
                    if let Some(v) = decode(i)? {
                        place(i, &v, out);
                    }
                }
            }
        }
        Ok(Some(out.unwrap_or_default()))
    }

    /// Write shard `idx` (whose part inside the array is `region`, `data` in C order): its inner
    /// chunks encoded one after the other into one buffer, inner chunks equal to the fill value
    /// left out unless empty chunks are written, the index appended (or put first), and the file
    /// stored at once. A shard with no inner chunk left is erased.
    pub(super) fn write_shard_direct<T: Elem>(
        &self,
        sd: &ShardDirect,
        idx: &[u64],
        region: &Region,
        data: &[T],
        concurrency: usize,
    ) -> Result<()> {
        let nd = region.ndim();
        let us = |v: &[u64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
        // the elements of inner chunk k (padded with the fill value past the array's end), or
        // false when it lies outside the array
        let gather = |k: usize, scratch: &mut Vec<T>| -> bool {
            let Some(ext) = self.inner_extent(sd, region, k) else { return false };
            let at = unravel(k as u64, &sd.layout.per_shard);
            let o: Vec<u64> = (0..nd).map(|a| at[a] * sd.inner[a]).collect();
            scratch.clear();
            scratch.resize(sd.inner_len(), T::from_scalar(self.fill));
            copy_box(data, &us(&region.shape), &us(&o), scratch, &us(&sd.inner), &vec![0; nd], &us(&ext));
            true
        };
        let mut file = ShardFile::new(self, sd, idx, region, std::mem::size_of::<T>());
        if concurrency > 1 && file.entries.len() > 1 {
            use rayon::prelude::*;
            let ids: Vec<usize> = (0..file.entries.len()).collect();
            for batch in ids.chunks(2 * concurrency) {
                let encoded: Vec<Option<Vec<u8>>> = batch
                    .par_iter()
                    .map(|&k| {
                        let mut scratch = Vec::with_capacity(sd.inner_len());
                        if !gather(k, &mut scratch) || self.skipped(&scratch) {
                            return Ok(None);
                        }
                        let mut e = Vec::new();
                        encode_append(sd.codec, elem_bytes(&scratch), &mut e)
                            .map_err(|m| self.inner_err(sd, idx, k, m))?;
                        Ok(Some(e))
                    })
                    .collect::<Result<_>>()?;
                for (&k, e) in batch.iter().zip(encoded) {
                    if let Some(e) = e {
                        file.push(k, |out| {
                            out.extend_from_slice(&e);
                            Ok(())
                        })
                        .map_err(|m| self.inner_err(sd, idx, k, m))?;
                    }
                }
            }
        } else {
            let mut scratch = Vec::with_capacity(sd.inner_len());
            for k in 0..file.entries.len() {
                if gather(k, &mut scratch) && !self.skipped(&scratch) {
                    file.push(k, |out| encode_append(sd.codec, elem_bytes(&scratch), out))
                        .map_err(|m| self.inner_err(sd, idx, k, m))?;
                }
            }
        }
        self.store_shard(sd, idx, file)
    }

    /// [`ZArray::write_shard_direct`] with the values made one inner chunk at a time: `produce`
    /// returns the elements of a region of the array (an inner chunk cut to the array), so that
    /// the shard's values are never all in memory at once — only its encoded file is.
    pub(super) fn write_shard_produced<T: Elem>(
        &self,
        sd: &ShardDirect,
        idx: &[u64],
        region: &Region,
        produce: &mut dyn FnMut(&Region) -> Result<Vec<T>>,
    ) -> Result<()> {
        let nd = region.ndim();
        let us = |v: &[u64]| v.iter().map(|&x| x as usize).collect::<Vec<_>>();
        let mut file = ShardFile::new(self, sd, idx, region, std::mem::size_of::<T>());
        let mut scratch: Vec<T> = vec![];
        for (k, part) in self.inner_parts_numbered(sd, region) {
            let ext = part.shape.clone();
            let v = produce(&part)?;
            if v.len() as u64 != part.len() {
                return Err(Error::Internal(format!("{} values for the {} of {part:?}", v.len(), part.len())));
            }
            let values: &[T] = if ext == sd.inner {
                &v
            } else {
                // an inner chunk past the array's end is stored whole, padded with the fill value
                scratch.clear();
                scratch.resize(sd.inner_len(), T::from_scalar(self.fill));
                copy_box(&v, &us(&ext), &vec![0; nd], &mut scratch, &us(&sd.inner), &vec![0; nd], &us(&ext));
                &scratch
            };
            if !self.skipped(values) {
                file.push(k, |out| encode_append(sd.codec, elem_bytes(values), out))
                    .map_err(|m| self.inner_err(sd, idx, k, m))?;
            }
        }
        self.store_shard(sd, idx, file)
    }

    /// The inner chunks of a shard whose part inside the array is `region`, cut to the array, in
    /// the order they are written.
    pub(super) fn inner_parts(&self, sd: &ShardDirect, region: &Region) -> Vec<Region> {
        self.inner_parts_numbered(sd, region).into_iter().map(|(_, r)| r).collect()
    }

    /// [`ZArray::inner_parts`] with each one's position in the shard's index.
    fn inner_parts_numbered(&self, sd: &ShardDirect, region: &Region) -> Vec<(usize, Region)> {
        let n_inner = sd.layout.per_shard.iter().product::<u64>() as usize;
        let nd = region.ndim();
        (0..n_inner)
            .filter_map(|k| {
                let ext = self.inner_extent(sd, region, k)?;
                let at = unravel(k as u64, &sd.layout.per_shard);
                let start: Vec<u64> = (0..nd).map(|a| region.start[a] + at[a] * sd.inner[a]).collect();
                Some((k, Region::new(start, ext)))
            })
            .collect()
    }

    /// The extent of inner chunk `k` of a shard whose part inside the array is `region`, cut to
    /// the array: `None` when it lies wholly outside.
    fn inner_extent(&self, sd: &ShardDirect, region: &Region, k: usize) -> Option<Vec<u64>> {
        let at = unravel(k as u64, &sd.layout.per_shard);
        let nd = region.ndim();
        let o: Vec<u64> = (0..nd).map(|a| at[a] * sd.inner[a]).collect();
        if (0..nd).any(|a| o[a] >= region.shape[a]) {
            return None;
        }
        Some((0..nd).map(|a| sd.inner[a].min(region.shape[a] - o[a])).collect())
    }

    /// Whether an inner chunk holding `values` is left out of its shard (all the fill value, and
    /// empty chunks are not written).
    fn skipped<T: Elem>(&self, values: &[T]) -> bool {
        !self.write_empty_chunks && all_fill(values, T::from_scalar(self.fill))
    }

    fn inner_err(&self, sd: &ShardDirect, idx: &[u64], k: usize, m: String) -> Error {
        self.shard_err(idx, format!("inner chunk ({}): {m}", list(&unravel(k as u64, &sd.layout.per_shard))))
    }

    /// Store the shard `file` as shard `idx`, or erase the shard when it holds no inner chunk.
    fn store_shard(&self, sd: &ShardDirect, idx: &[u64], file: ShardFile) -> Result<()> {
        let bytes = match file.finish(&sd.layout).map_err(|m| self.shard_err(idx, m))? {
            Finished::Streamed => return Ok(()),
            Finished::Empty => {
                return self.array.erase_chunk(idx).map_err(|e| self.shard_err(idx, format!("cannot erase: {e}")))
            }
            Finished::Bytes(b) => b,
        };
        // SAFETY: the bytes are what the sharding codec produces: each inner chunk through its
        // codecs (`bytes`, then one zstd or blosc frame when configured), the index of (offset,
        // length) pairs through its codecs, where the metadata puts it
        unsafe { self.array.store_encoded_chunk(idx, bytes.into()) }
            .map_err(|e| self.shard_err(idx, write_failure("cannot write", e)))
    }
}

/// A shard file being filled: in memory (its bytes, with room for the index first when it goes
/// first), or streamed to a local file an inner chunk at a time (then only one inner chunk's
/// encoding is held), and the index entries so far.
struct ShardFile {
    bytes: Vec<u8>,
    entries: Vec<Option<(u64, u64)>>,
    index_first: usize,
    stream: Option<Stream>,
}

/// Where a streamed shard goes: the file is created with its first inner chunk, so that a shard
/// left without any is never created.
struct Stream {
    store: std::sync::Arc<super::backend::Store>,
    key: zarrs::storage::StoreKey,
    expected: u64,
    out: Option<super::fs::Appender>,
    at: u64,
}

/// What [`ShardFile::finish`] leaves to do.
enum Finished {
    /// No inner chunk: the shard is erased.
    Empty,
    /// The file's bytes, to be stored.
    Bytes(Vec<u8>),
    /// Written.
    Streamed,
}

impl ShardFile {
    fn new(arr: &ZArray, sd: &ShardDirect, idx: &[u64], region: &Region, item: usize) -> ShardFile {
        let n_inner = sd.layout.per_shard.iter().product::<u64>() as usize;
        let index_bytes = sd.layout.index_bytes() as usize;
        let raw = sd.inner_len() * item;
        let bound = raw + raw / 128 + 1024;
        let in_array: usize = (0..region.ndim()).map(|a| region.shape[a].div_ceil(sd.inner[a]) as usize).product();
        // local shards with the index last are streamed to their file; others are filled in
        // memory, with room for every inner chunk at its encoded bound (never reallocated)
        let store = arr.array.storage();
        let stream = match store.fs() {
            Some(_) if !sd.layout.at_start => Some(Stream {
                store: store.clone(),
                key: arr.array.chunk_key(idx),
                expected: (in_array * raw) as u64,
                out: None,
                at: 0,
            }),
            _ => None,
        };
        let mut bytes = Vec::with_capacity(if stream.is_some() { bound } else { index_bytes + in_array * bound });
        let index_first = if sd.layout.at_start { index_bytes } else { 0 };
        bytes.resize(index_first, 0);
        ShardFile { bytes, entries: vec![None; n_inner], index_first, stream }
    }

    /// Append inner chunk `k`, which `encode` appends to the bytes.
    fn push(
        &mut self,
        k: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        let Some(s) = &mut self.stream else {
            let at = self.bytes.len();
            encode(&mut self.bytes)?;
            self.entries[k] = Some((at as u64, (self.bytes.len() - at) as u64));
            return Ok(());
        };
        self.bytes.clear();
        encode(&mut self.bytes)?;
        let failed = |e: std::io::Error| write_failure("cannot write", e);
        let out = match &mut s.out {
            Some(out) => out,
            None => {
                let fs = s.store.fs().ok_or_else(|| "a streamed shard of an array that is not local".to_string())?;
                s.out.insert(fs.append_to(&s.key, s.expected).map_err(failed)?)
            }
        };
        out.append(&self.bytes).map_err(failed)?;
        self.entries[k] = Some((s.at, self.bytes.len() as u64));
        s.at += self.bytes.len() as u64;
        Ok(())
    }

    /// Put the index in place and finish the file.
    fn finish(mut self, layout: &ShardLayout) -> std::result::Result<Finished, String> {
        if self.entries.iter().all(Option::is_none) {
            return Ok(Finished::Empty);
        }
        let index = layout.encode_index(&self.entries);
        match self.stream.take().and_then(|s| s.out) {
            Some(mut out) => {
                let failed = |e: std::io::Error| write_failure("cannot write", e);
                out.append(&index).map_err(failed)?;
                out.finish().map_err(failed)?;
                Ok(Finished::Streamed)
            }
            None => {
                if self.index_first > 0 {
                    self.bytes[..self.index_first].copy_from_slice(&index);
                } else {
                    self.bytes.extend_from_slice(&index);
                }
                Ok(Finished::Bytes(self.bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fuzz::Rng;
    use super::super::{create, CodecSpec, CreateSpec, Shuffle, ZArray};
    use crate::dtype::{DType, Elem, Scalar};
    use crate::grid::{strides, Region};

    /// The values of `region` of a C-order array of `shape` holding `data`.
    fn cut<T: Copy>(data: &[T], shape: &[u64], region: &Region) -> Vec<T> {
        let mut out = vec![];
        let st = strides(shape);
        crate::grid::for_each_row(region, |idx, _| {
            let off: u64 = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
            let row = region.shape.last().copied().unwrap_or(1);
            out.extend_from_slice(&data[off as usize..(off + row) as usize]);
        });
        out
    }

    /// A random region of `shape` (possibly crossing shards and inner chunks, or exactly one).
    fn region(r: &mut Rng, shape: &[u64]) -> Region {
        let start: Vec<u64> = shape.iter().map(|&n| r.below(n as usize) as u64).collect();
        let len = start.iter().zip(shape).map(|(&s, &n)| 1 + r.below((n - s) as usize) as u64).collect();
        Region::new(start, len)
    }

    /// Arrays of random shapes, inner chunks, shards, dtypes, codecs, fill values and index
    /// locations, written through dsk's own shard encoder and through zarrs', then read both ways
    /// (whole and random regions): every combination gives the same values, bit for bit.
    fn agree<T: Elem>(r: &mut Rng, dtype: DType, case: usize, dir: &std::path::Path) {
        let nd = 1 + r.below(3);
        let inner: Vec<u64> = (0..nd).map(|_| 1 + r.below(5) as u64).collect();
        let shard: Vec<u64> = inner.iter().map(|&c| c * (1 + r.below(3) as u64)).collect();
        let shape: Vec<u64> = shard.iter().map(|&s| 1 + r.below((2 * s + 3) as usize) as u64).collect();
        let codec = match r.below(4) {
            0 => CodecSpec::None,
            1 => CodecSpec::Zstd { level: 1 },
            2 => CodecSpec::Blosc { cname: "lz4".into(), clevel: 5, shuffle: Shuffle::Byte },
            _ => CodecSpec::Blosc { cname: "zstd".into(), clevel: 1, shuffle: Shuffle::Bit },
        };
        let fill = if r.below(2) == 0 { Scalar::Int(0) } else { Scalar::Int(3) };
        let spec = CreateSpec {
            shape: shape.clone(),
            chunks: inner.clone(),
            shard: Some(shard.clone()),
            dtype,
            fill: T::from_scalar(fill).to_scalar(),
            codec,
            dimension_names: None,
            zarr_format: 3,
            attributes: Default::default(),
            half: false,
            complex: false,
            fill_im: 0.0,
        };
        let at_start = r.below(2) == 0;
        let empty = r.below(3) == 0;
        let n: u64 = shape.iter().product();
        // values with runs of the fill value, so that whole inner chunks are often empty
        let data: Vec<T> = (0..n)
            .map(|i| if (i / 7) % 3 == 0 { T::from_scalar(fill) } else { T::from_f64((i % 97) as f64 - 20.0) })
            .collect();
        let what = format!(
            "case {case}: {dtype} {shape:?} inner {inner:?} shard {shard:?} {:?} start {at_start} empty {empty}",
            spec.codec
        );
        let mut arrays = vec![];
        for (name, ours) in [("dsk", true), ("zarrs", false)] {
            let d = dir.join(format!("{case}-{name}"));
            std::fs::create_dir(&d).expect("dir");
            drop(create(&d, &spec).expect("create"));
            if at_start {
                let doc = d.join("zarr.json");
                let mut j: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&doc).expect("read")).expect("json");
                j["codecs"][0]["configuration"]["index_location"] = serde_json::json!("start");
                std::fs::write(&doc, j.to_string()).expect("write");
            }
            let mut z = ZArray::open(&d).expect("open");
            assert!(z.sharded.is_some(), "{what}");
            z.set_write_empty_chunks(empty);
            if !ours {
                z.sharded = None;
            }
            let grid = z.grid();
            for lin in 0..grid.nchunks() {
                let idx = grid.chunk_index(lin);
                let part = cut(&data, &shape, &grid.chunk_region(&idx));
                z.write_chunk(&idx, &part, 1 + r.below(3)).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            arrays.push(ZArray::open(&d).expect("reopen"));
        }
        let bits = |v: &[T]| {
            let mut b = vec![];
            T::encode_le(v, &mut b);
            b
        };
        let full = Region::full(&shape);
        for z in &arrays {
            let via_zarrs = z.retrieve::<T>(&full, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(bits(&via_zarrs) == bits(&data), "{what}: zarrs reads {} otherwise", z.path().display());
            for k in 0..6 {
                let reg = if k == 0 { full.clone() } else { region(r, &shape) };
                let ours = z.read_region::<T>(&reg, 1 + r.below(3)).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(bits(&ours) == bits(&cut(&data, &shape, &reg)), "{what}: {reg:?} of {}", z.path().display());
            }
        }
    }

    #[test]
    fn sharded_arrays_read_and_written_directly_agree_with_zarrs() {
        super::super::init();
        let tmp = tempfile::tempdir().expect("tmp");
        let mut r = Rng(0x5a4d_d1ec);
        for case in 0..120 {
            match case % 4 {
                0 => agree::<f64>(&mut r, DType::Float64, case, tmp.path()),
                1 => agree::<i32>(&mut r, DType::Int32, case, tmp.path()),
                2 => agree::<u8>(&mut r, DType::Uint8, case, tmp.path()),
                _ => agree::<f32>(&mut r, DType::Float32, case, tmp.path()),
            }
        }
    }
}
