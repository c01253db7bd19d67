//! `dsk export PATH [--slice S] [--format npy|csv|raw] [-o FILE]`: stream an array (or a slice of
//! it) out of Zarr in C order, block by block, in bounded memory (the export stage of a plan, see
//! `exec::export`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::compute::{execute, plan_options, summarize};
use super::RunArgs;
use crate::error::{Error, Result};
use crate::plan::planner;
use crate::plan::Input;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dsk export x.zarr -o x.npy
  dsk export x.zarr --slice '0:10, ::2' --format csv
  dsk export x.zarr --slice '::-1, 3' --format raw > column3_reversed.bin")]
pub struct ExportArgs {
    /// A Zarr array directory (v2 or v3).
    pub path: PathBuf,
    /// Output format (default: from the -o extension, else npy).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Print one JSON object, {"shape", "dtype", "value"} (same as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output file (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// NumPy basic indexing, e.g. '0:10, ::2' or '::-1, 5' (an integer drops the axis).
    #[arg(long, allow_hyphen_values = true)]
    pub slice: Option<String>,
    /// Replace an existing output file.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub run: super::RunArgs,
}

pub use crate::store::FileFormat as Format;

/// The file format an output path's extension names (`.npy`, `.csv`/`.txt`, `.raw`/`.bin`/`.dat`),
/// or `None` (a Zarr array, for the computing commands). One rule for every command.
pub fn file_format(out: &Path) -> Option<Format> {
    match out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npy") => Some(Format::Npy),
        Some("csv") | Some("txt") => Some(Format::Csv),
        Some("raw") | Some("bin") | Some("dat") => Some(Format::Raw),
        Some("json") => Some(Format::Json),
        _ => None,
    }
}

pub fn infer_format(out: Option<&Path>) -> Format {
    out.and_then(file_format).unwrap_or(Format::Npy)
}

pub fn run(args: &ExportArgs, run: &RunArgs) -> Result<()> {
    let m = super::open_input(&args.path)?;
    let mut sel = super::selection(args.slice.as_deref(), &m.shape)?;
    if m.complex {
        // both parts of each complex element (the last axis of the array's view)
        sel.push(crate::expr::slice::AxisSel::full(2));
    }
    let asked = if args.json { Some(Format::Json) } else { args.format };
    // one rule with eval and reduce: a format that contradicts -o's extension is refused
    if let (Some(f), Some(e)) = (asked, args.output.as_deref().and_then(file_format)) {
        if f != e {
            let name = |f: Format| format!("{f:?}").to_lowercase();
            return Err(Error::usage(
                if args.json { "--json" } else { "--format" },
                format!(
                    "{} does not match the extension of {} ({}) — drop it or rename the file",
                    name(f),
                    args.output.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                    name(e)
                ),
            ));
        }
    }
    let format = asked.unwrap_or_else(|| infer_format(args.output.as_deref()));
    if m.complex && format == Format::Csv {
        return Err(Error::usage(
            "--format",
            format!(
                "csv holds real numbers and {} is {} — export it as npy or json, or take real(x), imag(x) or abs(x) with dsk eval",
                args.path.display(),
                m.dtype_name()
            ),
        ));
    }
    let input = Input {
        name: "x".into(),
        path: args.path.clone(),
        shape: m.view(&m.shape),
        dtype: m.dtype,
        chunks: m.view(crate::store::read_chunks(&m, &args.path)),
        complex: m.complex,
    };
    let opts = plan_options(run)?;
    let plan = |o: &planner::PlanOptions| planner::export(input.clone(), sel.clone(), format, args.output.clone(), o);
    let pplan = match plan(&opts) {
        Err(Error::Budget { what, needed, budget, .. }) => {
            let hint = match planner::least_memory(&opts, needed, plan) {
                Some(m) => {
                    format!("raise --memory to {}, or rechunk the array to smaller chunks first", planner::mem_arg(m))
                }
                None => "raise --memory, or rechunk the array to smaller chunks first".to_string(),
            };
            return Err(Error::Budget { what, needed, budget, hint });
        }
        r => r?,
    };
    if let Some(report) = execute(&pplan, run, args.overwrite)? {
        summarize(&pplan, &report, run);
    }
    Ok(())
}
