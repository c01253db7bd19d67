//! `dsk eval EXPR [NAME=PATH …] [-o OUT]`: evaluate an expression. A 0-d result is printed as a plain
//! number that reads back exactly; an array result goes to a Zarr array (`-o out.zarr`), a file
//! (`-o out.npy`, `-o out.csv`) or standard output (`--format csv|npy`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::compute::{build_plan, compute_to_zarr, parse_named, OutputOpts};
use super::export::{self, Format};
use super::RunArgs;
use crate::dtype::Elem;
use crate::error::{Error, Result};
use crate::exec::evaluate::Evaluator;
use crate::exec::job::open_sources;
use crate::exec::workdir::WorkDir;
use crate::expr::slice::AxisSel;
use crate::grid::{tuple, Region};
use crate::store::{CodecSpec, ZArray};
use crate::with_buf;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk eval '(x * x[::-1, ::-1]).max()' x=big.zarr       (reductions come with `dsk reduce`)
  dsk eval 'cos(x)**2' x=big.zarr -o cos2.zarr
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

fn file_format(p: &Path) -> Option<Format> {
    match p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npy") => Some(Format::Npy),
        Some("csv") | Some("txt") => Some(Format::Csv),
        Some("raw") | Some("bin") => Some(Format::Raw),
        _ => None,
    }
}

pub fn run(a: &EvalArgs, run: &RunArgs) -> Result<()> {
    let named = parse_named(&a.inputs, "NAME=PATH")?;
    let (plan, _metas) = build_plan(&a.expr, "EXPR", &named)?;
    let root = plan.root().clone();
    let to_file = a.output.as_deref().and_then(file_format).or(if a.output.is_some() { None } else { a.format });
    if root.shape.is_empty() && a.output.is_none() && a.format.is_none() {
        return print_scalar(plan, a, run);
    }
    if run.explain && a.output.is_none() && a.format.is_none() {
        return compute_to_zarr(plan, &out_opts(a, Path::new("<result>"), None), run, "eval");
    }
    match (&a.output, to_file) {
        (Some(out), None) => compute_to_zarr(plan, &out_opts(a, out, None), run, "eval"),
        (out, Some(format)) => {
            // compute into an uncompressed array in the work dir, then stream it out
            let work = WorkDir::create(run.work_dir.as_deref())?;
            let tmp = work.path().join("result.zarr");
            let codec = Some(a.write.codec.clone().unwrap_or_else(|| "none".into()));
            if run.explain {
                return compute_to_zarr(plan, &out_opts(a, &tmp, codec), run, "eval");
            }
            work.check_free(root.shape.iter().product::<u64>() * root.dtype.size() as u64)?;
            // the intermediate array is an implementation detail: no summary line for it
            let quiet = RunArgs { quiet: true, ..run.clone() };
            compute_to_zarr(plan, &out_opts(a, &tmp, codec), &quiet, "eval")?;
            let arr = ZArray::open(&tmp)?;
            let sel: Vec<AxisSel> = arr.shape().iter().map(|&n| AxisSel::full(n)).collect();
            export::stream(&arr, &sel, format, out.as_deref(), a.write.overwrite, &run.options()?)
        }
        (None, None) => Err(Error::usage(
            "-o",
            format!(
                "the result is an array of shape {}: write it with -o OUT.zarr (or OUT.npy), or print it with --format csv|npy",
                tuple(&root.shape)
            ),
        )),
    }
}

fn out_opts<'a>(a: &'a EvalArgs, out: &'a Path, codec: Option<String>) -> OutputOpts<'a> {
    OutputOpts {
        out,
        dtype: a.write.dtype.as_deref(),
        chunks: a.write.chunks.as_deref(),
        shard: a.write.shard.as_deref(),
        codec: match codec {
            Some(_) => None,
            None => a.write.codec.as_deref(),
        },
        overwrite: a.write.overwrite,
        default_chunks: None,
        default_codec: codec.as_deref().and_then(|c| CodecSpec::parse(c).ok()),
        dimension_names: None,
        band_groups: false,
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
