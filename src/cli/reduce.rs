//! `dsk reduce IN [OUT] --op mean --axis 1`: a reduction (or a cumulative scan) of an array. With no
//! OUT, a 0-d result is printed as a plain number, so `m=$(dsk reduce x.zarr --op mean)` works.

use std::path::PathBuf;

use clap::Args;

use super::compute::{build_plan, compute, compute_many, Dest, OutputOpts, ResultDest};
use super::export::Format;
use super::RunArgs;
use crate::error::{Error, Result};
use crate::kernels::reduce::ReduceOp;
use crate::store::CodecSpec;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk reduce big.zarr --op mean
  dsk reduce cos2.zarr row_means.zarr --op mean --axis 1
  dsk reduce cube.zarr s.zarr --op std --axis 0,2 --ddof 1 --keepdims
  dsk reduce x.zarr c.zarr --op cumsum --axis 0
  dsk reduce x.zarr col_sums.csv --op sum --axis 0
  dsk reduce big.zarr --op mean,std,min,max
  dsk reduce x.zarr stats.zarr --op mean,std --axis 0")]
pub struct ReduceArgs {
    /// The input array.
    pub input: PathBuf,
    /// The output: a Zarr array, or a .npy / .csv file (needed unless the result is a single
    /// number or --format prints it).
    pub out: Option<PathBuf>,
    /// Print an array result on stdout in this format (or choose the file format of OUT).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Print the result as one JSON object, {"shape", "dtype", "value"} (same as --format json):
    /// for scripts, also for a single number.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// sum, prod, mean, min, max, var, std, argmin, argmax, any, all, count_nonzero, nansum, nanprod,
    /// nanmean, nanmin, nanmax, nanvar, nanstd, cumsum, cumprod. Several reductions separated by
    /// commas (mean,std,min,max) are computed from one read of the input: numbers are printed one
    /// per line as `op value`, arrays go to OUT/op in the Zarr group OUT.
    #[arg(long)]
    pub op: String,
    /// Axes to reduce, e.g. 1 or 0,2 or -1 (default: all).
    #[arg(long, allow_hyphen_values = true)]
    pub axis: Option<String>,
    /// Keep the reduced axes as length-1 axes.
    #[arg(long)]
    pub keepdims: bool,
    /// Delta degrees of freedom for var and std.
    #[arg(long, allow_negative_numbers = true)]
    pub ddof: Option<f64>,
    #[command(flatten)]
    pub write: super::OutputArgs,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub fn run(a: &ReduceArgs, run: &RunArgs) -> Result<()> {
    if a.op.contains(',') {
        return run_many(a, run);
    }
    let op = a.op.trim().to_ascii_lowercase();
    let scan = op == "cumsum" || op == "cumprod";
    if !scan && ReduceOp::parse(&op).is_none() {
        return Err(Error::usage(
            "--op",
            format!("unknown reduction {op:?}; use sum, prod, mean, min, max, var, std, argmin, argmax, any, all, count_nonzero, nan… variants, cumsum or cumprod"),
        ));
    }
    let mut kw = axis_kw(a)?;
    if a.keepdims {
        if scan {
            return Err(Error::usage("--keepdims", format!("{op} keeps every axis already")));
        }
        kw.push("keepdims=True".into());
    }
    if let Some(d) = a.ddof {
        if !ReduceOp::parse(&op).is_some_and(|o| o.takes_ddof()) {
            return Err(Error::usage("--ddof", format!("only var, std, nanvar and nanstd take --ddof, not {op}")));
        }
        kw.push(format!("ddof={d}"));
    }
    let expr = format!("x.{op}({})", kw.join(", "));
    let (plan, metas) = build_plan(&expr, "--op/--axis", &[("x".to_string(), a.input.clone())])?;
    let (shape, complex) = (plan.result_shape().to_vec(), plan.complex);
    let o = OutputOpts {
        default_codec: CodecSpec::from_codecs(&metas[0].codecs),
        ..OutputOpts::new(&a.write, &plan, &metas)
    };
    let format = if a.json { Some(Format::Json) } else { a.format };
    match Dest::of(a.out.as_deref(), format)? {
        Some(dest) => compute(plan, Some(dest), o, run, "reduce"),
        None if plan.result_shape().is_empty() => compute(plan, None, o, run, "reduce"),
        None if run.explain.is_some() || run.graph.is_some() => {
            compute(plan, Some(Dest::Stdout(Format::Npy)), o, run, "reduce")
        }
        None => Err(Error::usage(
            "OUT",
            format!(
                "the result has shape {}: give an output (out.zarr, out.npy or out.{}), or print it with --format {}",
                crate::grid::tuple(&shape),
                if complex { "json" } else { "csv" },
                if complex { "npy|json" } else { "csv|npy" }
            ),
        )),
    }
}

/// `--op a,b,…`: several reductions of the same axes in one run, from one read of the input.
fn run_many(a: &ReduceArgs, run: &RunArgs) -> Result<()> {
    let ops: Vec<String> = a.op.split(',').map(|o| o.trim().to_ascii_lowercase()).collect();
    for (i, op) in ops.iter().enumerate() {
        if op.is_empty() {
            return Err(Error::usage("--op", format!("{:?} has an empty name in its list: write e.g. mean,std", a.op)));
        }
        if op == "cumsum" || op == "cumprod" {
            return Err(Error::usage(
                "--op",
                format!("{op} is a scan, computed one at a time: give it alone (--op {op}), not in a list"),
            ));
        }
        if ReduceOp::parse(op).is_none() {
            return Err(Error::usage(
                "--op",
                format!("unknown reduction {op:?}; use sum, prod, mean, min, max, var, std, argmin, argmax, any, all, count_nonzero or nan… variants"),
            ));
        }
        if ops[..i].contains(op) {
            return Err(Error::usage("--op", format!("{op} is given twice")));
        }
    }
    let mut kw = axis_kw(a)?;
    if a.keepdims {
        kw.push("keepdims=True".into());
    }
    if a.ddof.is_some() && !ops.iter().any(|o| ReduceOp::parse(o).is_some_and(|o| o.takes_ddof())) {
        return Err(Error::usage("--ddof", "only var, std, nanvar and nanstd take --ddof, and none is in --op"));
    }
    let texts: Vec<String> = ops
        .iter()
        .map(|op| {
            let mut k = kw.clone();
            if let (Some(d), true) = (a.ddof, ReduceOp::parse(op).is_some_and(|o| o.takes_ddof())) {
                k.push(format!("ddof={d}"));
            }
            format!("x.{op}({})", k.join(", "))
        })
        .collect();
    let named = [("x".to_string(), a.input.clone())];
    let (plan, metas) = super::compute::build_plan_many(&texts, "--op/--axis", &named)?;
    if plan.complex || metas.iter().any(|m| m.complex) {
        return Err(Error::usage(
            "--op",
            "several reductions of a complex array are computed one at a time: give one --op per run",
        ));
    }
    let scalar = plan.result_shape().is_empty();
    if a.format.is_some() || (a.json && !(scalar && a.out.is_none())) {
        return Err(Error::usage(
            if a.json { "--json" } else { "--format" },
            "several reductions print one `op value` line each (or, when they are numbers, one JSON object with --json), or go to OUT/op in a Zarr group — give one --op to print an array as JSON, CSV or npy",
        ));
    }
    let dests: Vec<ResultDest<'_>> = match &a.out {
        None if scalar => {
            ops.iter().map(|op| ResultDest { dest: None, label: Some(op.clone()), json: a.json }).collect()
        }
        None => {
            return Err(Error::usage(
                "OUT",
                format!(
                    "the results have shape {}: give a Zarr group to write them to (e.g. stats.zarr: each goes to stats.zarr/<op>)",
                    crate::grid::tuple(plan.result_shape())
                ),
            ))
        }
        Some(out) => {
            if super::export::file_format(out).is_some() || out.as_os_str() == "-" {
                return Err(Error::usage(
                    "OUT",
                    format!("{} is a file: several reductions go to a Zarr group (e.g. stats.zarr), one array per op", out.display()),
                ));
            }
            // a group to put the results in: a new one, or a Zarr group already there
            let local = !crate::store::remote::is_url(out);
            if local
                && std::fs::symlink_metadata(out).is_ok()
                && !matches!(crate::store::group::node_type(out), crate::store::group::NodeType::Group(_))
            {
                return Err(Error::output(
                    out,
                    "exists and is not a Zarr group: several reductions go into a group, one array per op — give a new path (e.g. stats.zarr) or an existing group",
                ));
            }
            vec![]
        }
    };
    let paths: Vec<PathBuf> = match &a.out {
        Some(out) => ops.iter().map(|op| out.join(op)).collect(),
        None => vec![],
    };
    let dests = if paths.is_empty() {
        dests
    } else {
        paths.iter().map(|p| ResultDest { dest: Some(Dest::Zarr(p)), label: None, json: false }).collect()
    };
    // like one reduction: the input's codec by default
    let codec = CodecSpec::from_codecs(&metas[0].codecs);
    compute_many(plan, dests, &a.write, &metas, codec, run, "reduce")
}

/// `--axis` as the keyword argument of the reduction's expression (none: every axis).
fn axis_kw(a: &ReduceArgs) -> Result<Vec<String>> {
    let Some(ax) = &a.axis else { return Ok(vec![]) };
    let parts: Vec<&str> = ax.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for p in &parts {
        p.parse::<i64>().map_err(|_| Error::usage("--axis", format!("{p:?} is not an axis number")))?;
    }
    Ok(vec![if parts.len() == 1 { format!("axis={}", parts[0]) } else { format!("axis=({})", parts.join(", ")) }])
}
