//! Reading array metadata (Zarr v3 `zarr.json`, Zarr v2 `.zarray` + `.zattrs`) into [`ArrayMeta`],
//! with errors that say which file is wrong and how. This is what `dsk info` shows, and the check
//! every command runs before handing a path to zarrs.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::dtype::DType;
use crate::error::{Error, Result};

/// What an array's metadata says, format-independent.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ArrayMeta {
    pub zarr_format: u8,
    pub shape: Vec<u64>,
    /// The chunk shape (the inner chunk shape when the array is sharded, as zarr-python reports).
    pub chunks: Vec<u64>,
    /// The shard shape, when the array uses the sharding codec.
    pub shards: Option<Vec<u64>>,
    pub dtype: DType,
    /// The stored byte order (`big` only for Zarr v2 `>` dtypes or a v3 `bytes` codec set so).
    pub big_endian: bool,
    /// The fill value as written in the metadata.
    pub fill_value: Value,
    /// Codecs as `{name, configuration}` objects (for v2: filters, then the compressor).
    pub codecs: Vec<Value>,
    pub dimension_names: Option<Vec<Option<String>>>,
    /// Memory order of chunks: `C`, or `F` for Zarr v2 arrays written in Fortran order.
    pub order: char,
    /// The user attributes (v3 `attributes`, v2 `.zattrs` without `_ARRAY_DIMENSIONS`).
    #[serde(skip)]
    pub attributes: serde_json::Map<String, Value>,
    /// Stored as IEEE float16: `dtype` is then float32, the type dsk computes in (as NumPy's
    /// float16 loops do); values are widened when read and rounded when written.
    pub half: bool,
    /// Stored as complex64/complex128: `dtype` is then the type of its parts (float32/float64),
    /// and inside dsk the array is its *view* — the parts side by side on a last axis of length 2
    /// (`view_shape`), which is how the elements lie in memory. `shape`, `chunks` and
    /// `dimension_names` stay those of the complex array.
    #[serde(default)]
    pub complex: bool,
}

impl ArrayMeta {
    /// The stored dtype's name: `float16` for a half array, `complex64` for a complex one, else
    /// the dtype's.
    pub fn dtype_name(&self) -> &'static str {
        if self.half {
            "float16"
        } else if self.complex {
            crate::dtype::complex_name(self.dtype)
        } else {
            self.dtype.name()
        }
    }

    /// Bytes per stored element.
    pub fn itemsize(&self) -> u64 {
        if self.half {
            2
        } else if self.complex {
            2 * self.dtype.size() as u64
        } else {
            self.dtype.size() as u64
        }
    }

    /// `dims` with the axis of a complex array's parts appended (`[..., 2]`): its shape or chunks as
    /// dsk computes with them.
    pub fn view(&self, dims: &[u64]) -> Vec<u64> {
        let mut v = dims.to_vec();
        if self.complex {
            v.push(2);
        }
        v
    }

    /// The shape of the unit that is read and written as one object: the shard if sharded.
    pub fn storage_chunks(&self) -> &[u64] {
        self.shards.as_deref().unwrap_or(&self.chunks)
    }
}

/// True if `path` is a directory holding Zarr array metadata (v3 `zarr.json` with
/// `node_type: array`, or v2 `.zarray`).
pub fn is_zarr_array(path: &Path) -> bool {
    if let Some(url) = super::remote::parse(path) {
        let Ok(r) = url.and_then(|u| super::remote::Remote::new(&u, None)) else { return false };
        return matches!(r.read_bytes(".zarray"), Ok(Some(_)))
            || matches!(r.read_bytes("zarr.json"), Ok(Some(b)) if is_array_doc(&b));
    }
    if !path.is_dir() {
        return false;
    }
    if path.join(".zarray").is_file() {
        return true;
    }
    match fs::read(path.join("zarr.json")) {
        Ok(bytes) => is_array_doc(&bytes),
        Err(_) => false,
    }
}

fn is_array_doc(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Value>(bytes)
        .map(|v| v.get("node_type").and_then(Value::as_str) == Some("array"))
        .unwrap_or(false)
}

