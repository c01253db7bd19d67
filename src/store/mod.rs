//! The only module that talks to zarrs (and memmap2): opening and creating Zarr arrays, reading and
//! writing chunks and regions with bounds checks, staging outputs so that a failed run never leaves
//! something that looks complete, and the .npy / raw binary formats.
//!
//! Everything here wraps zarrs errors with the array path and the chunk involved, and validates
//! chunk indices and regions itself (zarrs does not: it would happily write chunk (9, 9) of a 3×2
//! grid).

pub mod backend;
pub mod codec;
pub mod fs;
#[cfg(test)]
mod fuzz;
pub mod group;
pub mod limits;
pub mod meta;
pub mod npy;
pub mod output;
mod panics;
pub mod remote;
pub mod remote_output;
mod shard;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::{Array, ArrayBuilder, ArraySubset, CodecOptions};

use crate::dtype::{DType, Elem, Scalar};
use crate::error::{Error, Result};
use crate::grid::{Grid, Region};
pub use codec::{CodecSpec, Shuffle};

/// The file formats arrays are exported to (and results written as).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum FileFormat {
    /// NumPy .npy (little-endian, C order).
    Npy,
    /// Comma-separated text; 0-d, 1-D (one value per line) and 2-D arrays only.
    Csv,
    /// Raw little-endian bytes in C order, no header.
    Raw,
    /// One JSON object: {"shape": [...], "dtype": "...", "value": nested lists, or a number for a
    /// 0-d result}; NaN and infinities as the strings "NaN", "Infinity", "-Infinity".
    Json,
}
pub use meta::ArrayMeta;

/// Process-wide zarrs settings: no `_zarrs` attribute in the metadata we write.
pub fn init() {
    zarrs::config::global_config_mut().set_include_zarrs_metadata(false);
}

/// Codec options for one task: `concurrency` threads may be used inside the codecs.
pub fn codec_options(concurrency: usize) -> CodecOptions {
    CodecOptions::default().with_concurrent_target(concurrency.max(1))
}

/// An open Zarr array (v2 or v3), in a local directory or on object storage.
pub struct ZArray {
    path: PathBuf,
    array: Array<backend::Store>,
    meta: ArrayMeta,
    write_empty_chunks: bool,
    /// The fill value, read from the metadata when the array is opened (an array whose fill value
    /// cannot be read exactly is refused, never read with some other value).
    fill: Scalar,
    /// Chunks stored as plain little-endian bytes, optionally zstd- or blosc-compressed, with
    /// nothing else in the codec chain: read by [`ZArray::read_chunk_direct`], which decompresses
    /// straight into the result (no zeroed buffer, no intermediate copy), instead of through zarrs'
    /// codec chain.
    direct: Option<DirectCodec>,
    /// Shards dsk reads and writes itself (see [`shard`]), instead of through zarrs.
    sharded: Option<Box<shard::ShardDirect>>,
    /// The open directory a store on a non-UTF-8 path reaches it through (see
    /// [`backend::Store::open`]).
    _dir: Option<std::fs::File>,
    /// An array created on object storage whose metadata document is not written yet: it is
    /// written last ([`ZArray::publish`]), once every chunk is, so that a reader never finds an
    /// array that looks complete and is not.
    unpublished: bool,
    /// A Zarr v2 array with numcodecs' `delta` filter (zarrs has none): zarrs decodes the
    /// compressor, dsk undoes the delta chunk by chunk ([`ZArray::read_region_delta`]).
    delta: bool,
    /// The shape and storage chunks dsk computes with: the metadata's, with the axis of a complex
    /// array's parts appended (see [`ArrayMeta::complex`]).
    view_shape: Vec<u64>,
    view_storage: Vec<u64>,
    /// The imaginary part of a complex array's fill value (`fill` holds the real part).
    fill_im: f64,
}

/// Whether `meta` is a v2 array whose only filter is numcodecs' `delta` in the array's own dtype
/// (`Some(false)`: no filter at all; `None`: some other filter chain).
fn delta_filter(meta: &ArrayMeta, zarray: &serde_json::Value) -> Result<bool> {
    let filters = zarray.get("filters").and_then(|f| f.as_array()).cloned().unwrap_or_default();
    let [only] = filters.as_slice() else {
        return Err(Error::input(
            "",
            format!(
                "has the filters {} — dsk reads a delta filter only when it is the only filter; rewrite the array (e.g. with zarr-python) without them",
                serde_json::Value::Array(filters.clone())
            ),
        ));
    };
    if only.get("id").and_then(|v| v.as_str()) != Some("delta") {
        return Ok(false);
    }
    let own = zarray.get("dtype").and_then(|v| v.as_str()).unwrap_or("");
    let dtype = only.get("dtype").and_then(|v| v.as_str()).unwrap_or(own);
    let astype = only.get("astype").and_then(|v| v.as_str()).unwrap_or(dtype);
    // the same type in the same byte order (numcodecs takes NumPy's names too: "int32")
    let same = |t: &str| match DType::parse_typestr(t) {
        Some((d, big)) => d == meta.dtype && (big == meta.big_endian || meta.dtype.size() == 1),
        None => DType::parse(t).is_some_and(|d| d == meta.dtype && d.name() == t && !meta.big_endian),
    };
    if !same(dtype) || !same(astype) || meta.dtype.is_bool() || meta.order != 'C' {
        return Err(Error::input(
            "",
            format!(
                "a delta filter with dtype {dtype:?}, astype {astype:?} on a {own:?} array in {} order: dsk reads delta filters in the array's own dtype and byte order, C order — rewrite it (e.g. with zarr-python) without the filter",
                meta.order
            ),
        ));
    }
    Ok(true)
}

