//! `dsk plot IN [-o OUT.png|.svg] [--slice S] [--size WxH]`: a picture of a 1-D selection (a line
//! plot) or a 2-D one (a heatmap), reduced to the picture's pixels while streaming the chunks
//! (`exec::plot`) and drawn by `report::plot`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::RunArgs;
use crate::error::{Error, Result};
use crate::expr::slice::AxisSel;
use crate::report::draw::{self, PictureFormat};
use crate::report::plot::{self as picture, PlotAxis, PlotSpec};

#[derive(Debug, Args)]
#[command(after_help = "A 1-D selection is drawn as a line: every value when there are at most as many as the plot is
wide, else per pixel column the band from the minimum to the maximum of its elements and a line
through the mean of their finite values. A 2-D selection is drawn as a heatmap (viridis, row 0 at
the top): every element when it fits, else per pixel the mean of the finite values of its block;
NaN is grey, infinite values are left out of the means. Axes are in array index coordinates.
Arrays larger than the picture are reduced while streaming their chunks, in parallel, under
--memory.

Without -o the picture is NAME.png in the current directory (NAME: the array's file name without
its extension). A picture dsk wrote (it carries dsk's mark) is replaced; any other existing file
only with --overwrite.

Examples:
  dsk plot row_means.zarr -o row_means.png
  dsk plot x.zarr --slice '::-1, 100:300' -o x_part.svg
  dsk plot cube.zarr --slice '0, :, :' --size 1200x800 -o first_plane.png")]
pub struct PlotArgs {
    /// A Zarr array directory (v2 or v3).
    pub path: PathBuf,
    /// The picture: a .png or .svg file (default: NAME.png in the current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// NumPy basic indexing, e.g. '0, :, ::2' or '::-1' (an integer drops the axis); what remains
    /// must be 1-D (a line plot) or 2-D (a heatmap).
    #[arg(long, allow_hyphen_values = true)]
    pub slice: Option<String>,
    /// Picture size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "900x600", value_name = "WxH")]
    pub size: String,
    /// Replace an existing output file even when it is not a PNG or SVG picture.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub run: super::RunArgs,
}

/// The picture size argument: `900x600`, each side between the smallest useful and 8000.
fn parse_size(text: &str) -> Result<(u32, u32)> {
    let bad = || {
        Error::usage(
            "--size",
            format!(
                "{text:?} is not a picture size — write WIDTHxHEIGHT in pixels, from {}x{} to 8000x8000, e.g. 900x600",
                picture::MIN_SIZE.0,
                picture::MIN_SIZE.1
            ),
        )
    };
    let (w, h) = text.trim().split_once(['x', 'X', '×']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if w < picture::MIN_SIZE.0 || h < picture::MIN_SIZE.1 || w > 8000 || h > 8000 {
        return Err(bad());
    }
    Ok((w, h))
}

/// `NAME.png` in the current directory for an array at `path`.
fn default_output(path: &Path) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_os_string()).filter(|s| !s.is_empty() && s != "." && s != "..");
    let mut name = stem.unwrap_or_else(|| "plot".into());
    name.push(".png");
    PathBuf::from(name)
}

/// Check that `out` may be written: never a directory; an existing file only if dsk wrote it (a
/// picture with dsk's mark), or with `--overwrite`.
fn check_output(out: &Path, overwrite: bool) -> Result<()> {
    if out.is_dir() {
        return Err(Error::usage("-o", format!("{} is a directory — name a .png or .svg file", out.display())));
    }
    if overwrite {
        return Ok(());
    }
    draw::check_replaceable(out, "-o")
}

/// The selection as a suggestion for `--slice` that keeps the last two of the kept axes.
fn slice_hint(sel: &[AxisSel]) -> String {
    let kept = sel.iter().filter(|s| s.keep).count();
    let mut dropped = 0;
    let items: Vec<String> = sel
        .iter()
        .map(|s| {
            if !s.keep {
                s.start.to_string()
            } else if dropped + 2 < kept {
                dropped += 1;
                "0".into()
            } else {
                ":".into()
            }
        })
        .collect();
    items.join(", ")
}

