//! NumPy `.npy` files and raw binary arrays: header parsing and writing, and [`RawSource`], a
//! memory-mapped array on disk (C or Fortran order, either byte order) from which any region can be
//! read. Standard input is first spooled to an anonymous temporary file so it can be mapped too.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap};

use crate::dtype::{DType, Elem};
use crate::error::{Error, Result};
use crate::grid::{for_each_row, Region};

/// What a .npy header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: DType,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// Offset of the first data byte.
    pub data_offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parse the header at the start of `bytes` (which must hold at least the whole header).
pub fn parse_header(bytes: &[u8], path: &Path) -> Result<NpyHeader> {
    let bad = |msg: &str| Error::input(path, format!("not a valid .npy file: {msg} — write it with numpy.save"));
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("the magic string \\x93NUMPY is missing"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(bad(&format!("format version {v} is unknown"))),
    };
    if bytes.len() < start + hlen {
        return Err(Error::input(
            path,
            "truncated: the file ends inside the .npy header — the file is incomplete; write it again",
        ));
    }
    let text = std::str::from_utf8(&bytes[start..start + hlen]).map_err(|_| bad("the header is not text"))?;
    let descr = dict_value(text, "descr").ok_or_else(|| bad("no 'descr' in the header"))?;
    let descr = descr.trim();
    if !(descr.starts_with('\'') || descr.starts_with('"')) {
        return Err(Error::input(
            path,
            format!("structured dtype {descr} is not supported — save a plain numeric array"),
        ));
    }
    let typestr = descr.trim_matches(|c| c == '\'' || c == '"');
    let (dtype, big_endian) = DType::parse_typestr(typestr).ok_or_else(|| {
        Error::input(
            path,
            format!("dtype {typestr} is not supported (supported: {}) — convert it with astype", DType::accepted()),
        )
    })?;
    let fortran_order = match dict_value(text, "fortran_order").map(str::trim) {
        Some("True") => true,
        Some("False") => false,
        _ => return Err(bad("'fortran_order' must be True or False")),
    };
    let shape_txt = dict_value(text, "shape").ok_or_else(|| bad("no 'shape' in the header"))?;
    let shape = crate::grid::parse_shape(shape_txt.trim()).map_err(|e| bad(&format!("shape {shape_txt}: {e}")))?;
    Ok(NpyHeader { dtype, big_endian, fortran_order, shape, data_offset: start + hlen })
}

/// The text of `key`'s value in a Python dict literal like `{'descr': '<f8', 'shape': (3, 4), }`.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let k1 = format!("'{key}'");
    let k2 = format!("\"{key}\"");
    let at = text.find(&k1).map(|i| i + k1.len()).or_else(|| text.find(&k2).map(|i| i + k2.len()))?;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    // the value ends at the first comma outside brackets and quotes
    let (mut depth, mut quote) = (0i32, None::<char>);
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, '}') if depth == 0 => return Some(&rest[..i]),
            (None, '}') => depth -= 1,
            (None, ',') if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// A .npy header for a little-endian C-order array (version 1.0, or 2.0 if the header is large).