/// Undo numcodecs' delta filter in place: a running sum in the element type (integers wrap, as
/// NumPy's cumsum does in that type).
fn undo_delta<T: Elem>(v: &mut [T]) {
    if T::DTYPE.is_float() {
        let mut acc = 0.0f64;
        for x in v.iter_mut() {
            // a float32 sum computed in float64 and rounded is the float32 sum (exact enough
            // for one addition), so this is NumPy's cumsum in the array's dtype
            let s = T::from_f64(acc + x.to_f64());
            acc = s.to_f64();
            *x = s;
        }
    } else if T::DTYPE == DType::Uint64 {
        let mut acc = 0u64;
        for x in v.iter_mut() {
            acc = acc.wrapping_add(x.to_u64());
            *x = T::from_u64(acc);
        }
    } else {
        let mut acc = 0i64;
        for x in v.iter_mut() {
            acc = T::from_i64(acc.wrapping_add(x.to_i64())).to_i64();
            *x = T::from_i64(acc);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DirectCodec {
    Raw,
    Zstd {
        level: i32,
        checksum: bool,
    },
    /// c-blosc, called directly: `cname` is one of blosc's NUL-terminated compressor names.
    Blosc {
        cname: &'static [u8],
        clevel: u8,
        shuffle: u8,
        typesize: usize,
        blocksize: usize,
    },
}

/// Whether the elements of `meta` are stored as they lie in memory here: little-endian numbers
/// in C order (bools go through zarrs, which validates them: arbitrary bytes must never become a
/// bool).
fn plain_elements(meta: &ArrayMeta) -> bool {
    cfg!(target_endian = "little")
        && !(meta.big_endian || meta.order != 'C' || meta.dtype.is_bool() || meta.half || meta.complex)
}

/// The codec chain of `meta`, when a chunk file holds the elements as little-endian bytes,
/// optionally zstd-compressed (zarr-python's default for v3) or blosc-compressed (dsk's usual
/// choice), in C order. (Sharded arrays: see [`shard::ShardDirect`].)
fn direct_codec(meta: &ArrayMeta) -> Option<DirectCodec> {
    if meta.shards.is_some() || !plain_elements(meta) {
        return None;
    }
    codec_chain(meta.zarr_format, &meta.codecs, meta.dtype)
}

/// [`DirectCodec`] of a chain of codecs (`{name, configuration}` objects) of an array of `dtype`.
fn codec_chain(zarr_format: u8, codecs: &[serde_json::Value], dtype: DType) -> Option<DirectCodec> {
    let names: Vec<&str> = codecs.iter().filter_map(|c| c.get("name").and_then(|n| n.as_str())).collect();
    if names.len() != codecs.len() {
        return None;
    }
    let zstd = || {
        let conf = codecs.last().and_then(|c| c.get("configuration"));
        let level = conf.and_then(|c| c.get("level")).and_then(|v| v.as_i64()).unwrap_or(0) as i32;
        let checksum = conf.and_then(|c| c.get("checksum")).and_then(|v| v.as_bool()).unwrap_or(false);
        DirectCodec::Zstd { level, checksum }
    };
    let blosc = || {
        let conf = codecs.last().and_then(|c| c.get("configuration"))?;
        let cname: &'static [u8] = match conf.get("cname").and_then(|v| v.as_str())? {
            "lz4" => blosc_src::BLOSC_LZ4_COMPNAME,
            "lz4hc" => blosc_src::BLOSC_LZ4HC_COMPNAME,
            "blosclz" => blosc_src::BLOSC_BLOSCLZ_COMPNAME,
            "zstd" => blosc_src::BLOSC_ZSTD_COMPNAME,
            "zlib" => blosc_src::BLOSC_ZLIB_COMPNAME,
            _ => return None,
        };
        let clevel = conf.get("clevel").and_then(|v| v.as_u64()).filter(|&l| l <= 9)? as u8;
        // v3 names the shuffle, numcodecs (v2) numbers it
        let shuffle = match conf.get("shuffle")? {
            v if v == "noshuffle" || v == 0 => 0,
            v if v == "shuffle" || v == 1 => 1,
            v if v == "bitshuffle" || v == 2 => 2,
            _ => return None,
        };
        let typesize = conf.get("typesize").and_then(|v| v.as_u64()).map(|t| t as usize).unwrap_or(dtype.size());
        let blocksize = conf.get("blocksize").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        Some(DirectCodec::Blosc { cname, clevel, shuffle, typesize: typesize.max(1), blocksize })
    };
    match (zarr_format, names.as_slice()) {
        (3, ["bytes"]) => Some(DirectCodec::Raw),
        (3, ["bytes", "zstd"]) => Some(zstd()),
        (3, ["bytes", "blosc"]) => blosc(),
        (2, []) => Some(DirectCodec::Raw),
        (2, ["zstd"]) => Some(zstd()),
        (2, ["blosc"]) => blosc(),
        _ => None,
    }
}

/// Decode one chunk file `encoded` holding `n` elements through `codec`, straight into the
/// result (no zeroed buffer, no intermediate copy). The message says what is wrong.
fn decode_direct<T: Elem>(codec: DirectCodec, encoded: &[u8], n: usize) -> std::result::Result<Vec<T>, String> {
    let nbytes = n * T::DTYPE.size();
    let mut out: Vec<T>;
    match codec {
        DirectCodec::Zstd { .. } => {
            // decompressed straight into the new vector's spare capacity (no zeroing first)
            out = Vec::with_capacity(n);
            let got = DCTX.with(|cell| -> std::io::Result<usize> {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new()?);
                }
                let d = slot.as_mut().ok_or_else(|| std::io::Error::other("no decompressor"))?;
                d.decompress_to_buffer(encoded, &mut SpareBytes(&mut out))
            });
            match got {
                Ok(len) if len == nbytes => {}
                Ok(len) => {
                    return Err(format!(
                        "decompressed {len} bytes where {nbytes} were expected — the chunk file is damaged"
                    ))
                }
                Err(e) => return Err(format!("cannot decompress: {e} — the chunk file is damaged")),
            }
        }
        DirectCodec::Blosc { .. } => {
            out = Vec::new();
            blosc_decompress_into(encoded, &mut out, nbytes)?;
        }
        DirectCodec::Raw => {
            if encoded.len() != nbytes {
                return Err(format!(
                    "holds {} bytes where {nbytes} were expected — the chunk file is damaged",
                    encoded.len()
                ));
            }
            out = vec![T::default(); n];
            T::decode_bytes(encoded, false, &mut out);
        }
    }
    Ok(out)
}

/// Encode the elements' bytes `raw` through `codec`, appending the result to `out`.
fn encode_append(codec: DirectCodec, raw: &[u8], out: &mut Vec<u8>) -> std::result::Result<(), String> {
    match codec {
        DirectCodec::Raw => {
            out.extend_from_slice(raw);
            Ok(())
        }
        DirectCodec::Zstd { level, checksum } => {
            zstd_compress(raw, level, checksum, out).map_err(|e| format!("cannot compress: {e}"))
        }
        DirectCodec::Blosc { cname, clevel, shuffle, typesize, blocksize } => {
            blosc_compress(raw, cname, clevel, shuffle, typesize, blocksize, out)
        }
    }
}

/// Whether every element of `data` is `fill`, bit for bit, as Zarr's fill-value check (a NaN
/// fill matches NaN chunks).
fn all_fill<T: Elem>(data: &[T], fill: T) -> bool {
    let mut fb = Vec::new();
    T::encode_le(&[fill], &mut fb);
    elem_bytes(data).chunks_exact(fb.len()).all(|b| b == fb.as_slice())
}

/// Decompress the blosc frame `src` into the spare capacity of `out`, which must end up holding
/// exactly `nbytes`; the frame's header is validated first (sizes, version), so that a damaged or
/// hostile file is an error, never a read outside the buffers.
fn blosc_decompress_into<T: Elem>(src: &[u8], out: &mut Vec<T>, nbytes: usize) -> std::result::Result<(), String> {
    use std::ffi::c_void;
    assert!(!T::DTYPE.is_bool(), "bools must not be written as raw bytes");
    let mut declared: usize = 0;
    // SAFETY: blosc reads at most src.len() bytes of the header and frame it validates
    let valid = unsafe { blosc_src::blosc_cbuffer_validate(src.as_ptr() as *const c_void, src.len(), &mut declared) };
    if valid != 0 {
        return Err("is not a valid blosc frame — the chunk file is damaged".into());
    }
    if declared != nbytes {
        return Err(format!(
            "holds {declared} bytes once decompressed where {nbytes} were expected — the chunk file is damaged"
        ));
    }
    out.clear();
    out.reserve_exact(nbytes.div_ceil(std::mem::size_of::<T>()));
    // SAFETY: the destination has room for nbytes (reserved above), blosc writes at most destsize
    // bytes, and the length is set only over the bytes it reports written, in whole elements
    // (numbers without padding, every bit pattern valid)
    let got = unsafe {
        blosc_src::blosc_decompress_ctx(src.as_ptr() as *const c_void, out.as_mut_ptr() as *mut c_void, nbytes, 1)
    };
    if got < 0 || got as usize != nbytes {
        return Err(format!("cannot decompress (blosc returned {got}) — the chunk file is damaged"));
    }
    unsafe { out.set_len(nbytes / std::mem::size_of::<T>()) };
    Ok(())
}

/// Compress `src` into one blosc frame, one thread, appended to `dest`.
fn blosc_compress(
    src: &[u8],
    cname: &'static [u8],
    clevel: u8,
    shuffle: u8,
    typesize: usize,
    blocksize: usize,
    dest: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    use std::ffi::{c_char, c_int, c_void};
    let destsize = src.len() + blosc_src::BLOSC_MAX_OVERHEAD as usize;
    dest.reserve(destsize);
    let at = dest.len();
    // SAFETY: src and dest do not overlap; blosc writes at most destsize bytes after dest's
    // length, where its capacity has room for them (reserved above), and reports how many;
    // cname is NUL-terminated
    let n = unsafe {
        blosc_src::blosc_compress_ctx(
            clevel as c_int,
            shuffle as c_int,
            typesize,
            src.len(),
            src.as_ptr() as *const c_void,
            dest.as_mut_ptr().add(at) as *mut c_void,
            destsize,
            cname.as_ptr() as *const c_char,
            blocksize,
            1,
        )
    };
    if n <= 0 || n as usize > destsize {
        return Err(format!("blosc could not compress {} bytes (returned {n})", src.len()));
    }
    // SAFETY: blosc initialised the n bytes after the old length
    unsafe { dest.set_len(at + n as usize) };
    Ok(())
}

