//! `dsk rechunk IN OUT --chunks C [--shard S] [--codec C]`: the same values in another chunk grid,
//! bit for bit, under the memory bound (the fill value is kept). The plan — one pass over bands of
//! source chunks, or two passes through an intermediate — is made by [`crate::plan::rechunk`].
//! Without `--chunks`, `--codec` and `--shard` re-encode the array with its own chunks.

use std::path::PathBuf;

use clap::Args;

use super::compute::{execute, plan_options, summarize};
use super::RunArgs;
use crate::error::{Error, Result};
use crate::plan::{rechunk, Input};
use crate::store::{CodecSpec, CreateSpec};

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk rechunk big.zarr tall.zarr --chunks 50000,10 --memory 512MiB
  dsk rechunk big.zarr big_sharded.zarr --chunks 1000,1000 --shard 10000,4000
  dsk rechunk big.zarr big_blosc.zarr --codec blosc:zstd:5   # re-encode, same chunks
  dsk rechunk big.zarr tall.zarr --chunks 50000,10 --explain")]
pub struct RechunkArgs {
    /// The input array.
    pub input: PathBuf,
    /// The output array.
    pub out: PathBuf,
    /// Target chunks (the inner chunks when --shard is given); default: the input's.
    #[arg(long)]
    pub chunks: Option<String>,
    /// Target shard shape (sharding codec).
    #[arg(long)]
    pub shard: Option<String>,
    /// Target compression (default: the input's).
    #[arg(long)]
    pub codec: Option<String>,
    /// Names of the output's axes, e.g. time,lat,lon (default: the input's).
    #[arg(long, value_name = "NAMES")]
    pub dimension_names: Option<String>,
    /// Replace OUT if it is an existing Zarr array.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub fn run(a: &RechunkArgs, run: &RunArgs) -> Result<()> {
    if a.chunks.is_none() && a.shard.is_none() && a.codec.is_none() && a.dimension_names.is_none() {
        return Err(Error::usage(
            "--chunks",
            "nothing to change: give --chunks, --shard, --codec or --dimension-names",
        ));
    }
    let m = super::open_input(&a.input)?;
    let codec = match &a.codec {
        Some(t) => CodecSpec::parse(t)?,
        None => CodecSpec::from_codecs(&m.codecs).unwrap_or(CodecSpec::Auto),
    };
    let (chunks, shard, _) = super::chunking(
        a.chunks.as_deref(),
        a.shard.as_deref(),
        &m.shape,
        m.dtype,
        Some((m.chunks.clone(), if a.chunks.is_none() { m.shards.clone() } else { None })),
    )?;
    let names = match &a.dimension_names {
        Some(t) => Some(super::compute::dimension_names_arg(t, m.shape.len())?),
        None => m.dimension_names.clone(),
    };
    // a complex array keeps its values, not its fill value: dsk writes complex arrays with 0
    let fill = match m.complex {
        true => crate::dtype::Scalar::Float(0.0),
        false => crate::store::fill_of(&m).map_err(|e| {
            Error::input(&a.input, format!("fill value {}: {e} — fix the array's metadata", m.fill_value))
        })?,
    };
    let mut spec = CreateSpec {
        shape: m.shape.clone(),
        chunks,
        shard,
        dtype: m.dtype,
        fill,
        codec,
        dimension_names: names,
        zarr_format: crate::store::group::format_for(&a.out),
        // the same values: every attribute keeps its meaning
        attributes: m.attributes.clone(),
        half: m.half,
        complex: false,
        fill_im: 0.0,
    };
    super::compute::fit_destination(&mut spec, &a.out)?;
    if m.complex {
        let fill = crate::store::complex_fill_of(&m).ok().map(|(re, im)| (re.as_f64(), im));
        spec.make_complex(fill);
    }
    let input = Input {
        name: "x".into(),
        path: a.input.clone(),
        shape: m.view(&m.shape),
        dtype: m.dtype,
        chunks: m.view(crate::store::read_chunks(&m, &a.input)),
        complex: m.complex,
    };
    let pplan = rechunk::rechunk(input, &a.out, spec, &plan_options(run)?)?;
    if let Some(report) = execute(&pplan, run, a.overwrite)? {
        summarize(&pplan, &report, run);
    }
    Ok(())
}
