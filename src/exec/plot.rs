//! Streaming a 1-D or 2-D selection of an array into pixel bins (`kernels::bins`) for `dsk plot`:
//! every storage chunk that holds selected elements is one task — read (only the bounding box of
//! its selected elements), folded into the cells of the bins it touches, merged into the picture's
//! cells — on up to `--workers` threads, with as many chunks in flight as `--memory` allows next to
//! the cells themselves. Nothing is written; a 10⁹-element array costs one pass over its chunks.

use std::sync::Mutex;

use super::{Budget, EventSink, RunOptions};
use crate::dtype::Elem;
use crate::error::{Error, Result};
use crate::expr::slice::AxisSel;
use crate::grid::{strides, unravel, Region};
use crate::kernels::bins::{BinAxis, Bins, Cell};
use crate::store::ZArray;
use crate::with_dtype;

/// The selected elements `k0..k1` of `s` that lie in the input range `c0..c1`.
pub fn selected_in(s: &AxisSel, c0: u64, c1: u64) -> (u64, u64) {
    let (start, len) = (s.start as u128, s.len as u128);
    let m = s.step.unsigned_abs() as u128;
    let (c0, c1) = (c0 as u128, c1 as u128);
    let (k0, k1) = if s.step > 0 {
        let first = |c: u128| if c <= start { 0 } else { (c - start).div_ceil(m) };
        (first(c0), first(c1))
    } else {
        // positions start − k·m, decreasing with k
        let past = |c: u128| if start < c { 0 } else { (start - c) / m + 1 };
        (past(c1), past(c0))
    };
    let (k0, k1) = (k0.min(len) as u64, k1.min(len) as u64);
    (k0, k1.max(k0))
}

/// Bytes a task holds at its peak: the decoded chunk, the copy of its selected box, the chunk's
/// encoded bytes (at most its decoded size for every codec dsk reads), the offsets of its selected
/// elements and the cells it folds them into.
fn task_bytes(chunk: &[u64], item: u64, sel: &[AxisSel], axes: &[BinAxis]) -> u64 {
    let elems: u64 = chunk.iter().product();
    let kept = sel.iter().zip(chunk).filter(|(s, _)| s.keep).map(|(_, &c)| c);
    let cells: u64 = kept.clone().zip(axes).map(|(c, a)| c.min(a.bins) + 1).product();
    let offsets: u64 = kept.map(|c| c * 16).sum();
    3 * elems * item + offsets + cells * Cell::BYTES
}