thread_local! {
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    /// A compression context per thread and level, reused from chunk to chunk.
    static CCTX: std::cell::RefCell<Option<(i32, bool, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
}

/// Compress `src` with a reused per-thread context, appended to `dest`.
fn zstd_compress(src: &[u8], level: i32, checksum: bool, dest: &mut Vec<u8>) -> std::io::Result<()> {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !matches!(slot.as_ref(), Some((l, c, _)) if *l == level && *c == checksum) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.include_checksum(checksum)?;
            *slot = Some((level, checksum, c));
        }
        dest.reserve(zstd::zstd_safe::compress_bound(src.len()));
        match slot.as_mut() {
            Some((_, _, c)) => c.compress_to_buffer(src, &mut Appending::new(dest)).map(|_| ()),
            None => Err(std::io::Error::other("no compressor")),
        }
    })
}

/// The spare capacity of a byte vector as zstd's output buffer: what zstd writes is appended.
struct Appending<'a> {
    v: &'a mut Vec<u8>,
    at: usize,
}

impl<'a> Appending<'a> {
    fn new(v: &'a mut Vec<u8>) -> Appending<'a> {
        let at = v.len();
        Appending { v, at }
    }
}

// SAFETY: `as_slice` covers the bytes written so far after the old length, `capacity` and
// `as_mut_ptr` describe the allocation after it, and `filled_until` extends the length over the n
// bytes zstd reports written from there.
unsafe impl zstd::zstd_safe::WriteBuf for Appending<'_> {
    fn as_slice(&self) -> &[u8] {
        &self.v[self.at..]
    }
    fn capacity(&self) -> usize {
        self.v.capacity() - self.at
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: at ≤ len ≤ capacity
        unsafe { self.v.as_mut_ptr().add(self.at) }
    }
    unsafe fn filled_until(&mut self, n: usize) {
        // SAFETY: the caller guarantees the n bytes after the old length are written
        unsafe { self.v.set_len(self.at + n) }
    }
}

impl std::fmt::Debug for ZArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZArray").field("path", &self.path).field("meta", &self.meta).finish()
    }
}

/// What to do about a failed write, from the OS error zarrs reports in its text (its errors wrap
/// the `io::Error` in layers that hide its kind): `""` when there is nothing to add.
fn write_hint(text: &str) -> &'static str {
    let os = |n: i32| text.contains(&format!("(os error {n})"));
    if os(libc::EFBIG) {
        " — the file size limit (ulimit -f) was reached while writing it; raise the limit or write elsewhere"
    } else if os(libc::ENOSPC) {
        " — the file system is full; free some space on it or write elsewhere"
    } else if os(libc::EDQUOT) {
        " — the disk quota is exhausted; free some space or write elsewhere"
    } else if os(libc::EACCES) || os(libc::EPERM) {
        " — permission denied; choose a location you can write to, or fix its permissions"
    } else if os(libc::EROFS) {
        " — the file system is read-only; write elsewhere"
    } else {
        ""
    }
}

/// A failed chunk read with its cause: a permission or I/O error of the OS, else damaged data.
fn read_failure(text: &str) -> String {
    let os = |n: i32| text.contains(&format!("(os error {n})"));
    let hint = if os(libc::EACCES) || os(libc::EPERM) {
        "dsk may not read the chunk file: make the array readable (chmod -R +r) or run dsk as a user who may"
    } else if os(libc::EIO) {
        "the device reported an I/O error; check the disk"
    } else if text.contains("(os error") {
        "the chunk file cannot be read; check the array's files"
    } else {
        "the chunk file may be damaged"
    };
    format!("{text} — {hint}")
}

/// The message of a failed write: what failed, and the fix when the OS error names one.
fn write_failure(what: &str, e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    format!("{what}: {text}{}", write_hint(&text))
}

fn zarrs_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::input(path, format!("{what}: {e}"))
}

