//! `dsk graph EXPR [NAME=PATH …] [-o FILE] [--level tasks|stages]`: the plan of `dsk eval` drawn
//! without running it ([`crate::report::graph`]).

use std::path::{Path, PathBuf};

use clap::Args;

use super::compute::{build_plan, parse_named, plan_expression, Dest, OutputOpts};
use super::RunArgs;
use crate::error::{Error, Result};
use crate::report::graph::Level;

#[derive(Debug, Args)]
#[command(after_help = "The plan drawn is the one `dsk eval EXPR NAME=PATH …` runs with the same options (--memory,
--workers, --scheduler, --split-every): a 0-d result printed, an array result written to a Zarr
array (named result.zarr in the picture; nothing is created). Shapes: input chunks are blue
boxes, output chunks green boxes, work-dir chunks (spilled partials, intermediates, scan totals)
orange cylinders, tasks ellipses labelled with their fused operations, the merge levels of a
reduction dashed ellipses; at the stages level a stage is a rounded box with its task count, chunk
shape, projected memory and bytes read and written. Every other computing command draws its own
plan with --graph FILE (and --graph-level).

Examples:
  dsk create random small.zarr --shape 400,400 --chunks 100,100
  dsk graph '(x * x[::-1, ::-1]).mean()' x=small.zarr -o graph.svg
  dsk graph 'ones((200000, 4000), chunks=(1000, 1000)).sum(axis=1)' -o big.svg
  dsk graph 'cumsum(x, axis=0)' x=small.zarr --level tasks -o scan.png
  dsk graph 'x.sum(axis=0)' x=small.zarr -o sum.dot
  dsk rechunk small.zarr tall.zarr --chunks 400,10 --graph rechunk.svg")]
pub struct GraphArgs {
    /// The expression (see docs/expressions.md).
    #[arg(allow_hyphen_values = true)]
    pub expr: String,
    /// Inputs as NAME=PATH.
    #[arg(value_name = "NAME=PATH")]
    pub inputs: Vec<std::ffi::OsString>,
    /// The picture: FILE.svg, FILE.png or FILE.dot (default: DOT on standard output).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// tasks (one node per task and chunk) or stages (one node per stage and array); default:
    /// tasks when the task graph has at most 500 nodes and 64 side by side, else stages.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub level: Option<Level>,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub fn run(a: &GraphArgs, run: &RunArgs) -> Result<()> {
    if run.graph.is_some() {
        return Err(Error::usage("--graph", "dsk graph draws into -o FILE; drop --graph"));
    }
    if run.graph_level.is_some() {
        return Err(Error::usage("--graph-level", "dsk graph takes --level; use --level instead"));
    }
    let out = a.output.as_deref().unwrap_or(Path::new("-"));
    if out.as_os_str() != "-" {
        // a bad extension is refused before any input is opened
        use crate::report::draw::PictureFormat;
        PictureFormat::of(out, "-o", &[PictureFormat::Svg, PictureFormat::Png, PictureFormat::Dot])?;
    }
    let named = parse_named(&a.inputs, "NAME=PATH")?;
    let (plan, _metas) = build_plan(&a.expr, "EXPR", &named)?;
    let opts = OutputOpts::default();
    let dest = if plan.result_shape().is_empty() { None } else { Some(Dest::Zarr(Path::new("result.zarr"))) };
    let pplan = plan_expression(plan, dest, opts, run, "eval")?;
    if run.explain.is_some() {
        super::compute::execute(&pplan, run, false)?;
    }
    crate::report::graph::write(&pplan, out, a.level, "-o", "--level")
}