/// Fold the selection `sel` of `arr` into at most `max_bins[i]` bins along its i-th kept axis
/// (one or two kept axes). Events go to `sink` as stage `stage`, one task per chunk read.
pub fn reduce(
    arr: &ZArray,
    sel: &[AxisSel],
    max_bins: &[u64],
    opts: &RunOptions,
    sink: &dyn EventSink,
    stage: &str,
) -> Result<Bins> {
    let kept: Vec<usize> = (0..sel.len()).filter(|&a| sel[a].keep).collect();
    if kept.is_empty() || kept.len() > 2 || kept.len() != max_bins.len() || sel.iter().any(|s| s.len == 0) {
        return Err(Error::Internal(format!("plot: cannot bin the selection {sel:?} into {max_bins:?}")));
    }
    let axes: Vec<BinAxis> = kept.iter().zip(max_bins).map(|(&a, &m)| BinAxis::new(sel[a].len, m)).collect();
    let grid = arr.read_grid();
    let item = arr.dtype().size() as u64;
    let per_task = task_bytes(&grid.chunks, item, sel, &axes);
    let cells_bytes = Bins::bytes(&axes);
    if per_task + cells_bytes > opts.memory {
        let needed = per_task + cells_bytes;
        return Err(Error::Budget {
            what: format!(
                "plotting {} one chunk {} at a time ({} per chunk, {} for the picture)",
                arr.path().display(),
                crate::grid::tuple(&grid.chunks),
                crate::error::human(per_task),
                crate::error::human(cells_bytes)
            ),
            needed,
            budget: opts.memory,
            hint: format!(
                "raise --memory to {}, or rechunk the array to smaller chunks first (dsk rechunk)",
                crate::plan::planner::mem_arg(needed)
            ),
        });
    }
    // the chunks that hold the selection's bounding box
    let nd = sel.len();
    let (mut first, mut span) = (vec![0; nd], vec![0; nd]);
    for a in 0..nd {
        let (lo, hi) = sel[a].bbox(0, sel[a].len);
        let r = grid.chunks_overlapping(a, lo, hi);
        first[a] = r.start;
        span[a] = r.end - r.start;
    }
    let tasks: u64 = span.iter().product();
    let in_flight = (opts.workers as u64).min((opts.memory - cells_bytes) / per_task).min(tasks).max(1);
    let total_bytes: u64 = sel.iter().map(|s| s.len).product::<u64>() * item;

    // the picture's cells are held for the whole pass; run_stage reserves each task's bytes next
    // to them, emits the events and stops at the first error or an interrupt
    let budget = Budget::new(opts.memory);
    let _cells = budget.reserve(cells_bytes);
    let out = Mutex::new(Bins::new(axes.clone()));
    let dtype = arr.dtype();
    let stage_def = super::Stage { name: stage.to_string(), tasks, task_bytes: per_task, total_bytes };
    super::run_stage(&stage_def, in_flight as usize, opts, sink, &budget, |ctx| {
        let off = unravel(ctx.index, &span);
        let idx: Vec<u64> = (0..nd).map(|a| first[a] + off[a]).collect();
        let region = grid.chunk_region(&idx);
        let read = with_dtype!(dtype, T => fold_chunk::<T>(arr, sel, &kept, &axes, &region, ctx.codec_threads, &out))?;
        Ok(read * item)
    })?;
    Ok(out.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// One task: the selected elements of `chunk` (a chunk's region) folded into the cells they fall
/// in, then merged into `out`. Returns how many elements were read.
fn fold_chunk<T: Elem>(
    arr: &ZArray,
    sel: &[AxisSel],
    kept: &[usize],
    axes: &[BinAxis],
    chunk: &Region,
    threads: usize,
    out: &Mutex<Bins>,
) -> Result<u64> {
    let nd = sel.len();
    let (mut start, mut shape, mut ks) = (vec![0; nd], vec![0; nd], vec![(0, 0); nd]);
    for a in 0..nd {
        let (k0, k1) = selected_in(&sel[a], chunk.start[a], chunk.end(a));
        if k0 == k1 {
            return Ok(0);
        }
        let (lo, hi) = sel[a].bbox(k0, k1);
        start[a] = lo;
        shape[a] = hi - lo;
        ks[a] = (k0, k1);
    }
    let region = Region::new(start, shape);
    let data: Vec<T> = arr.read_region(&region, threads)?;
    let st = strides(&region.shape);
    // per kept axis: (offset of the element in the data, its bin relative to the box)
    let mut origin = vec![];
    let mut bshape = vec![];
    let mut lists: Vec<Vec<(usize, usize)>> = vec![];
    for (&a, ax) in kept.iter().zip(axes) {
        let (k0, k1) = ks[a];
        let b0 = ax.bin_of(k0);
        origin.push(b0);
        bshape.push(ax.bin_of(k1 - 1) - b0 + 1);
        lists.push(
            (k0..k1)
                .map(|k| (((sel[a].at(k) - region.start[a]) * st[a]) as usize, (ax.bin_of(k) - b0) as usize))
                .collect(),
        );
    }
    let mut part = vec![Cell::default(); bshape.iter().product::<u64>() as usize];
    match lists.as_slice() {
        [l] => {
            for &(o, b) in l {
                part[b].push(data[o].to_f64());
            }
        }
        [rows, cols] => {
            let w = bshape[1] as usize;
            for &(o0, b0) in rows {
                let row = &mut part[b0 * w..(b0 + 1) * w];
                for &(o1, b1) in cols {
                    row[b1].push(data[o0 + o1].to_f64());
                }
            }
        }
        _ => return Err(Error::Internal("plot: one or two kept axes expected".into())),
    }
    let read = lists.iter().map(|l| l.len() as u64).product();
    out.lock().unwrap_or_else(|p| p.into_inner()).merge_box(&origin, &bshape, &part);
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::slice::{normalize, parse};

    fn sel(text: &str, shape: &[u64]) -> Vec<AxisSel> {
        normalize(&parse(text).unwrap_or_default(), shape).unwrap_or_default()
    }

    #[test]
    fn selected_elements_of_a_chunk_follow_the_step() {
        let n = 30;
        for text in ["::1", "::2", "3::7", "::-1", "::-4", "25:2:-3", "5", "-1", "29:", "::100", "::-100"] {
            let s = sel(text, &[n])[0];
            for chunk in [1, 4, 7, 30] {
                let mut seen = vec![];
                for c0 in (0..n).step_by(chunk) {
                    let c1 = (c0 + chunk as u64).min(n);
                    let (k0, k1) = selected_in(&s, c0, c1);
                    for k in k0..k1 {
                        let p = s.at(k);
                        assert!(p >= c0 && p < c1, "{text} chunk {c0}..{c1}: k {k} at {p}");
                        seen.push(k);
                    }
                }
                seen.sort();
                assert_eq!(seen, (0..s.len).collect::<Vec<_>>(), "{text} chunks of {chunk}");
            }
        }
    }

    /// A ramp 0, 1, 2, … binned: each bin's minimum and maximum are the ends of its run of
    /// elements, its mean their midpoint, whatever the chunks and the threads.
    #[test]
    fn a_ramp_bins_to_the_ends_of_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ramp.zarr");
        std::fs::create_dir(&path).unwrap();
        let n = 1000u64;
        let spec = crate::store::CreateSpec {
            shape: vec![n],
            chunks: vec![37],
            shard: None,
            dtype: crate::dtype::DType::Int32,
            fill: crate::dtype::Scalar::Int(0),
            codec: crate::store::CodecSpec::default(),
            dimension_names: None,
            zarr_format: 3,
            attributes: Default::default(),
            half: false,
            complex: false,
            fill_im: 0.0,
        };
        let arr = crate::store::create(&path, &spec).unwrap();
        let grid = arr.grid();
        for t in 0..grid.nchunks() {
            let idx = grid.chunk_index(t);
            let r = grid.chunk_region(&idx);
            let v: Vec<i32> = (r.start[0]..r.end(0)).map(|i| i as i32).collect();
            arr.write_chunk(&idx, &v, 1).unwrap();
        }
        let arr = ZArray::open(&path).unwrap();
        for workers in [1, 4] {
            let opts = RunOptions { workers, memory: 1 << 20 };
            let b = reduce(&arr, &sel(":", &[n]), &[7], &opts, &super::super::NoEvents, "plot").unwrap();
            assert_eq!(b.axes[0].bins, 7);
            for (i, c) in b.cells.iter().enumerate() {
                let (k0, k1) = b.axes[0].elements(i as u64);
                assert_eq!((c.min, c.max, c.finite), (k0 as f64, (k1 - 1) as f64, k1 - k0));
                assert_eq!(c.mean(), Some((k0 + k1 - 1) as f64 / 2.0));
            }
            // reversed with a step: bins follow the selection, not the array
            let b = reduce(&arr, &sel("::-3", &[n]), &[5], &opts, &super::super::NoEvents, "plot").unwrap();
            let s = sel("::-3", &[n])[0];
            for (i, c) in b.cells.iter().enumerate() {
                let (k0, k1) = b.axes[0].elements(i as u64);
                assert_eq!((c.max, c.min), (s.at(k0) as f64, s.at(k1 - 1) as f64));
            }
        }
    }

    /// The reducer against a direct computation: an arange-like ramp in a temporary array, read
    /// with ragged chunks, steps and negative steps, on several threads and under a small bound.
    #[test]
    fn streamed_bins_equal_a_direct_computation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.zarr");
        std::fs::create_dir(&path).unwrap();
        let shape = vec![37u64, 23];
        let spec = crate::store::CreateSpec {
            shape: shape.clone(),
            chunks: vec![5, 4],
            shard: None,
            dtype: crate::dtype::DType::Float64,
            fill: crate::dtype::Scalar::Float(0.0),
            codec: crate::store::CodecSpec::default(),
            dimension_names: None,
            zarr_format: 3,
            attributes: Default::default(),
            half: false,
            complex: false,
            fill_im: 0.0,
        };
        let arr = crate::store::create(&path, &spec).unwrap();
        let value = |i: u64, j: u64| ((i * 23 + j) as f64 * 0.37).sin() * (i as f64 + 1.0);
        let grid = arr.grid();
        for t in 0..grid.nchunks() {
            let idx = grid.chunk_index(t);
            let r = grid.chunk_region(&idx);
            let mut v = vec![];
            for i in r.start[0]..r.end(0) {
                for j in r.start[1]..r.end(1) {
                    v.push(value(i, j));
                }
            }
            arr.write_chunk(&idx, &v, 1).unwrap();
        }
        let arr = ZArray::open(&path).unwrap();
        for (text, max) in [
            ("3, :", vec![5]),
            (":, -2", vec![4]),
            ("::-1, 7", vec![37]),
            ("2:35:3, ::-2", vec![4, 5]),
            ("::-3, 1::4", vec![100, 100]),
            (":, :", vec![7, 6]),
        ] {
            let s = sel(text, &shape);
            for (workers, memory) in [(1, 1 << 20), (3, 1 << 20), (2, 7000)] {
                let opts = RunOptions { workers, memory };
                let got = reduce(&arr, &s, &max, &opts, &super::super::NoEvents, "plot").unwrap();
                let kept: Vec<usize> = (0..2).filter(|&a| s[a].keep).collect();
                let mut want = Bins::new(got.axes.clone());
                let at = |k: &[u64]| -> (u64, u64) {
                    let mut pos = [0, 0];
                    let mut ki = 0;
                    for a in 0..2 {
                        pos[a] = if s[a].keep {
                            ki += 1;
                            s[a].at(k[ki - 1])
                        } else {
                            s[a].start
                        };
                    }
                    (pos[0], pos[1])
                };
                let lens: Vec<u64> = kept.iter().map(|&a| s[a].len).collect();
                let n: u64 = lens.iter().product();
                for lin in 0..n {
                    let k = unravel(lin, &lens);
                    let (i, j) = at(&k);
                    let b: Vec<u64> = k.iter().zip(&want.axes).map(|(&k, ax)| ax.bin_of(k)).collect();
                    let cell = if b.len() == 2 { b[0] * want.axes[1].bins + b[1] } else { b[0] };
                    want.cells[cell as usize].push(value(i, j));
                }
                for (g, w) in got.cells.iter().zip(&want.cells) {
                    assert_eq!((g.min, g.max, g.finite), (w.min, w.max, w.finite), "{text}");
                    assert!((g.sum - w.sum).abs() <= 1e-9 * w.sum.abs().max(1.0), "{text}");
                }
            }
        }
        // a bound below one chunk is refused with the bound that fits
        let e = reduce(
            &arr,
            &sel(":, :", &shape),
            &[5, 5],
            &RunOptions { workers: 1, memory: 100 },
            &super::super::NoEvents,
            "plot",
        );
        assert!(matches!(e, Err(Error::Budget { .. })));
    }
}