impl ZArray {
    /// Open the array at `path`, checking its metadata first so that errors name the problem.
    pub fn open(path: &Path) -> Result<ZArray> {
        let meta = meta::read_meta(path)?;
        let (store, dir) = backend::Store::open(path, Some(limits::ReadLimits::of(&meta)))
            .map_err(|e| zarrs_err(path, "cannot open the store", e))?;
        // zarrs' complaints are about the metadata document: name it
        let doc = path.join(if meta.zarr_format == 3 { "zarr.json" } else { ".zarray" });
        let mut delta = false;
        let mut without_filters = None;
        if meta.zarr_format == 2 && meta.codecs.iter().any(|c| c.get("name").and_then(|n| n.as_str()) == Some("delta"))
        {
            if remote::is_url(path) {
                return Err(Error::input(
                    &doc,
                    "has a delta filter, which dsk reads from local arrays only — copy the array to a local disk",
                ));
            }
            let text = std::fs::read(&doc).map_err(|e| Error::io(&doc, "read", e))?;
            let mut zarray: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| Error::input(&doc, format!("not JSON: {e}")))?;
            delta = delta_filter(&meta, &zarray).map_err(|e| match e {
                Error::Input { msg, .. } => Error::input(&doc, msg),
                e => e,
            })?;
            if delta {
                zarray["filters"] = serde_json::Value::Null;
                let m: zarrs::array::ArrayMetadataV2 = serde_json::from_value(zarray)
                    .map_err(|e| Error::input(&doc, format!("cannot open the array: {e}")))?;
                without_filters = Some(zarrs::array::ArrayMetadata::V2(m));
            }
        }
        // xarray writes complex v2 arrays with a null fill value (no _FillValue), which zarrs
        // refuses: it reads as 0, as in zarr-python
        if meta.zarr_format == 2 && meta.complex && meta.fill_value.is_null() {
            if remote::is_url(path) {
                return Err(Error::input(
                    &doc,
                    "a complex Zarr v2 array without a fill value is read from local arrays only — copy it to a local disk",
                ));
            }
            let text = std::fs::read(&doc).map_err(|e| Error::io(&doc, "read", e))?;
            let mut zarray: serde_json::Value = match &without_filters {
                Some(zarrs::array::ArrayMetadata::V2(m)) => {
                    serde_json::to_value(m).map_err(|e| Error::Internal(format!("{}: {e}", doc.display())))?
                }
                _ => serde_json::from_slice(&text).map_err(|e| Error::input(&doc, format!("not JSON: {e}")))?,
            };
            zarray["fill_value"] = serde_json::json!([0.0, 0.0]);
            let m: zarrs::array::ArrayMetadataV2 = serde_json::from_value(zarray)
                .map_err(|e| Error::input(&doc, format!("cannot open the array: {e}")))?;
            without_filters = Some(zarrs::array::ArrayMetadata::V2(m));
        }
        let store = Arc::new(store);
        let opened = panics::guarded(|| match without_filters {
            Some(m) => Array::new_with_metadata(store, "/", m),
            None => Array::open(store, "/"),
        })
            .map_err(|p| Error::input(&doc, format!("cannot open the array: zarrs failed ({p}) — the array's metadata is not valid Zarr; rewrite it (e.g. with zarr-python)")))?;
        let array = opened.map_err(|e| {
            // zarrs quotes the metadata (e.g. a codec name): one line, no control characters
            let text = meta::printable(&one_line(&e.to_string()));
            let hint = if text.contains("codec") || text.contains("Codec") {
                " — dsk reads zstd, blosc, gzip, zlib, uncompressed and sharded arrays (and v2 delta filters); rewrite it with one of those (e.g. with zarr-python)"
            } else {
                " — the array's metadata is not valid Zarr; rewrite it (e.g. with zarr-python)"
            };
            Error::input(&doc, format!("cannot open the array: {text}{hint}"))
        })?;
        let direct = direct_codec(&meta);
        let sharded = shard::ShardDirect::of(&meta).map(Box::new);
        let (fill, fill_im) = complex_fill_of(&meta).map_err(|m| {
            Error::input(&doc, format!("fill value {}: {m} — fix the array's metadata", meta.fill_value))
        })?;
        Ok(ZArray {
            path: path.to_path_buf(),
            array,
            view_shape: meta.view(&meta.shape),
            view_storage: meta.view(meta.storage_chunks()),
            meta,
            write_empty_chunks: false,
            fill,
            fill_im,
            direct,
            sharded,
            _dir: dir,
            unpublished: false,
            delta,
        })
    }

    /// Write the metadata document of an array created on object storage (see `unpublished`);
    /// nothing to do for other arrays, whose metadata is written when they are created.
    pub fn publish(&mut self) -> Result<()> {
        if self.unpublished {
            self.array.store_metadata().map_err(|e| {
                Error::output(&self.path, format!("cannot write zarr.json: {}", one_line(&e.to_string())))
            })?;
            self.unpublished = false;
        }
        Ok(())
    }

    /// What identifies the array as stored, to tell whether another program replaced or
    /// rewrote it while it was read: its metadata document's version (ETag, size, time) on object
    /// storage; locally the directory's and the document's inode, size and modification time.
    pub fn version(&self) -> Result<String> {
        let doc = if self.meta.zarr_format == 3 { "zarr.json" } else { ".zarray" };
        let gone = || {
            Error::input(
                &self.path,
                format!(
                    "{doc} disappeared while dsk read the array — another program replaced or removed it; run again"
                ),
            )
        };
        if let Some(r) = self.array.storage().remote() {
            return r.version(doc).map_err(|m| remote_output::input_error_at(&self.path, m))?.ok_or_else(gone);
        }
        use std::os::unix::fs::MetadataExt;
        let stat = |p: &Path| std::fs::metadata(p).map_err(|_| gone());
        let (d, f) = (stat(&self.path)?, stat(&self.path.join(doc))?);
        Ok(format!("{} {} {} {} {} {}", d.dev(), d.ino(), f.ino(), f.len(), f.mtime(), f.mtime_nsec()))
    }

    /// Whether the array lives on object storage.
    pub fn is_remote(&self) -> bool {
        self.array.storage().remote().is_some()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store chunks even when all their elements equal the fill value (zarr-python's
    /// `write_empty_chunks`); by default such chunks are left out and read back as the fill value.
    pub fn set_write_empty_chunks(&mut self, yes: bool) {
        self.write_empty_chunks = yes;
    }

    pub fn meta(&self) -> &ArrayMeta {
        &self.meta
    }

    /// The shape dsk computes with: the array's, with a last axis of 2 for a complex array's parts.
    pub fn shape(&self) -> &[u64] {
        &self.view_shape
    }

    pub fn dtype(&self) -> DType {
        self.meta.dtype
    }

    /// The grid of storage objects (shards when sharded, else chunks): the unit of a write task.
    pub fn grid(&self) -> Grid {
        Grid::new(self.view_shape.clone(), self.view_storage.clone())
    }

    /// The grid of the units the array is best read by: the inner chunks of a local sharded array
    /// whose shards dsk decodes itself (see [`read_chunks`]), else [`ZArray::grid`].
    pub fn read_grid(&self) -> Grid {
        match (self.sharded.as_deref(), self.is_remote()) {
            (Some(_), false) => Grid::new(self.view_shape.clone(), self.meta.chunks.clone()),
            _ => self.grid(),
        }
    }

    fn check_dtype<T: Elem>(&self) -> Result<()> {
        if T::DTYPE != self.meta.dtype {
            return Err(Error::Internal(format!(
                "{}: read as {} but the array is {}",
                self.path.display(),
                T::DTYPE,
                self.meta.dtype
            )));
        }
        Ok(())
    }

    /// Read `region` (C order). `concurrency` bounds the threads zarrs may use for it.
    pub fn read_region<T: Elem>(&self, region: &Region, concurrency: usize) -> Result<Vec<T>> {
        self.check_dtype::<T>()?;
        if !region.within(self.shape()) {
            return Err(Error::Internal(format!(
                "{}: region {:?}+{:?} is outside the array {:?}",
                self.path.display(),
                region.start,
                region.shape,
                self.shape()
            )));
        }
        if region.is_empty() {
            return Ok(vec![]);
        }
        if self.delta {
            return self.read_region_delta(region, concurrency);
        }
        if self.meta.complex {
            return self.read_region_complex(region, concurrency);
        }
        if self.meta.half {
            // float16, widened exactly to the float32 dsk computes in
            let v = self.retrieve::<half::f16>(region, concurrency)?;
            return Ok(v.into_iter().map(|h| T::from_f64(h.to_f64())).collect());
        }
        if let Some(sd) = self.sharded.as_deref() {
            if let Some(v) = self.read_region_sharded::<T>(sd, region, concurrency)? {
                return Ok(v);
            }
        }
        if self.direct.is_some() {
            let grid = self.grid();
            let idx = grid.chunk_index_of(&region.start);
            let whole = grid.chunk_region(&idx);
            if whole == *region && whole.shape == grid.chunks {
                return self.read_chunk_direct(&idx, &whole);
            }
        }
        self.retrieve::<T>(region, concurrency)
    }

    /// The elements of `region` (in the array's own shape, without the axis of a complex array's
    /// parts) as zarrs decodes them into `E`.
    fn retrieve<E: zarrs::array::ElementOwned>(&self, region: &Region, concurrency: usize) -> Result<Vec<E>> {
        let subset = ArraySubset::new_with_ranges(&region.ranges());
        let opts = codec_options(concurrency);
        let prefetched = self.prefetch(region);
        let chunk_err = |msg: String| {
            let grid = Grid::new(self.meta.shape.clone(), self.meta.storage_chunks().to_vec());
            let first = grid.chunk_index_of(&region.start);
            let last_point: Vec<u64> = (0..region.ndim()).map(|a| region.end(a) - 1).collect();
            let last = grid.chunk_index_of(&last_point);
            let unit = if self.meta.shards.is_some() { "shards" } else { "chunks" };
            let which = if first == last {
                String::new()
            } else {
                format!(" (one of the {unit} from ({}) to ({}))", join(&first), join(&last))
            };
            Error::Chunk { path: self.path.clone(), chunk: first, msg: format!("cannot read{which}: {msg}") }
        };
        let got = panics::guarded(|| self.array.retrieve_array_subset_opt::<Vec<E>>(&subset, &opts));
        if let Some(remote) = prefetched.as_ref().and_then(|(s, keys)| s.remote().map(|r| (r, keys))) {
            remote.0.forget(remote.1);
        }
        match got {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let text = meta::printable(&one_line(&e.to_string()));
                // dsk's own store errors already say what to do
                if text.contains(" — ") {
                    Err(chunk_err(text))
                } else {
                    Err(chunk_err(read_failure(&text)))
                }
            }
            Err(p) => Err(chunk_err(format!(
                "zarrs failed on it ({p}) — the chunk file is damaged; restore it or rewrite the array"
            ))),
        }
    }

    /// [`ZArray::read_region`] of a complex array: `region` spans the parts' axis too (its last);
    /// the complex elements are decoded and laid out as their parts, real then imaginary.
    fn read_region_complex<T: Elem>(&self, region: &Region, concurrency: usize) -> Result<Vec<T>> {
        let nd = region.ndim();
        let rest = Region::new(region.start[..nd - 1].to_vec(), region.shape[..nd - 1].to_vec());
        let pairs: Vec<[T; 2]> = match T::DTYPE {
            DType::Float32 => self
                .retrieve::<num_complex::Complex<f32>>(&rest, concurrency)?
                .into_iter()
                .map(|c| [T::from_f64(c.re as f64), T::from_f64(c.im as f64)])
                .collect(),
            _ => self
                .retrieve::<num_complex::Complex<f64>>(&rest, concurrency)?
                .into_iter()
                .map(|c| [T::from_f64(c.re), T::from_f64(c.im)])
                .collect(),
        };
        let (first, len) = (region.start[nd - 1] as usize, region.shape[nd - 1] as usize);
        Ok(pairs.iter().flat_map(|p| p[first..first + len].iter().copied()).collect())
    }

    /// [`ZArray::write_chunk`] of a complex array: `idx` and `region` span the parts' axis (one
    /// chunk along it), `data` holds the parts of each element side by side.
    fn write_chunk_complex<T: Elem>(
        &self,
        idx: &[u64],
        region: &Region,
        data: &[T],
        opts: &CodecOptions,
    ) -> Result<()> {
        let nd = idx.len();
        let err = |msg: String| Error::Chunk { path: self.path.clone(), chunk: idx.to_vec(), msg };
        if idx[nd - 1] != 0 || region.shape[nd - 1] != 2 {
            return Err(Error::Internal(format!("a complex chunk {idx:?} without both parts")));
        }
        let (cidx, rshape) = (&idx[..nd - 1], &region.shape[..nd - 1]);
        let chunks = self.meta.storage_chunks();
        let full_len: u64 = chunks.iter().product();
        let res = match T::DTYPE {
            DType::Float32 => {
                let c = |p: &[T]| num_complex::Complex::new(p[0].to_f64() as f32, p[1].to_f64() as f32);
                let mut full = vec![c(&[T::from_scalar(self.fill), T::from_f64(self.fill_im)]); full_len as usize];
                let vals: Vec<_> = data.chunks_exact(2).map(c).collect();
                copy_into(&vals, rshape, &mut full, chunks);
                self.array.store_chunk_opt(cidx, &full[..], opts)
            }
            _ => {
                let c = |p: &[T]| num_complex::Complex::new(p[0].to_f64(), p[1].to_f64());
                let mut full = vec![c(&[T::from_scalar(self.fill), T::from_f64(self.fill_im)]); full_len as usize];
                let vals: Vec<_> = data.chunks_exact(2).map(c).collect();
                copy_into(&vals, rshape, &mut full, chunks);
                self.array.store_chunk_opt(cidx, &full[..], opts)
            }
        };
        res.map_err(|e| err(write_failure("cannot write", e)))
    }

    /// [`ZArray::read_region`] of an array with a delta filter: each chunk it touches is read
    /// whole (the delta runs over the whole chunk, edges included, in C order), summed back, and
    /// the part inside `region` copied out.
    fn read_region_delta<T: Elem>(&self, region: &Region, concurrency: usize) -> Result<Vec<T>> {
        let grid = self.grid();
        let nd = region.ndim();
        let opts = codec_options(concurrency);
        let mut out = vec![T::from_scalar(self.fill); region.len() as usize];
        let ranges: Vec<_> = (0..nd).map(|a| grid.chunks_overlapping(a, region.start[a], region.end(a))).collect();
        let counts: Vec<u64> = ranges.iter().map(|r| r.end - r.start).collect();
        let out_strides = crate::grid::strides(&region.shape);
        let full = &grid.chunks;
        let chunk_strides = crate::grid::strides(full);
        for linear in 0..counts.iter().product::<u64>() {
            let rel = crate::grid::unravel(linear, &counts);
            let idx: Vec<u64> = rel.iter().zip(&ranges).map(|(r, rg)| rg.start + r).collect();
            let err = |msg: String| Error::Chunk { path: self.path.clone(), chunk: idx.clone(), msg };
            let got = panics::guarded(|| self.array.retrieve_chunk_if_exists_opt::<Vec<T>>(&idx, &opts))
                .map_err(|p| err(format!("zarrs failed on it ({p}) — the chunk file is damaged")))?
                .map_err(|e| {
                    err(format!("cannot read: {}", read_failure(&meta::printable(&one_line(&e.to_string())))))
                })?;
            let Some(mut values) = got else { continue }; // never written: the fill value
            if values.len() as u64 != full.iter().product::<u64>() {
                return Err(err(format!(
                    "holds {} elements where a chunk has {}",
                    values.len(),
                    full.iter().product::<u64>()
                )));
            }
            undo_delta(&mut values);
            // the part of this chunk inside the region
            let cr = grid.chunk_region(&idx);
            let start: Vec<u64> = (0..nd).map(|a| cr.start[a].max(region.start[a])).collect();
            let shape: Vec<u64> = (0..nd).map(|a| cr.end(a).min(region.end(a)) - start[a]).collect();
            let part = Region::new(start, shape);
            let row = if nd == 0 { 1 } else { part.shape[nd - 1] as usize };
            crate::grid::for_each_row(&part, |p, _| {
                let src: u64 = (0..nd).map(|a| (p[a] - cr.start[a]) * chunk_strides[a]).sum();
                let dst: u64 = (0..nd).map(|a| (p[a] - region.start[a]) * out_strides[a]).sum();
                out[dst as usize..dst as usize + row].copy_from_slice(&values[src as usize..src as usize + row]);
            });
        }
        Ok(out)
    }

    /// On object storage, fetch the chunks of `region` at once (their requests in flight together)
    /// before zarrs decodes them one by one; returns what to forget afterwards.
    fn prefetch(&self, region: &Region) -> Option<(Arc<backend::Store>, Vec<String>)> {
        let store = self.array.storage();
        let remote = store.remote()?;
        if self.meta.shards.is_some() {
            return None; // shards are read in parts, by their index
        }
        let grid = self.grid();
        let first = grid.chunk_index_of(&region.start);
        let last_point: Vec<u64> = (0..region.ndim()).map(|a| region.end(a) - 1).collect();
        let last = grid.chunk_index_of(&last_point);
        let span = Region::new(first.clone(), first.iter().zip(&last).map(|(f, l)| l - f + 1).collect());
        if span.len() < 2 || span.len() > 4096 {
            return None;
        }
        let mut keys = Vec::with_capacity(span.len() as usize);
        let nd = span.ndim();
        crate::grid::for_each_row(&span, |row, _| {
            let mut idx = row.to_vec();
            for i in 0..span.shape[nd - 1] {
                idx[nd - 1] = row[nd - 1] + i;
                keys.push(self.array.chunk_key(&idx).as_str().to_string());
            }
        });
        remote.prefetch(&keys, PREFETCH_REQUESTS);
        Some((store.clone(), keys))
    }

    /// Read a whole (interior) chunk by decompressing its file straight into the result.
    fn read_chunk_direct<T: Elem>(&self, idx: &[u64], region: &Region) -> Result<Vec<T>> {
        let n = region.len() as usize;
        let key = self.array.chunk_key(idx);
        let err = |msg: String| Error::Chunk { path: self.path.clone(), chunk: idx.to_vec(), msg };
        let encoded = match self.array.storage().read_checked(&key) {
            Ok(Some(b)) => b,
            Ok(None) => {
                // never written: the fill value
                let fill = T::from_scalar(self.fill);
                return Ok(vec![fill; n]);
            }
            Err(m) if m.contains(" — ") => return Err(err(format!("cannot read: {m}"))),
            Err(m) => return Err(err(format!("cannot read: {}", read_failure(&m)))),
        };
        let codec = self.direct.ok_or_else(|| Error::Internal("a direct read of an array without one".into()))?;
        decode_direct(codec, &encoded, n).map_err(err)
    }

    /// Write the storage chunk `idx`; `data` holds the chunk's region clipped to the array (C order).
    pub fn write_chunk<T: Elem>(&self, idx: &[u64], data: &[T], concurrency: usize) -> Result<()> {
        self.check_dtype::<T>()?;
        let grid = self.grid();
        let gshape = grid.grid_shape();
        if idx.len() != gshape.len() || idx.iter().zip(&gshape).any(|(i, n)| i >= n) {
            return Err(Error::Internal(format!("chunk {idx:?} is outside the grid {gshape:?}")));
        }
        let region = grid.chunk_region(idx);
        if data.len() as u64 != region.len() {
            return Err(Error::Internal(format!(
                "chunk {idx:?}: {} elements for a region of {}",
                data.len(),
                region.len()
            )));
        }
        let mut opts = codec_options(concurrency);
        opts.set_store_empty_chunks(self.write_empty_chunks);
        if let (Some(sd), false) = (self.sharded.as_deref(), T::DTYPE.is_bool()) {
            return self.write_shard_direct(sd, idx, &region, data, concurrency);
        }
        if let (Some(codec), true, false) = (self.direct, region.shape == grid.chunks, T::DTYPE.is_bool()) {
            return self.write_chunk_direct(idx, data, codec);
        }
        if self.meta.complex {
            return self.write_chunk_complex(idx, &region, data, &opts);
        }
        let res = if self.meta.half {
            // rounded to float16 (to nearest, ties to even, as NumPy's astype)
            let h = |v: T| crate::dtype::f16_nearest(v.to_f64());
            let mut full = vec![h(T::from_scalar(self.fill)); grid.chunk_len() as usize];
            if region.shape == grid.chunks {
                for (d, &v) in full.iter_mut().zip(data) {
                    *d = h(v);
                }
            } else {
                let halves: Vec<half::f16> = data.iter().map(|&v| h(v)).collect();
                copy_into(&halves, &region.shape, &mut full, &grid.chunks);
            }
            self.array.store_chunk_opt(idx, &full[..], &opts)
        } else if region.shape == grid.chunks {
            self.array.store_chunk_opt(idx, data, &opts)
        } else {
            // Edge chunks are stored with the full chunk shape: pad with the fill value.
            let fill = T::from_scalar(self.fill);
            let mut full = vec![fill; grid.chunk_len() as usize];
            let padded = Region::new(vec![0; grid.ndim()], grid.chunks.clone());
            copy_into(data, &region.shape, &mut full, &padded.shape);
            self.array.store_chunk_opt(idx, &full[..], &opts)
        };
        res.map_err(|e| Error::Chunk {
            path: self.path.clone(),
            chunk: idx.to_vec(),
            msg: write_failure("cannot write", e),
        })
    }

    /// The regions (inner chunks cut to the array, in the order they are written) that
    /// [`ZArray::write_chunk_by`] asks values for when it writes shard `idx` one inner chunk at a
    /// time; `None` when it asks for the whole chunk at once.
    pub fn inner_regions(&self, idx: &[u64]) -> Option<Vec<Region>> {
        let sd = self.sharded.as_deref()?;
        let region = self.grid().chunk_region(idx);
        Some(self.inner_parts(sd, &region))
    }

    /// Write the storage chunk `idx` with the values `produce` makes for regions of the array:
    /// the whole chunk (cut to the array) at once, or, for a shard dsk writes itself, one inner
    /// chunk at a time, so that a shard's values are never all in memory together.
    pub fn write_chunk_by<T: Elem>(
        &self,
        idx: &[u64],
        concurrency: usize,
        produce: &mut dyn FnMut(&Region) -> Result<Vec<T>>,
    ) -> Result<()> {
        let region = self.grid().chunk_region(idx);
        match self.sharded.as_deref() {
            Some(sd) if !T::DTYPE.is_bool() => {
                self.check_dtype::<T>()?;
                let gshape = self.grid().grid_shape();
                if idx.len() != gshape.len() || idx.iter().zip(&gshape).any(|(i, n)| i >= n) {
                    return Err(Error::Internal(format!("chunk {idx:?} is outside the grid {gshape:?}")));
                }
                self.write_shard_produced(sd, idx, &region, produce)
            }
            _ => {
                let v = produce(&region)?;
                self.write_chunk(idx, &v, concurrency)
            }
        }
    }

    /// Write a whole chunk of a plain little-endian (optionally zstd or blosc) array: encode with
    /// a reused context and store the bytes, skipping chunks equal to the fill value as zarrs does.
    fn write_chunk_direct<T: Elem>(&self, idx: &[u64], data: &[T], codec: DirectCodec) -> Result<()> {
        let err = |msg: String| Error::Chunk { path: self.path.clone(), chunk: idx.to_vec(), msg };
        if !self.write_empty_chunks && all_fill(data, T::from_scalar(self.fill)) {
            return self.array.erase_chunk(idx).map_err(|e| err(format!("cannot erase: {e}")));
        }
        let raw = elem_bytes(data);
        let mut encoded = Vec::new();
        encode_append(codec, raw, &mut encoded).map_err(err)?;
        // SAFETY: the bytes are exactly what the array's codec chain produces: the elements in
        // little-endian order (the `bytes` codec), then one zstd or blosc frame when configured.
        unsafe { self.array.store_encoded_chunk(idx, encoded.into()) }
            .map_err(|e| err(write_failure("cannot write", e)))
    }

    /// The fill value (what chunks never written hold).
    pub fn fill(&self) -> Scalar {
        self.fill
    }

    /// Whether storage object `idx` (a chunk, or a shard when sharded) was never written, so that
    /// it reads as the fill value ([`ZArray::fill`]) without decoding anything: one `stat`. `None`
    /// when that is not known this cheaply — on object storage (a request per chunk), and for
    /// arrays whose elements are not the stored fill value as it is (complex, float16 and
    /// delta-filtered arrays).
    pub fn chunk_missing(&self, idx: &[u64]) -> Option<bool> {
        if self.meta.complex || self.meta.half || self.delta {
            return None;
        }
        let fs = self.array.storage().fs()?.path_of(&self.array.chunk_key(idx));
        match std::fs::symlink_metadata(fs) {
            Ok(_) => Some(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(true),
            Err(_) => None,
        }
    }
}

/// The chunk shape dsk reads the array `m` at `path` by: the inner chunks of a local sharded
/// array whose shards dsk decodes itself (reading one inner chunk reads only its bytes, so a task
/// holds an inner chunk, not a whole shard), else the storage chunks (on object storage a shard is
/// fetched with one request).
pub fn read_chunks<'a>(m: &'a ArrayMeta, path: &Path) -> &'a [u64] {
    if !remote::is_url(path) && shard::ShardDirect::of(m).is_some() {
        &m.chunks
    } else {
        m.storage_chunks()
    }
}