/// Read and validate the metadata of the array at `path`.
pub fn read_meta(path: &Path) -> Result<ArrayMeta> {
    if let Some(url) = super::remote::parse(path) {
        // a URL dsk cannot use is a bad argument (exit 2), like a bad option value
        return read_meta_remote(path, url.map_err(|m| Error::usage(path.display().to_string(), m))?);
    }
    if !path.exists() {
        return Err(Error::input(
            path,
            "does not exist — check the path (a Zarr array is a directory with zarr.json or .zarray)",
        ));
    }
    if !path.is_dir() {
        return Err(Error::input(path, "is a file, not a Zarr array — pass the array's directory"));
    }
    let v3 = path.join("zarr.json");
    let v2 = path.join(".zarray");
    if v3.is_file() {
        checked(&v3, parse_v3(&v3, &load_json(&v3)?)?)
    } else if v2.is_file() {
        let attrs_path = path.join(".zattrs");
        let attrs = if attrs_path.is_file() { Some(load_json(&attrs_path)?) } else { None };
        checked(&v2, parse_v2(&v2, &load_json(&v2)?, attrs.as_ref())?)
    } else if path.join(".zgroup").is_file() {
        Err(group_given(path))
    } else {
        Err(Error::input(
            path,
            "is not a Zarr array (no zarr.json or .zarray inside) — pass the path of a Zarr array directory",
        ))
    }
}

/// [`read_meta`] of an array on object storage: the same documents, fetched.
fn read_meta_remote(path: &Path, url: super::remote::Url) -> Result<ArrayMeta> {
    let r = super::remote::Remote::new(&url, None).map_err(|m| super::remote_output::input_error_at(path, m))?;
    let get = |name: &str| -> Result<Option<(PathBuf, Value)>> {
        let file = url.join(name).to_path();
        match r.read_bytes(name).map_err(|m| super::remote_output::input_error_at(path, m))? {
            // a web server answering a missing file with a page (a "soft 404"): not there
            Some(b) if url.scheme != super::remote::Scheme::S3 && b.trim_ascii_start().starts_with(b"<") => Ok(None),
            Some(b) => Ok(Some((file.clone(), parse_json(&file, &b)?))),
            None => Ok(None),
        }
    };
    if let Some((file, doc)) = get("zarr.json")? {
        return checked(&file, parse_v3(&file, &doc)?);
    }
    if let Some((file, doc)) = get(".zarray")? {
        let attrs = get(".zattrs")?.map(|(_, a)| a);
        return checked(&file, parse_v2(&file, &doc, attrs.as_ref())?);
    }
    if get(".zgroup")?.is_some() {
        return Err(Error::input(path, "is a Zarr v2 group, not an array — pass the path of an array inside it"));
    }
    // nothing there: say whether the bucket exists and the prefix holds something else
    if url.scheme == super::remote::Scheme::S3 {
        let keys = r.list_sizes("").map_err(|m| super::remote_output::input_error_at(path, m))?;
        if !keys.is_empty() {
            return Err(Error::input(
                path,
                "is not a Zarr array (no zarr.json or .zarray under it) — pass the URL of a Zarr array",
            ));
        }
    }
    Err(Error::input(
        path,
        "does not exist — check the URL (a Zarr array is a prefix with zarr.json or .zarray under it)",
    ))
}

/// The metadata of a Zarr v3 array from its `zarr.json` document `doc` (`file` names it in errors).
pub fn from_document(file: &Path, doc: &Value) -> Result<ArrayMeta> {
    checked(file, parse_v3(file, doc)?)
}

