//! `dsk transform IN OUT --expr 'cos(x)**2'`: compute an expression of an array into a new array.

use std::path::PathBuf;

use clap::Args;

use super::compute::{build_plan, compute, parse_named, Dest, OutputOpts};
use super::RunArgs;
use crate::error::Result;
use crate::store::CodecSpec;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk transform big.zarr cos2.zarr --expr 'cos(x)**2'
  dsk transform x.zarr flipped.zarr --expr 'x[::-1, ::-1]'
  dsk transform x.zarr anomaly.zarr --expr 'x - clim' --in clim=climatology.zarr --dtype float32
  dsk transform x.zarr y.zarr --expr 'where(x > 0, sqrt(x), 0)' --scheduler processes")]
pub struct TransformArgs {
    /// The input array, named x in the expression.
    pub input: PathBuf,
    /// The output: a new Zarr v3 array, or a .npy / .csv file.
    pub out: PathBuf,
    /// The expression (see docs/expressions.md), e.g. 'cos(x)**2'.
    #[arg(long, allow_hyphen_values = true)]
    pub expr: String,
    /// More inputs, as NAME=PATH (repeatable).
    #[arg(long = "in", value_name = "NAME=PATH")]
    pub more: Vec<std::ffi::OsString>,
    #[command(flatten)]
    pub write: super::OutputArgs,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub fn run(a: &TransformArgs, run: &RunArgs) -> Result<()> {
    let mut named = vec![("x".to_string(), a.input.clone())];
    named.extend(parse_named(&a.more, "--in")?);
    let (plan, metas) = build_plan(&a.expr, "--expr", &named)?;
    let first = &metas[0];
    let same_shape = plan.result_shape() == first.shape;
    let o = OutputOpts {
        default_chunks: if same_shape { Some((first.chunks.clone(), first.shards.clone())) } else { None },
        default_codec: CodecSpec::from_codecs(&first.codecs),
        ..OutputOpts::new(&a.write, &plan, &metas)
    };
    let dest = Dest::of(Some(&a.out), None)?;
    compute(plan, dest, o, run, "transform")
}