/// Requests in flight for the chunks of one read on object storage.
const PREFETCH_REQUESTS: usize = 16;

/// `text` on one line (zarrs errors sometimes span several).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn join(v: &[u64]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// The bytes of a slice of (non-bool) elements, for encoding.
fn elem_bytes<T: Elem>(v: &[T]) -> &[u8] {
    // SAFETY: integer and float elements have no padding and are fully initialised; bools (one
    // byte, 0 or 1) are initialised too.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// The bytes of a slice of elements (for decompressing into it).
/// The spare capacity of a vector of numbers as zstd's output buffer: zstd writes raw bytes there,
/// and the vector's length then covers the whole elements it wrote. Never used for bools (see
/// `direct_codec`), so every byte pattern written is a valid value.
struct SpareBytes<'a, T>(&'a mut Vec<T>);

// SAFETY: `as_slice` covers only the initialised elements, `capacity` and `as_mut_ptr` describe the
// vector's allocation, and `filled_until` extends the length over whole elements that zstd has
// written (it reports n initialised bytes from the start of the buffer).
unsafe impl<T: Elem> zstd::zstd_safe::WriteBuf for SpareBytes<'_, T> {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: the first len elements are initialised numbers without padding
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u8, std::mem::size_of_val(&self.0[..])) }
    }
    fn capacity(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<T>()
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr() as *mut u8
    }
    unsafe fn filled_until(&mut self, n: usize) {
        assert!(!T::DTYPE.is_bool(), "bools must not be written as raw bytes");
        // SAFETY: the caller guarantees the first n bytes are written; whole elements only
        unsafe { self.0.set_len(n / std::mem::size_of::<T>()) }
    }
}

