//! `dsk eval EXPR [NAME=PATH …] [-o OUT]`: evaluate an expression. A 0-d result is printed as a plain
//! number that reads back exactly; an array result goes to a Zarr array (`-o out.zarr`), a file
//! (`-o out.npy`, `-o out.csv`) or standard output (`--format csv|npy`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::compute::{build_plan, compute_to, compute_to_zarr, parse_named, Dest, OutputOpts};
use super::export::Format;
use super::RunArgs;
use crate::dtype::Elem;
use crate::error::{Error, Result};
use crate::exec::evaluate::Evaluator;
use crate::exec::job::open_sources;
use crate::grid::{tuple, Region};
use crate::with_buf;

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
    pub inputs: Vec<String>,
    /// Write the result here: a Zarr array, or a .npy / .csv file.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Print an array result on stdout in this format (or choose the file format of -o).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[command(flatten)]
    pub write: super::OutputArgs,
}

pub fn run(a: &EvalArgs, run: &RunArgs) -> Result<()> {
    let named = parse_named(&a.inputs, "NAME=PATH")?;
    let (plan, _metas) = build_plan(&a.expr, "EXPR", &named)?;
    let root = plan.root().clone();
    let opts = OutputOpts {
        out: Path::new("<result>"),
        dtype: a.write.dtype.as_deref(),
        chunks: a.write.chunks.as_deref(),
        shard: a.write.shard.as_deref(),
        codec: a.write.codec.as_deref(),
        overwrite: a.write.overwrite,
        default_chunks: None,
        default_codec: None,
        dimension_names: None,
        band_groups: false,
    };
    match Dest::of(a.output.as_deref(), a.format)? {
        Some(dest) => compute_to(plan, dest, opts, run, "eval"),
        None if root.shape.is_empty() => print_scalar(plan, a, run),
        None if run.explain => compute_to_zarr(plan, &opts, run, "eval"),
        None => Err(Error::usage(
            "-o",
            format!(
                "the result is an array of shape {}: write it with -o OUT.zarr (or OUT.npy), or print it with --format csv|npy",
                tuple(&root.shape)
            ),
        )),
    }
}

fn print_scalar(plan: crate::plan::Plan, a: &EvalArgs, run: &RunArgs) -> Result<()> {
    print_result(plan, &a.expr, a.write.dtype.as_deref(), run)
}

/// Evaluate a 0-d result in this process (its reductions first) and print it.
pub fn print_result(plan: crate::plan::Plan, expr: &str, dtype: Option<&str>, run: &RunArgs) -> Result<()> {
    let opts = run.options()?;
    let sink = crate::report::sink(run.progress, run.quiet);
    let started = std::time::Instant::now();
    let prepared = super::compute::prepare(plan, run, sink.as_ref())?;
    let plan = &prepared.plan;
    let sources = open_sources(plan)?;
    let mut ev = Evaluator::new(plan, &sources, &prepared.temps, opts.workers);
    if run.explain {
        let text = format!("{}{}", prepared.explain, "result: printed on stdout\n");
        return crate::write_stdout(text.as_bytes());
    }
    let mut b = ev.root_region(&Region::full(&[]))?;
    if let Some(t) = dtype {
        let d = crate::dtype::DType::parse(t).ok_or_else(|| {
            Error::usage("--dtype", format!("unknown dtype {t:?}; use one of {}", crate::dtype::DType::accepted()))
        })?;
        b = b.cast(d);
    }
    let mut text = String::new();
    with_buf!(&b, T, arr => {
        let v: T = arr.iter().next().copied().unwrap_or_default();
        v.write_text(&mut text);
    });
    text.push('\n');
    crate::write_stdout(text.as_bytes())?;
    if !run.quiet && run.progress != crate::report::ProgressMode::Json && prepared.work.is_some() {
        eprintln!(
            "dsk: {} in {:.2} s, {}",
            expr,
            started.elapsed().as_secs_f64(),
            crate::exec::describe_peak(0).replace(" (projected 0 B)", "")
        );
    }
    Ok(())
}