/// Metadata checked beyond what parsing checks: sizes, chunk and shard shapes, fill value.
fn checked(file: &Path, m: ArrayMeta) -> Result<ArrayMeta> {
    {
        let item = m.dtype.size() as u64;
        for (what, s) in
            [("shape", Some(&m.shape)), ("chunk shape", Some(&m.chunks)), ("shard shape", m.shards.as_ref())]
        {
            if let Some(msg) = s.and_then(|s| crate::grid::check_size(s, item)) {
                return Err(bad(file, format!("its {what}: {msg}")));
            }
        }
        if m.chunks.len() != m.shape.len() || m.chunks.contains(&0) {
            return Err(bad(file, "the chunk shape must have one extent ≥ 1 per axis of the shape"));
        }
        if let Some(shard) = &m.shards {
            if shard.len() != m.chunks.len() || shard.iter().zip(&m.chunks).any(|(s, c)| s % c != 0) {
                return Err(bad(
                    file,
                    format!(
                        "the shard shape {} is not a whole number of inner chunks {}",
                        crate::grid::tuple(shard),
                        crate::grid::tuple(&m.chunks)
                    ),
                ));
            }
            // zarrs bounds a shard's encoded size by (inner chunks) × (shard bytes) in u64
            let inner: u64 = shard.iter().zip(&m.chunks).map(|(s, c)| s / c).product();
            let fits = crate::grid::checked_nbytes(shard, item)
                .and_then(|b| b.checked_mul(inner))
                .and_then(|b| b.checked_mul(4))
                .is_some();
            if !fits {
                return Err(Error::input(
                    file,
                    format!(
                        "shards of shape {} holding {inner} inner chunks are too large to read — rewrite the array with smaller shards",
                        crate::grid::tuple(shard)
                    ),
                ));
            }
        }
        if let Err(e) = super::complex_fill_of(&m) {
            return Err(bad(file, format!("fill value {}: {e}", m.fill_value)));
        }
        if let Some(names) = &m.dimension_names {
            if names.len() != m.shape.len() {
                return Err(bad(file, format!("{} dimension names for {} axes", names.len(), m.shape.len())));
            }
        }
        Ok(m)
    }
}

fn load_json(file: &Path) -> Result<Value> {
    use std::io::Read;
    let max = super::limits::MAX_METADATA_BYTES;
    let f = fs::File::open(file).map_err(|e| Error::io(file, "read", e))?;
    let mut bytes = vec![];
    f.take(max + 1).read_to_end(&mut bytes).map_err(|e| Error::io(file, "read", e))?;
    if bytes.len() as u64 > max {
        return Err(Error::input(
            file,
            format!("is larger than {} — not array metadata; restore or rewrite it", crate::error::human(max)),
        ));
    }
    parse_json(file, &bytes)
}

fn parse_json(file: &Path, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::input(file, format!("malformed JSON ({e}) — the array metadata is damaged; restore or rewrite it"))
    })
}

fn bad(file: &Path, what: impl std::fmt::Display) -> Error {
    Error::input(
        file,
        format!("invalid array metadata: {what} — the metadata does not follow the Zarr spec; rewrite it"),
    )
}

fn u64_list(file: &Path, v: Option<&Value>, key: &str) -> Result<Vec<u64>> {
    let arr = v.and_then(Value::as_array).ok_or_else(|| bad(file, format!("'{key}' must be a list of integers")))?;
    arr.iter()
        .map(|x| x.as_u64().ok_or_else(|| bad(file, format!("'{key}' must hold non-negative integers, found {x}"))))
        .collect()
}

fn unsupported_dtype(file: &Path, name: &str) -> Error {
    Error::input(
        file,
        format!(
            "data type {} is not supported by dsk (supported: {}) — convert the array first",
            printable(name),
            DType::accepted()
        ),
    )
}