/// The fill value of the array `m` describes as (its real part, its imaginary part): the second is
/// 0 but for complex arrays, whose fill value is `[re, im]` (Zarr v2's `null` reads as 0, as in
/// zarr-python).
pub fn complex_fill_of(m: &ArrayMeta) -> std::result::Result<(Scalar, f64), String> {
    if !m.complex {
        return Ok((fill_of(m)?, 0.0));
    }
    match &m.fill_value {
        serde_json::Value::Null if m.zarr_format == 2 => Ok((Scalar::Float(0.0), 0.0)),
        serde_json::Value::Array(parts) if parts.len() == 2 => {
            let re = parse_fill(&parts[0], m.dtype, m.zarr_format)?;
            let im = parse_fill(&parts[1], m.dtype, m.zarr_format)?;
            Ok((Scalar::Float(re.as_f64()), im.as_f64()))
        }
        _ => Err(format!("a {} fill value is [real, imaginary]", m.dtype_name())),
    }
}

/// The fill value of the array `m` describes (see [`parse_fill`]); for a float16 array, the
/// float16 value (numbers rounded to float16, as NumPy stores them; `"0x3c00"` bit patterns).
pub fn fill_of(m: &ArrayMeta) -> std::result::Result<Scalar, String> {
    if !m.half {
        return parse_fill(&m.fill_value, m.dtype, m.zarr_format);
    }
    match &m.fill_value {
        serde_json::Value::String(t) if t.starts_with("0x") => {
            if t.len() != 6 {
                return Err(format!("{t:?} is not a float16 bit pattern"));
            }
            let bits = u16::from_str_radix(&t[2..], 16).map_err(|_| format!("{t:?} is not a hex bit pattern"))?;
            Ok(Scalar::Float(half::f16::from_bits(bits).to_f64()))
        }
        v => match parse_fill(v, DType::Float64, m.zarr_format)? {
            Scalar::Float(f) => Ok(Scalar::Float(crate::dtype::f16_nearest(f).to_f64())),
            Scalar::Int(i) => Ok(Scalar::Float(crate::dtype::f16_nearest(i as f64).to_f64())),
            other => Ok(other),
        },
    }
}