pub fn header_bytes(descr: &str, shape: &[u64]) -> Vec<u8> {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    let (major, prefix) = if dict.len() + 11 < 65536 { (1u8, 10) } else { (2u8, 12) };
    // pad with spaces so that the data starts at a multiple of 64 bytes, ending with '\n'
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    let hlen = total - prefix;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(hlen as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(hlen as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// An array stored as raw bytes in a file (or spooled standard input), memory-mapped.
pub struct RawSource {
    path: PathBuf,
    map: Option<Mmap>,
    offset: usize,
    pub dtype: DType,
    pub big_endian: bool,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
}

impl RawSource {
    /// Open a .npy file, or standard input when `path` is `-`.
    pub fn open_npy(path: &Path) -> Result<RawSource> {
        let file = open_or_spool(path)?;
        let map = map_file(&file, path)?;
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let h = parse_header(bytes, path)?;
        RawSource::new(path, map, h.data_offset, h.dtype, h.big_endian, h.fortran_order, h.shape)
    }

    /// Open a headerless file of `shape` elements of `dtype` in C order.
    pub fn open_raw(path: &Path, dtype: DType, shape: Vec<u64>, big_endian: bool) -> Result<RawSource> {
        let file = open_or_spool(path)?;
        let map = map_file(&file, path)?;
        RawSource::new(path, map, 0, dtype, big_endian && dtype.size() > 1, false, shape)
    }

    fn new(
        path: &Path,
        map: Option<Mmap>,
        offset: usize,
        dtype: DType,
        big_endian: bool,
        fortran_order: bool,
        shape: Vec<u64>,
    ) -> Result<RawSource> {
        if let Some(m) = crate::grid::check_size(&shape, dtype.size() as u64) {
            return Err(Error::input(path, format!("{m} — the header (or --shape) is wrong")));
        }
        let have = map.as_ref().map_or(0, |m| m.len()).saturating_sub(offset) as u128;
        let need = shape.iter().map(|&s| s as u128).product::<u128>() * dtype.size() as u128;
        let shape_txt = format!("{shape:?}");
        if have < need {
            return Err(Error::input(
                path,
                format!("truncated: shape {shape_txt} of {dtype} needs {need} data bytes but the file holds {have} — the file is incomplete; write it again"),
            ));
        }
        if have > need && offset == 0 {
            return Err(Error::input(
                path,
                format!("holds {have} bytes but shape {shape_txt} of {dtype} needs {need} — check --shape and --dtype"),
            ));
        }
        if let Some(m) = &map {
            let _ = m.advise(Advice::Sequential);
        }
        Ok(RawSource { path: path.to_path_buf(), map, offset, dtype, big_endian, fortran_order, shape })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read `region` into `out` (C order). `T` must be the source's dtype.
    pub fn read_region<T: Elem>(&self, region: &Region, out: &mut [T]) -> Result<()> {
        if T::DTYPE != self.dtype {
            return Err(Error::Internal(format!("raw source of {} read as {}", self.dtype, T::DTYPE)));
        }
        let Some(map) = &self.map else { return Ok(()) };
        let data = &map[self.offset..];
        let size = self.dtype.size();
        let nd = self.shape.len();
        // element strides of the file layout
        let mut st = vec![1u64; nd];
        if self.fortran_order {
            for a in 1..nd {
                st[a] = st[a - 1] * self.shape[a - 1];
            }
        } else {
            st = crate::grid::strides(&self.shape);
        }
        let row = region.shape.last().copied().unwrap_or(1) as usize;
        let last_stride = st.last().copied().unwrap_or(1) as usize;
        let mut tmp = Vec::new();
        for_each_row(region, |idx, off| {
            let base: u64 = idx.iter().zip(&st).map(|(i, s)| i * s).sum();
            let base = base as usize * size;
            let dst = &mut out[off..off + row];
            if last_stride == 1 {
                T::decode_bytes(&data[base..base + row * size], self.big_endian, dst);
            } else {
                tmp.clear();
                for k in 0..row {
                    let b = base + k * last_stride * size;
                    tmp.extend_from_slice(&data[b..b + size]);
                }
                T::decode_bytes(&tmp, self.big_endian, dst);
            }
        });
        Ok(())
    }

    /// Tell the kernel the pages backing elements `[lo, hi)` (file order) will not be needed again,
    /// so that reading a file larger than RAM does not grow the resident set.
    pub fn release(&self, lo_elem: u64, hi_elem: u64) {
        if let Some(map) = &self.map {
            let size = self.dtype.size() as u64;
            let page = 4096u64;
            let lo = (self.offset as u64 + lo_elem * size).div_ceil(page) * page;
            let hi = ((self.offset as u64 + hi_elem * size) / page * page).min(map.len() as u64);
            if hi > lo {
                // SAFETY: the mapping is private and read-only; dropping its pages only means they
                // are read again from the file if touched.
                let _ = unsafe {
                    map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo as usize, (hi - lo) as usize)
                };
            }
        }
    }
}

fn open_or_spool(path: &Path) -> Result<File> {
    if path.as_os_str() == "-" {
        let mut tmp = tempfile::tempfile()
            .map_err(|e| Error::io(std::env::temp_dir(), "create a temporary file for standard input", e))?;
        let mut stdin = io::stdin().lock();
        io::copy(&mut stdin, &mut tmp).map_err(|e| Error::io("<stdin>", "read", e))?;
        tmp.flush().map_err(|e| Error::io("<stdin>", "spool", e))?;
        return Ok(tmp);
    }
    if path.is_dir() {
        return Err(Error::input(path, "is a directory — pass a .npy (or raw) file"));
    }
    File::open(path).map_err(|e| Error::io(path, "open", e))
}

fn map_file(file: &File, path: &Path) -> Result<Option<Mmap>> {
    let len = file.metadata().map_err(|e| Error::io(path, "stat", e))?.len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: the file is opened read-only; if another process truncates it while we read, the
    // process may get SIGBUS — the same contract as every memory-mapped reader (NumPy's memmap too).
    let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, "memory-map", e))?;
    Ok(Some(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = header_bytes(DType::Float64.typestr(), &[3, 4]);
        assert_eq!(h.len() % 64, 0);
        let p = parse_header(&h, Path::new("x.npy")).ok();
        assert_eq!(
            p,
            Some(NpyHeader {
                dtype: DType::Float64,
                big_endian: false,
                fortran_order: false,
                shape: vec![3, 4],
                data_offset: h.len()
            })
        );
        let h1 = header_bytes(DType::Int16.typestr(), &[5]);
        assert!(std::str::from_utf8(&h1[10..]).unwrap_or("").contains("(5,)"));
        let h0 = header_bytes(DType::Bool.typestr(), &[]);
        assert_eq!(parse_header(&h0, Path::new("x")).map(|h| h.shape).ok(), Some(vec![]));
    }

    #[test]
    fn numpy_written_headers_parse() {
        let text = "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3), }";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(text.len() as u16).to_le_bytes());
        b.extend_from_slice(text.as_bytes());
        let h = parse_header(&b, Path::new("x.npy")).ok();
        assert_eq!(
            h.map(|h| (h.dtype, h.big_endian, h.fortran_order, h.shape)),
            Some((DType::Int32, true, true, vec![2, 3]))
        );
    }
}