pub fn run(args: &PlotArgs, run: &RunArgs) -> Result<()> {
    let started = Instant::now();
    let out = args.output.clone().unwrap_or_else(|| default_output(&args.path));
    let format = PictureFormat::of(&out, "-o", &[PictureFormat::Png, PictureFormat::Svg])?;
    let (width, height) = parse_size(&args.size)?;
    if run.explain.is_some() {
        return Err(Error::usage(
            "--explain",
            "dsk plot reads and draws in one pass and has no plan to explain — run it without --explain",
        ));
    }
    let mut opts = run.options()?;
    if run.scheduler == crate::exec::Scheduler::Sync {
        opts.workers = 1;
    }
    let m = super::open_input(&args.path)?;
    if m.complex {
        return Err(Error::input(
            &args.path,
            format!(
                "is {} and a plot shows real numbers — plot its abs, real or imag part: dsk eval 'abs(z)' z={} -o abs.zarr",
                m.dtype_name(),
                args.path.display()
            ),
        ));
    }
    let shape = m.shape.clone();
    let sel = super::selection(args.slice.as_deref(), &shape)?;
    let name = args
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.path.display().to_string());
    let kept: Vec<usize> = (0..sel.len()).filter(|&a| sel[a].keep).collect();
    let sel_shape: Vec<u64> = kept.iter().map(|&a| sel[a].len).collect();
    let path_text = args.path.display().to_string();
    match kept.len() {
        0 if shape.is_empty() => {
            return Err(Error::usage(
                &path_text,
                format!("is 0-d (a single value): nothing to plot — print it with dsk export {path_text} --format csv"),
            ))
        }
        0 => {
            return Err(Error::usage(
                "--slice",
                format!("selects a single value: nothing to plot — print it with dsk export {path_text} --slice '{}' --format csv, or keep one or two axes with ':'", args.slice.as_deref().unwrap_or_default().trim()),
            ))
        }
        1 | 2 => {}
        k => {
            let (arg, after) = match &args.slice {
                Some(_) => ("--slice", format!("the selection has {k} axes, shape {}", crate::grid::tuple(&sel_shape))),
                None => (path_text.as_str(), format!("has {k} axes, shape {}", crate::grid::tuple(&shape))),
            };
            return Err(Error::usage(
                arg,
                format!("{after}; a plot shows 1 (a line) or 2 (a heatmap) — choose the rest with --slice, e.g. --slice '{}'", slice_hint(&sel)),
            ));
        }
    }
    if shape.contains(&0) {
        return Err(Error::input(
            &args.path,
            format!("the array is empty (shape {}): nothing to plot", crate::grid::tuple(&shape)),
        ));
    }
    if sel_shape.contains(&0) {
        return Err(Error::usage(
            "--slice",
            format!(
                "selects no elements (shape {}): nothing to plot — choose a non-empty range",
                crate::grid::tuple(&sel_shape)
            ),
        ));
    }
    check_output(&out, args.overwrite)?;

    let names = m.dimension_names.clone().unwrap_or_default();
    let axes: Vec<PlotAxis> = kept
        .iter()
        .map(|&a| PlotAxis {
            label: match names.get(a).cloned().flatten().filter(|n| !n.trim().is_empty()) {
                Some(n) => n,
                None => format!("axis {a}"),
            },
            start: sel[a].start,
            step: sel[a].step,
            len: sel[a].len,
        })
        .collect();
    let title = match &args.slice {
        Some(t) => format!("{name}[{}]", t.trim().trim_start_matches('[').trim_end_matches(']').trim()),
        None => name.clone(),
    };
    let mut about = format!("{}, shape {}", m.dtype, crate::grid::tuple(&shape));
    if args.slice.is_some() {
        about.push_str(&format!("; selection shape {}", crate::grid::tuple(&sel_shape)));
    }
    let spec = PlotSpec { title, about, axes, width, height };

    let arr = crate::store::ZArray::open(&args.path)?;
    let sink = crate::report::sink(run.progress, run.quiet);
    let max_bins = picture::plot_pixels(width, height, kept.len());
    let bins = crate::exec::plot::reduce(&arr, &sel, &max_bins, &opts, sink.as_ref(), "plot")?;
    let svg = picture::svg(&bins, &spec)?;
    let bytes = match format {
        PictureFormat::Png => draw::svg_to_png(&svg, 1.0)?,
        _ => svg.into_bytes(),
    };
    // a signal while the picture was drawn: no picture (Ctrl-C means stop)
    if crate::exec::interrupted() {
        return Err(crate::error::Error::Interrupted);
    }
    draw::write_file_over(&out, "-o", &bytes, args.overwrite)?;

    let kind = if kept.len() == 1 { "line plot" } else { "heatmap" };
    let pixels: Vec<u64> = bins.axes.iter().map(|a| a.bins).collect();
    let secs = started.elapsed().as_secs_f64();
    let text = format!(
        "dsk: wrote {} — {kind} of {} {}, {} elements in {} cells, {width}×{height} pixels, {:.2} s",
        out.display(),
        name,
        crate::grid::tuple(&sel_shape),
        sel_shape.iter().product::<u64>(),
        crate::grid::tuple(&pixels),
        secs
    );
    let fields = serde_json::json!({
        "command": "plot", "path": out.display().to_string(), "kind": kind, "shape": sel_shape,
        "cells": pixels, "width": width, "height": height, "elapsed_s": (secs * 1000.0).round() / 1000.0,
    });
    crate::report::summary(run.progress, run.quiet, &text, fields);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_default_names() {
        assert_eq!(parse_size("900x600").ok(), Some((900, 600)));
        assert_eq!(parse_size(" 1200 X 800 ").ok(), Some((1200, 800)));
        assert!(parse_size("10x10").is_err());
        assert!(parse_size("900").is_err());
        assert!(parse_size("9000x600").is_err());
        assert_eq!(default_output(Path::new("data/x.zarr/")), PathBuf::from("x.png"));
        assert_eq!(default_output(Path::new(".")), PathBuf::from("plot.png"));
    }

    #[test]
    fn slice_hints_keep_the_last_two_axes() {
        let full: Vec<AxisSel> = [2, 3, 4].iter().map(|&n| AxisSel::full(n)).collect();
        assert_eq!(slice_hint(&full), "0, :, :");
        let mut four: Vec<AxisSel> = [2, 3, 4, 5].iter().map(|&n| AxisSel::full(n)).collect();
        four[1] = AxisSel { start: 2, len: 1, step: 1, keep: false };
        four.push(AxisSel::full(6));
        assert_eq!(slice_hint(&four), "0, 2, 0, :, :");
    }
}