/// The fill value of an array's metadata as a scalar of `dtype`, exactly: numbers (integers must
/// fit the dtype), `true`/`false`, `"NaN"`, `"Infinity"`, `"-Infinity"`, and Zarr v3's hex bit
/// patterns (`"0x7fc00000"`) for floats. Zarr v2's `null` ("no fill value") reads as 0, as in
/// zarr-python. Anything else is an error: a guessed fill value would be a plausible wrong number.
pub fn parse_fill(v: &serde_json::Value, dtype: DType, zarr_format: u8) -> std::result::Result<Scalar, String> {
    use serde_json::Value;
    let float = dtype.is_float();
    let s = match v {
        Value::Null if zarr_format == 2 => {
            return Ok(if dtype.is_bool() { Scalar::Bool(false) } else { Scalar::Int(0) })
        }
        Value::Bool(b) if dtype.is_bool() => Scalar::Bool(*b),
        Value::Number(n) if dtype.is_bool() => match n.as_u64() {
            Some(0) => Scalar::Bool(false),
            Some(1) => Scalar::Bool(true),
            _ => return Err(format!("{n} is not a bool")),
        },
        Value::Number(n) if float => Scalar::Float(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?),
        Value::Number(n) => {
            let i: i128 = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i as i128,
                (None, Some(u)) => u as i128,
                _ => return Err(format!("{n} is not an integer")),
            };
            let (lo, hi) = crate::dtype::int_range(dtype);
            if i < lo || i > hi {
                return Err(format!("{i} does not fit {dtype}"));
            }
            match i64::try_from(i) {
                Ok(i) => Scalar::Int(i),
                Err(_) => Scalar::Uint(i as u64),
            }
        }
        Value::String(t) if float => match t.as_str() {
            "NaN" => Scalar::Float(f64::NAN),
            "Infinity" => Scalar::Float(f64::INFINITY),
            "-Infinity" => Scalar::Float(f64::NEG_INFINITY),
            hex if hex.starts_with("0x") => {
                let bits =
                    u64::from_str_radix(&hex[2..], 16).map_err(|_| format!("{hex:?} is not a hex bit pattern"))?;
                match (dtype, hex.len() - 2) {
                    (DType::Float32, 8) => Scalar::Float(f32::from_bits(bits as u32) as f64),
                    (DType::Float64, 16) => Scalar::Float(f64::from_bits(bits)),
                    _ => return Err(format!("{hex:?} is not a {dtype} bit pattern")),
                }
            }
            _ => return Err(format!("{t:?} is not a number")),
        },
        _ => return Err(format!("not a valid {dtype} fill value")),
    };
    Ok(s)
}

/// Copy a C-order block of shape `src_shape` into the top-left corner of a C-order block of shape
/// `dst_shape` (same rank, every extent ≥ the source's).
fn copy_into<T: Copy>(src: &[T], src_shape: &[u64], dst: &mut [T], dst_shape: &[u64]) {
    let nd = src_shape.len();
    if nd == 0 {
        dst[0] = src[0];
        return;
    }
    let region = Region::new(vec![0; nd], src_shape.to_vec());
    let dst_strides = crate::grid::strides(dst_shape);
    let row = src_shape[nd - 1] as usize;
    crate::grid::for_each_row(&region, |idx, off| {
        let d: u64 = idx.iter().zip(&dst_strides).map(|(i, s)| i * s).sum();
        dst[d as usize..d as usize + row].copy_from_slice(&src[off..off + row]);
    });
}

/// What a command that writes an array asks of it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CreateSpec {
    pub shape: Vec<u64>,
    /// Chunk shape; the inner chunk shape when `shard` is set.
    pub chunks: Vec<u64>,
    pub shard: Option<Vec<u64>>,
    pub dtype: DType,
    pub fill: Scalar,
    pub codec: CodecSpec,
    /// A name (or none) per axis.
    pub dimension_names: Option<Vec<Option<String>>>,
    /// 3, or 2 for an array written into a Zarr v2 group (see [`group`]).
    #[serde(default = "zarr_v3")]
    pub zarr_format: u8,
    /// User attributes carried over from an input (units, long_name, …).
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// Store as float16 (`dtype` is then float32, what the values are computed in).
    #[serde(default)]
    pub half: bool,
    /// Store as complex64/complex128 (`dtype` is then float32/float64, its parts' type): `shape`,
    /// `chunks` and `shard` are then the *view*'s, with a last axis of 2 for the parts (see
    /// [`ArrayMeta::complex`]), `fill` is the fill value's real part (`fill_im` its imaginary
    /// part) and `dimension_names` name the complex array's axes.
    #[serde(default)]
    pub complex: bool,
    #[serde(default, with = "crate::serial::exact_f64")]
    pub fill_im: f64,
}

impl CreateSpec {
    /// Make the spec of a real array of the parts' dtype the spec of the complex array (given as
    /// its view) with fill value `fill` (re, im): 0 when `None` (zarr-python's default), and in a
    /// Zarr v2 group, where xarray writes `null` (a fill value there is xarray's `_FillValue`).
    pub fn make_complex(&mut self, fill: Option<(f64, f64)>) {
        let (re, im) = fill.filter(|_| self.zarr_format != 2).unwrap_or((0.0, 0.0));
        self.fill = Scalar::Float(re);
        self.fill_im = im;
        self.attributes.remove("_FillValue");
        self.half = false;
        self.complex = true;
        self.shape.push(2);
        self.chunks.push(2);
        if let Some(s) = self.shard.as_mut() {
            s.push(2);
        }
    }

    /// The dtype's name as stored: `complex64` for a complex array's float32 parts.
    pub fn dtype_name(&self) -> &'static str {
        if self.complex {
            crate::dtype::complex_name(self.dtype)
        } else {
            self.dtype.name()
        }
    }

    /// The shape, chunks and shard of the array as stored (a complex array's, without the axis of
    /// its parts).
    pub fn stored(&self) -> (Vec<u64>, Vec<u64>, Option<Vec<u64>>) {
        let cut = |v: &[u64]| if self.complex { v[..v.len().saturating_sub(1)].to_vec() } else { v.to_vec() };
        (cut(&self.shape), cut(&self.chunks), self.shard.as_deref().map(cut))
    }
}

fn zarr_v3() -> u8 {
    3
}