/// Dimension names as the spec has them: absent or `null` (no names), else a list with one string
/// or `null` per axis. Anything else is an error naming `file`: a name silently dropped would
/// label the wrong axis later.
fn dimension_names(file: &Path, v: Option<&Value>, key: &str) -> Result<Option<Vec<Option<String>>>> {
    let names = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(bad(file, format!("'{key}' must be a list of strings or nulls, found {}", short(other))))
        }
    };
    names
        .iter()
        .map(|n| match n {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Null => Ok(None),
            other => Err(bad(file, format!("'{key}' must hold strings or nulls, found {}", short(other)))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// A JSON value in an error message: compact, at most 60 characters.
fn short(v: &Value) -> String {
    let t = v.to_string();
    match t.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t,
    }
}

/// `text` safe to print on a terminal and on one line: control characters (newlines, escape
/// sequences) and the bidirectional overrides that reorder what is shown are written as `\u{…}`;
/// everything else, non-ASCII letters included, is kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A group where an array is expected: name the arrays it holds.
fn group_given(path: &Path) -> Error {
    let arrays: Vec<String> = if super::remote::is_url(path) {
        vec![]
    } else {
        super::group::members(path, true)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.array.is_some())
            .map(|m| printable(&m.name))
            .collect()
    };
    let msg = match arrays.as_slice() {
        [] => "is a Zarr group, not an array — pass the path of an array inside it".to_string(),
        [one, ..] => {
            let shown: Vec<&str> = arrays.iter().take(8).map(String::as_str).collect();
            let more = if arrays.len() > 8 { format!(" and {} more", arrays.len() - 8) } else { String::new() };
            format!(
                "is a Zarr group holding {}{more}, not an array — name one, e.g. {}/{one} (dsk ls lists them)",
                shown.join(", "),
                path.display()
            )
        }
    };
    Error::input(path, msg)
}

fn parse_v3(file: &Path, j: &Value) -> Result<ArrayMeta> {
    if j.get("zarr_format").and_then(Value::as_u64) != Some(3) {
        return Err(bad(file, "'zarr_format' must be 3"));
    }
    match j.get("node_type").and_then(Value::as_str) {
        Some("array") => {}
        Some("group") => return Err(group_given(file.parent().unwrap_or(file))),
        _ => return Err(bad(file, "'node_type' must be \"array\"")),
    }
    let shape = u64_list(file, j.get("shape"), "shape")?;
    let grid = j.get("chunk_grid").ok_or_else(|| bad(file, "'chunk_grid' is missing"))?;
    let grid_name = grid.get("name").and_then(Value::as_str).unwrap_or("");
    if grid_name != "regular" {
        return Err(Error::input(
            file,
            format!("chunk grid {grid_name:?} is not supported (only \"regular\") — rechunk the array with zarr-python first"),
        ));
    }
    let grid_chunks =
        u64_list(file, grid.pointer("/configuration/chunk_shape"), "chunk_grid.configuration.chunk_shape")?;
    if grid_chunks.len() != shape.len() || grid_chunks.contains(&0) {
        return Err(bad(file, "chunk_shape must have one positive extent per axis of shape"));
    }
    let dt_name = match j.get("data_type") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.get("name").and_then(Value::as_str).unwrap_or("?").to_string(),
        None => return Err(bad(file, "'data_type' is missing")),
    };
    let half = dt_name == "float16";
    let complex = crate::dtype::complex_part(&dt_name).filter(|_| dt_name.starts_with("complex"));
    let dtype = if half {
        DType::Float32
    } else if let Some(part) = complex {
        part
    } else {
        DType::parse(&dt_name).filter(|d| d.name() == dt_name).ok_or_else(|| unsupported_dtype(file, &dt_name))?
    };
    let codecs: Vec<Value> = j.get("codecs").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut shards = None;
    let mut chunks = grid_chunks.clone();
    let mut big_endian = false;
    for c in &codecs {
        match c.get("name").and_then(Value::as_str) {
            Some("sharding_indexed") => {
                let inner = u64_list(file, c.pointer("/configuration/chunk_shape"), "sharding chunk_shape")?;
                if inner.len() != shape.len() || inner.contains(&0) {
                    return Err(bad(file, "sharding chunk_shape must have one positive extent per axis"));
                }
                shards = Some(grid_chunks.clone());
                chunks = inner;
                if let Some(inner_codecs) = c.pointer("/configuration/codecs").and_then(Value::as_array) {
                    big_endian = inner_codecs.iter().any(is_big_endian_bytes);
                }
            }
            Some("bytes") => big_endian = is_big_endian_bytes(c),
            _ => {}
        }
    }
    let dimension_names = dimension_names(file, j.get("dimension_names"), "dimension_names")?;
    Ok(ArrayMeta {
        zarr_format: 3,
        shape,
        chunks,
        shards,
        dtype,
        big_endian,
        fill_value: j.get("fill_value").cloned().unwrap_or(Value::Null),
        codecs,
        dimension_names,
        order: 'C',
        half,
        complex: complex.is_some(),
        attributes: j.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default(),
    })
}

fn is_big_endian_bytes(c: &Value) -> bool {
    c.get("name").and_then(Value::as_str) == Some("bytes")
        && c.pointer("/configuration/endian").and_then(Value::as_str) == Some("big")
}

