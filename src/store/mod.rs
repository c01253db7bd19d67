//! The only module that talks to zarrs (and memmap2): opening and creating Zarr arrays, reading and
//! writing chunks and regions with bounds checks, staging outputs so that a failed run never leaves
//! something that looks complete, and the .npy / raw binary formats.
//!
//! Everything here wraps zarrs errors with the array path and the chunk involved, and validates
//! chunk indices and regions itself (zarrs does not: it would happily write chunk (9, 9) of a 3×2
//! grid).

pub mod codec;
pub mod fs;
pub mod meta;
pub mod npy;
pub mod output;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::array::{Array, ArrayBuilder, ArraySubset, CodecOptions};

use crate::dtype::{DType, Elem, Scalar};
use crate::error::{Error, Result};
use crate::grid::{Grid, Region};
pub use codec::CodecSpec;
pub use meta::ArrayMeta;

/// Process-wide zarrs settings: no `_zarrs` attribute in the metadata we write.
pub fn init() {
    zarrs::config::global_config_mut().set_include_zarrs_metadata(false);
}

/// Codec options for one task: `concurrency` threads may be used inside the codecs.
pub fn codec_options(concurrency: usize) -> CodecOptions {
    CodecOptions::default().with_concurrent_target(concurrency.max(1))
}

/// An open Zarr array (v2 or v3) on the local file system.
pub struct ZArray {
    path: PathBuf,
    array: Array<fs::Fs>,
    meta: ArrayMeta,
    write_empty_chunks: bool,
}

impl std::fmt::Debug for ZArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZArray").field("path", &self.path).field("meta", &self.meta).finish()
    }
}

fn zarrs_err(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::input(path, format!("{what}: {e}"))
}

impl ZArray {
    /// Open the array at `path`, checking its metadata first so that errors name the problem.
    pub fn open(path: &Path) -> Result<ZArray> {
        let meta = meta::read_meta(path)?;
        let store = fs::Fs::new(path).map_err(|e| zarrs_err(path, "cannot open the store", e))?;
        let array = Array::open(Arc::new(store), "/")
            .map_err(|e| zarrs_err(path, "cannot open the array (unsupported codec or metadata?)", e))?;
        Ok(ZArray { path: path.to_path_buf(), array, meta, write_empty_chunks: false })
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

    pub fn shape(&self) -> &[u64] {
        &self.meta.shape
    }

    pub fn dtype(&self) -> DType {
        self.meta.dtype
    }

    /// The grid of storage objects (shards when sharded, else chunks): the unit of a write task.
    pub fn grid(&self) -> Grid {
        Grid::new(self.meta.shape.clone(), self.meta.storage_chunks().to_vec())
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
        let subset = ArraySubset::new_with_ranges(&region.ranges());
        self.array.retrieve_array_subset_opt::<Vec<T>>(&subset, &codec_options(concurrency)).map_err(|e| Error::Chunk {
            path: self.path.clone(),
            chunk: self.grid().chunk_index_of(&region.start),
            msg: format!("cannot read: {e} — the chunk file may be damaged"),
        })
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
        let res = if region.shape == grid.chunks {
            self.array.store_chunk_opt(idx, data, &opts)
        } else {
            // Edge chunks are stored with the full chunk shape: pad with the fill value.
            let fill = self.fill_scalar().map(T::from_scalar).unwrap_or_default();
            let mut full = vec![fill; grid.chunk_len() as usize];
            let padded = Region::new(vec![0; grid.ndim()], grid.chunks.clone());
            copy_into(data, &region.shape, &mut full, &padded.shape);
            self.array.store_chunk_opt(idx, &full[..], &opts)
        };
        res.map_err(|e| Error::Chunk {
            path: self.path.clone(),
            chunk: idx.to_vec(),
            msg: format!("cannot write: {e}"),
        })
    }

    /// The fill value as a scalar, when it is a plain number or bool.
    pub fn fill_scalar(&self) -> Option<Scalar> {
        scalar_from_json(&self.meta.fill_value, self.meta.dtype)
    }
}

/// A JSON fill value (`0`, `1.5`, `"NaN"`, `"Infinity"`, `true`) as a scalar of `dtype`.
pub fn scalar_from_json(v: &serde_json::Value, dtype: DType) -> Option<Scalar> {
    use serde_json::Value;
    match v {
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) if dtype.is_float() => n.as_f64().map(Scalar::Float),
        Value::Number(n) => n.as_i64().map(Scalar::Int).or_else(|| n.as_u64().map(Scalar::Uint)),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(Scalar::Float(f64::NAN)),
            "Infinity" => Some(Scalar::Float(f64::INFINITY)),
            "-Infinity" => Some(Scalar::Float(f64::NEG_INFINITY)),
            _ => None,
        },
        _ => None,
    }
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

/// What `dsk create` (and later every command that writes an array) asks of a new array.
#[derive(Clone, Debug)]
pub struct CreateSpec {
    pub shape: Vec<u64>,
    /// Chunk shape; the inner chunk shape when `shard` is set.
    pub chunks: Vec<u64>,
    pub shard: Option<Vec<u64>>,
    pub dtype: DType,
    pub fill: Scalar,
    pub codec: CodecSpec,
    pub dimension_names: Option<Vec<String>>,
}

/// Create a new Zarr v3 array in the (empty, existing) directory `dir` and write its metadata.
pub fn create(dir: &Path, spec: &CreateSpec) -> Result<ZArray> {
    let store = fs::Fs::new(dir).map_err(|e| Error::output(dir, format!("cannot create the store: {e}")))?;
    let storage_chunks = spec.shard.clone().unwrap_or_else(|| spec.chunks.clone());
    let fill_bytes = crate::with_dtype!(spec.dtype, T => {
        let mut b = Vec::new();
        T::encode_le(&[T::from_scalar(spec.fill)], &mut b);
        b
    });
    let mut builder = ArrayBuilder::new(
        spec.shape.clone(),
        storage_chunks,
        zarr_data_type(spec.dtype),
        zarrs::array::FillValue::new(fill_bytes),
    );
    builder.bytes_to_bytes_codecs(spec.codec.build(spec.dtype)?);
    if spec.shard.is_some() {
        builder.subchunk_shape(spec.chunks.clone());
    }
    if let Some(names) = &spec.dimension_names {
        builder.dimension_names(Some(names.clone()));
    }
    let array =
        builder.build(Arc::new(store), "/").map_err(|e| Error::output(dir, format!("cannot create the array: {e}")))?;
    array.store_metadata().map_err(|e| Error::output(dir, format!("cannot write zarr.json: {e}")))?;
    ZArray::open(dir)
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