/// Create a new Zarr v3 array in the (empty, existing) directory `dir` and write its metadata.
pub fn create(dir: &Path, spec: &CreateSpec) -> Result<ZArray> {
    if spec.zarr_format == 2 {
        return create_v2(dir, spec);
    }
    let (store, _dir_fd) =
        backend::Store::open(dir, None).map_err(|e| Error::output(dir, format!("cannot create the store: {e}")))?;
    let (shape, chunks, shard) = spec.stored();
    let storage_chunks = shard.clone().unwrap_or_else(|| chunks.clone());
    let fill_bytes = if spec.half {
        crate::dtype::f16_nearest(spec.fill.as_f64()).to_le_bytes().to_vec()
    } else {
        crate::with_dtype!(spec.dtype, T => {
            let mut b = Vec::new();
            T::encode_le(&[T::from_scalar(spec.fill)], &mut b);
            if spec.complex {
                T::encode_le(&[T::from_f64(spec.fill_im)], &mut b);
            }
            b
        })
    };
    let data_type = match (spec.half, spec.complex, spec.dtype) {
        (true, _, _) => zarrs::array::data_type::float16(),
        (_, true, DType::Float32) => zarrs::array::data_type::complex64(),
        (_, true, DType::Float64) => zarrs::array::data_type::complex128(),
        (_, true, d) => return Err(Error::Internal(format!("complex parts of {d}"))),
        _ => zarr_data_type(spec.dtype),
    };
    let mut builder = ArrayBuilder::new(shape, storage_chunks, data_type, zarrs::array::FillValue::new(fill_bytes));
    // blosc shuffles by the stored element's size: 2 bytes for float16 (as int16's)
    builder.bytes_to_bytes_codecs(spec.codec.build(if spec.half { DType::Int16 } else { spec.dtype })?);
    if shard.is_some() {
        builder.subchunk_shape(chunks);
    }
    if let Some(names) = &spec.dimension_names {
        builder.dimension_names(Some(names.clone()));
    }
    builder.attributes(spec.attributes.clone());
    let array = builder
        .build(Arc::new(store), "/")
        .map_err(|e| Error::output(dir, write_failure("cannot create the array", e)))?;
    if remote::is_url(dir) {
        return create_unpublished(dir, array);
    }
    array.store_metadata().map_err(|e| Error::output(dir, write_failure("cannot write zarr.json", e)))?;
    ZArray::open(dir)
}

/// Create a new Zarr v2 array (`.zarray`, `.zattrs`) in the (empty, existing) directory `dir`:
/// the format of the group it goes into. The fill value is written as xarray reads it (a v2
/// fill value is its `_FillValue`): `null` when it is zero (no value masked), else the value.
fn create_v2(dir: &Path, spec: &CreateSpec) -> Result<ZArray> {
    use serde_json::{json, Value};
    if remote::is_url(dir) {
        return Err(Error::output(
            dir,
            "Zarr v2 arrays are written to local paths only — write it locally and copy it",
        ));
    }
    if spec.shard.is_some() {
        return Err(Error::usage(
            "--shard",
            format!("{} goes into a Zarr v2 group, and v2 arrays have no sharding — drop --shard", dir.display()),
        ));
    }
    let compressor = match &spec.codec {
        CodecSpec::Auto => return Err(Error::Internal("the codec `auto` was not chosen before writing".into())),
        CodecSpec::None => Value::Null,
        CodecSpec::Zstd { level } => json!({"id": "zstd", "level": level}),
        CodecSpec::Gzip { level } => json!({"id": "gzip", "level": level}),
        CodecSpec::Blosc { cname, clevel, shuffle } => json!({
            "id": "blosc", "cname": cname, "clevel": clevel,
            "shuffle": shuffle.for_dtype(spec.dtype).number(), "blocksize": codec::BLOSC_BLOCKSIZE
        }),
    };
    let (shape, chunks, _) = spec.stored();
    let fill = match spec.fill {
        _ if spec.complex => {
            let part = |v: f64| match v {
                v if v.is_nan() => json!("NaN"),
                f64::INFINITY => json!("Infinity"),
                f64::NEG_INFINITY => json!("-Infinity"),
                v => json!(v),
            };
            let (re, im) = (spec.fill.as_f64(), spec.fill_im);
            if re == 0.0 && im == 0.0 && re.is_sign_positive() && im.is_sign_positive() {
                Value::Null // xarray's: no _FillValue
            } else {
                json!([part(re), part(im)])
            }
        }
        Scalar::Bool(false) | Scalar::Int(0) | Scalar::Uint(0) => Value::Null,
        Scalar::Float(f) if f == 0.0 && f.is_sign_positive() => Value::Null,
        Scalar::Float(f) if f.is_nan() => json!("NaN"),
        Scalar::Float(f) if f == f64::INFINITY => json!("Infinity"),
        Scalar::Float(f) if f == f64::NEG_INFINITY => json!("-Infinity"),
        Scalar::Float(f) => json!(f),
        Scalar::Bool(b) => json!(b),
        Scalar::Int(i) => json!(i),
        Scalar::Uint(u) => json!(u),
    };
    let zarray = json!({
        "zarr_format": 2,
        "shape": shape,
        "chunks": chunks,
        "dtype": match (spec.half, spec.complex) {
            (true, _) => "<f2",
            (_, true) if spec.dtype == DType::Float32 => "<c8",
            (_, true) => "<c16",
            _ => spec.dtype.typestr(),
        },
        "compressor": compressor,
        "fill_value": fill,
        "order": "C",
        "filters": null,
        "dimension_separator": ".",
    });
    let mut attrs = spec.attributes.clone();
    match &spec.dimension_names {
        Some(names) => {
            if let Some(all) = names.iter().cloned().collect::<Option<Vec<String>>>() {
                attrs.insert("_ARRAY_DIMENSIONS".into(), json!(all));
            }
        }
        // a 0-d variable has no axes to name (xarray writes the empty list)
        None if shape.is_empty() => {
            attrs.insert("_ARRAY_DIMENSIONS".into(), json!([]));
        }
        None => {}
    }
    for (name, doc) in [(".zarray", zarray), (".zattrs", Value::Object(attrs))] {
        let file = dir.join(name);
        let text = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Internal(format!("serialise {name}: {e}")))?;
        std::fs::write(&file, text).map_err(|e| Error::io(&file, "write", e))?;
    }
    ZArray::open(dir)
}

/// The new array `built` on object storage, its metadata held back until [`ZArray::publish`].
fn create_unpublished(dir: &Path, built: Array<backend::Store>) -> Result<ZArray> {
    let doc = serde_json::to_value(built.metadata())
        .map_err(|e| Error::Internal(format!("{}: serialise the array metadata: {e}", dir.display())))?;
    let meta = meta::from_document(&dir.join("zarr.json"), &doc)?;
    let (store, _) = backend::Store::open(dir, Some(limits::ReadLimits::of(&meta)))
        .map_err(|e| Error::output(dir, format!("cannot create the store: {e}")))?;
    let array = Array::new_with_metadata(Arc::new(store), "/", built.metadata().clone())
        .map_err(|e| Error::Internal(format!("{}: reopen the new array: {e}", dir.display())))?;
    let (fill, fill_im) = complex_fill_of(&meta)
        .map_err(|m| Error::Internal(format!("{}: the new array's fill value: {m}", dir.display())))?;
    let direct = direct_codec(&meta);
    let sharded = shard::ShardDirect::of(&meta).map(Box::new);
    Ok(ZArray {
        path: dir.to_path_buf(),
        array,
        view_shape: meta.view(&meta.shape),
        view_storage: meta.view(meta.storage_chunks()),
        meta,
        write_empty_chunks: false,
        fill,
        fill_im,
        direct,
        sharded,
        _dir: None,
        unpublished: true,
        delta: false,
    })
}

fn zarr_data_type(d: DType) -> zarrs::array::DataType {
    use zarrs::array::data_type as z;
    match d {
        DType::Bool => z::bool(),
        DType::Int8 => z::int8(),
        DType::Int16 => z::int16(),
        DType::Int32 => z::int32(),
        DType::Int64 => z::int64(),
        DType::Uint8 => z::uint8(),
        DType::Uint16 => z::uint16(),
        DType::Uint32 => z::uint32(),
        DType::Uint64 => z::uint64(),
        DType::Float32 => z::float32(),
        DType::Float64 => z::float64(),
    }
}