fn parse_v2(file: &Path, j: &Value, attrs: Option<&Value>) -> Result<ArrayMeta> {
    if j.get("zarr_format").and_then(Value::as_u64) != Some(2) {
        return Err(bad(file, "'zarr_format' must be 2"));
    }
    let shape = u64_list(file, j.get("shape"), "shape")?;
    let chunks = u64_list(file, j.get("chunks"), "chunks")?;
    if chunks.len() != shape.len() || chunks.contains(&0) {
        return Err(bad(file, "'chunks' must have one positive extent per axis of 'shape'"));
    }
    let typestr = match j.get("dtype") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(unsupported_dtype(file, &other.to_string())),
        None => return Err(bad(file, "'dtype' is missing")),
    };
    let half = matches!(typestr.as_str(), "<f2" | ">f2" | "=f2" | "|f2");
    let complex = match typestr.get(1..) {
        Some("c8") => Some(DType::Float32),
        Some("c16") => Some(DType::Float64),
        _ => None,
    }
    .filter(|_| typestr.starts_with(['<', '>', '=', '|']));
    let big = typestr.starts_with('>') || (typestr.starts_with('=') && cfg!(target_endian = "big"));
    let (dtype, big_endian) = if half {
        (DType::Float32, big)
    } else if let Some(part) = complex {
        (part, big)
    } else {
        DType::parse_typestr(&typestr).ok_or_else(|| unsupported_dtype(file, &typestr))?
    };
    let order = match j.get("order").and_then(Value::as_str) {
        Some("F") => 'F',
        Some("C") | None => 'C',
        Some(o) => return Err(bad(file, format!("'order' must be \"C\" or \"F\", found {o:?}"))),
    };
    let mut codecs = vec![];
    if let Some(filters) = j.get("filters").and_then(Value::as_array) {
        codecs.extend(filters.iter().map(numcodecs_to_codec));
    }
    if let Some(comp) = j.get("compressor").filter(|c| !c.is_null()) {
        codecs.push(numcodecs_to_codec(comp));
    }
    let attrs_file = file.with_file_name(".zattrs");
    let dimension_names =
        dimension_names(&attrs_file, attrs.and_then(|a| a.get("_ARRAY_DIMENSIONS")), "_ARRAY_DIMENSIONS")?;
    Ok(ArrayMeta {
        zarr_format: 2,
        shape,
        chunks,
        shards: None,
        dtype,
        big_endian,
        fill_value: j.get("fill_value").cloned().unwrap_or(Value::Null),
        codecs,
        dimension_names,
        order,
        half,
        complex: complex.is_some(),
        attributes: attrs
            .and_then(Value::as_object)
            .map(|a| a.iter().filter(|(k, _)| *k != "_ARRAY_DIMENSIONS").map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

/// A numcodecs config `{"id": "blosc", "cname": …}` as a v3-style `{name, configuration}`.
fn numcodecs_to_codec(c: &Value) -> Value {
    let mut conf = c.as_object().cloned().unwrap_or_default();
    let id = conf.remove("id").and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "?".into());
    json!({"name": id, "configuration": conf})
}

/// Total bytes of the files under `path` (chunks and metadata), as `du --apparent-size` counts them;
/// `None` for an array on http(s)://, which cannot be listed.
pub fn stored_bytes(path: &Path) -> Result<Option<u64>> {
    if let Some(url) = super::remote::parse(path) {
        let url = url.map_err(|m| super::remote_output::input_error_at(path, m))?;
        if url.scheme != super::remote::Scheme::S3 {
            return Ok(None);
        }
        let r = super::remote::Remote::new(&url, None).map_err(|m| super::remote_output::input_error_at(path, m))?;
        let sizes = r.list_sizes("").map_err(|m| super::remote_output::input_error_at(path, m))?;
        return Ok(Some(sizes.iter().map(|(_, n)| n).sum()));
    }
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir).map_err(|e| Error::io(&dir, "list", e))?;
        for entry in rd {
            let entry = entry.map_err(|e| Error::io(&dir, "list", e))?;
            let ft = entry.file_type().map_err(|e| Error::io(entry.path(), "stat", e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                total += entry.metadata().map_err(|e| Error::io(entry.path(), "stat", e))?.len();
            }
        }
    }
    Ok(Some(total))
}
