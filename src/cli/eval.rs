//! `dsk eval EXPR [NAME=PATH …] [-o OUT]`: evaluate an expression. A 0-d result is printed as a plain
//! number that reads back exactly; an array result goes to a Zarr array (`-o out.zarr`), a file
//! (`-o out.npy`, `-o out.csv`) or standard output (`--format csv|npy`).

use std::path::PathBuf;

use clap::Args;

use super::compute::{build_plan, compute, parse_named, Dest, OutputOpts};
use super::export::Format;
use super::RunArgs;
use crate::error::{Error, Result};
use crate::grid::tuple;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk eval '(x * x[::-1, ::-1]).mean()' x=big.zarr
  dsk eval '(cos(x)**2).mean(axis=1)' x=big.zarr -o m.zarr
  dsk eval 'ones((3, 4)) * 2' --format csv
  dsk eval 'x[0, 0] + y[0, 0]' x=a.zarr y=b.zarr")]
pub struct EvalArgs {
    /// The expression (see docs/expressions.md).
    #[arg(allow_hyphen_values = true)]
    pub expr: String,
    /// Inputs as NAME=PATH.
    #[arg(value_name = "NAME=PATH")]
    pub inputs: Vec<std::ffi::OsString>,
    /// Write the result here: a Zarr array, or a .npy / .csv file.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Print an array result on stdout in this format (or choose the file format of -o).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Print the result as one JSON object, {"shape", "dtype", "value"} (same as --format json):
    /// for scripts, also for a single number.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    #[command(flatten)]
    pub write: super::OutputArgs,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub fn run(a: &EvalArgs, run: &RunArgs) -> Result<()> {
    let named = parse_named(&a.inputs, "NAME=PATH")?;
    let (plan, metas) = build_plan(&a.expr, "EXPR", &named)?;
    let (shape, complex) = (plan.result_shape().to_vec(), plan.complex);
    let opts = OutputOpts::new(&a.write, &plan, &metas);
    let format = if a.json { Some(Format::Json) } else { a.format };
    match Dest::of(a.output.as_deref(), format)? {
        Some(dest) => compute(plan, Some(dest), opts, run, "eval"),
        None if plan.result_shape().is_empty() => compute(plan, None, opts, run, "eval"),
        // the plan of an array result, as if printed
        None if run.explain.is_some() || run.graph.is_some() => compute(plan, Some(Dest::Stdout(Format::Npy)), opts, run, "eval"),
        None => Err(Error::usage(
            "-o",
            format!(
                "the result is an array of shape {}: write it with -o OUT.zarr (or OUT.npy), or print it with --format {}",
                tuple(&shape),
                if complex { "npy|json" } else { "csv|npy" }
            ),
        )),
    }
}
