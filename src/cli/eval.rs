//! `dsk eval EXPR [NAME=PATH …] [-o OUT]`: evaluate an expression. A 0-d result is printed as a plain
//! number that reads back exactly; an array result goes to a Zarr array (`-o out.zarr`), a file
//! (`-o out.npy`, `-o out.csv`) or standard output (`--format csv|npy`).

use std::path::PathBuf;

use clap::Args;

use super::compute::{build_plan, compute, compute_many, parse_named, Dest, OutputOpts, ResultDest};
use super::export::Format;
use super::RunArgs;
use crate::error::{Error, Result};
use crate::grid::tuple;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk eval '(x * x[::-1, ::-1]).mean()' x=big.zarr
  dsk eval '(cos(x)**2).mean(axis=1)' x=big.zarr -o m.zarr
  dsk eval 'ones((3, 4)) * 2' --format csv
  dsk eval 'x[0, 0] + y[0, 0]' x=a.zarr y=b.zarr
  dsk eval -o colmeans.zarr='x.mean(axis=0)' -o colstds.zarr='x.std(axis=0)' x=big.zarr")]
pub struct EvalArgs {
    /// The expression (see docs/expressions.md); none when every -o gives its own.
    #[arg(allow_hyphen_values = true)]
    pub expr: Option<String>,
    /// Inputs as NAME=PATH.
    #[arg(value_name = "NAME=PATH")]
    pub inputs: Vec<std::ffi::OsString>,
    /// Write the result here: a Zarr array, or a .npy / .csv file. Several results of one run:
    /// -o PATH=EXPR, once per result — what they share (inputs, reductions of the same axes) is
    /// read and computed once.
    #[arg(short, long, value_name = "OUT")]
    pub output: Vec<std::ffi::OsString>,
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

/// `NAME=…` with NAME an identifier and a single `=` (not `x==1`): an input, not an expression.
fn is_assignment(s: &str) -> bool {
    let Some((name, rest)) = s.split_once('=') else { return false };
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        && !rest.starts_with('=')
}

pub fn run(a: &EvalArgs, run: &RunArgs) -> Result<()> {
    let outs: Vec<String> = a
        .output
        .iter()
        .map(|o| {
            o.to_str()
                .map(str::to_string)
                .ok_or_else(|| Error::usage("-o", format!("{} is not valid UTF-8", o.to_string_lossy())))
        })
        .collect::<Result<_>>()?;
    let several =
        !outs.is_empty() && outs.iter().all(|o| o.contains('=')) && a.expr.as_deref().is_none_or(is_assignment);
    if several {
        return run_many(a, &outs, run);
    }
    if outs.len() > 1 {
        return Err(Error::usage(
            "-o",
            "is given more than once: for several results give every one as -o PATH=EXPR (all of them, and no EXPR before the inputs)",
        ));
    }
    let Some(expr) = &a.expr else {
        return Err(Error::usage(
            "<EXPR>",
            "the expression to evaluate is missing: dsk eval EXPR [NAME=PATH …], or -o PATH=EXPR for each result (dsk eval --help)",
        ));
    };
    if let (Some(o), Some(_)) = (outs.first(), &a.expr) {
        if o.contains('=') {
            return Err(Error::usage(
                "-o",
                format!("{o:?} holds '=': to name each result's expression write -o PATH=EXPR and no EXPR before the inputs; an OUT path cannot hold '='"),
            ));
        }
    }
    let output = outs.first().map(PathBuf::from);
    let named = parse_named(&a.inputs, "NAME=PATH")?;
    let (plan, metas) = build_plan(expr, "EXPR", &named)?;
    let (shape, complex) = (plan.result_shape().to_vec(), plan.complex);
    let opts = OutputOpts::new(&a.write, &plan, &metas);
    let format = if a.json { Some(Format::Json) } else { a.format };
    match Dest::of(output.as_deref(), format)? {
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

/// Several results, `-o PATH=EXPR` each, computed in one run.
fn run_many(a: &EvalArgs, outs: &[String], run: &RunArgs) -> Result<()> {
    let mut inputs: Vec<std::ffi::OsString> = a.expr.iter().map(Into::into).collect();
    inputs.extend(a.inputs.iter().cloned());
    let named = parse_named(&inputs, "NAME=PATH")?;
    let mut paths = vec![];
    let mut texts = vec![];
    for o in outs {
        let (path, text) = o.split_once('=').unwrap_or((o.as_str(), ""));
        if path.is_empty() || text.trim().is_empty() {
            return Err(Error::usage(
                "-o",
                format!("{o:?}: give each result as PATH=EXPR, e.g. -o m.zarr='x.mean(axis=0)'"),
            ));
        }
        if path == "-" {
            return Err(Error::usage(
                "-o",
                "several results cannot share standard output: give each a file or a Zarr array",
            ));
        }
        paths.push(PathBuf::from(path));
        texts.push(text.to_string());
    }
    if a.json || a.format.is_some() {
        return Err(Error::usage(
            if a.json { "--json" } else { "--format" },
            "with several results each -o PATH says its format by its extension (.npy, .csv, else Zarr)",
        ));
    }
    let (plan, metas) = super::compute::build_plan_many(&texts, "-o", &named)?;
    let mut dests = vec![];
    for p in &paths {
        dests.push(ResultDest { dest: Dest::of(Some(p), None)?, label: None, json: false });
    }
    compute_many(plan, dests, &a.write, &metas, None, run, "eval")
}
