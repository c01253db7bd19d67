//! The tasks of every kind of stage of a physical plan: what task `t` of a stage reads, computes
//! and writes. A [`StageRun`] holds what a stage's tasks share in one process (open arrays, the
//! in-memory partials of a reduction); the same code runs a task in the parent (sync and threads
//! schedulers) and in a `dsk worker` child (processes).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use ndarray::{ArrayD, IxDyn};

use super::evaluate::{into_elems, load_chunk, Evaluator};
use crate::dtype::{DType, Elem};
use crate::error::{Error, Result};
use crate::grid::{Grid, Region};
use crate::kernels::buf::{Buf, BufElem};
use crate::kernels::elementwise::NumElem;
use crate::kernels::reduce::{self, Partial, ReduceOp};
use crate::plan::lower::{self, footprint, leaf_grid};
use crate::plan::physical::{
    FileSource, FinalizeSpec, Groups, PartialStore, PartialTask, PartialsSpec, PhysicalPlan, StageOp,
};
use crate::plan::{fold, NodeKind, Plan};
use crate::store::npy::RawSource;
use crate::store::ZArray;
use crate::{with_buf, with_dtype};

/// The in-memory partials of a reduction, keyed by (block, partial number).
#[derive(Default)]
pub struct MemPartials {
    map: Mutex<HashMap<(u64, u64), Partial>>,
}

impl MemPartials {
    fn put(&self, block: u64, g: u64, p: Partial) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).insert((block, g), p);
    }

    fn take(&self, block: u64, g: u64) -> Result<Partial> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(block, g))
            .ok_or_else(|| Error::Internal(format!("partial {g} of block {block} is missing")))
    }
}

/// What the tasks of a run share in one process.
pub struct Shared<'a> {
    /// The plan's inputs, opened.
    pub inputs: &'a [ZArray],
    /// The plan's arrays (its output, intermediates and spills), opened.
    pub arrays: &'a [ZArray],
    /// In-memory partials, by the index of the stage that computes them.
    pub partials: &'a HashMap<usize, MemPartials>,
}

/// A file opened for an import stage, with the bands of it still being read.
pub enum Opened {
    None,
    File(RawSource, Release),
}

/// Open what a stage's tasks read besides arrays (an import's file).
pub fn open_stage(op: &StageOp, arrays: &[ZArray]) -> Result<Opened> {
    Ok(match op {
        StageOp::Import { file, out } => {
            let src = open_file(file)?;
            let release = Release::new(&src, &arrays[*out].grid());
            Opened::File(src, release)
        }
        _ => Opened::None,
    })
}

/// For files read through a memory map: once every chunk of a band (the chunks sharing an index
/// along the file's slowest axis) is written, the band's pages are dropped from the resident set,
/// so importing a file larger than RAM does not grow this process.
pub struct Release {
    left: Vec<std::sync::atomic::AtomicU64>,
    axis: usize,
}

impl Release {
    fn new(src: &RawSource, grid: &Grid) -> Release {
        let (axis, n, per) = if grid.ndim() > 0 {
            let axis = if src.fortran_order { grid.ndim() - 1 } else { 0 };
            let g = grid.grid_shape();
            (axis, g[axis], g.iter().product::<u64>() / g[axis].max(1))
        } else {
            (0, 0, 0)
        };
        Release { left: (0..n).map(|_| std::sync::atomic::AtomicU64::new(per)).collect(), axis }
    }

    fn done(&self, src: &RawSource, grid: &Grid, idx: &[u64]) {
        let Some(left) = idx.get(self.axis).and_then(|&i| self.left.get(i as usize)) else {
            return;
        };
        if left.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            // the band covers elements [lo, hi) of the file's flat order
            let band = grid.chunk_region(idx);
            let per_index: u64 =
                grid.shape.iter().enumerate().filter(|(a, _)| *a != self.axis).map(|(_, &s)| s).product();
            src.release(band.start[self.axis] * per_index, band.end(self.axis) * per_index);
        }
    }
}

fn open_file(f: &FileSource) -> Result<RawSource> {
    if f.npy {
        RawSource::open_npy(&f.path)
    } else {
        RawSource::open_raw(&f.path, f.dtype, f.shape.clone(), f.big_endian)
    }
}

/// The arrays an expression's `Temp` leaves read.
fn temps<'a>(plan: &Plan, sh: &'a Shared<'_>) -> Result<Vec<&'a ZArray>> {
    plan.temps
        .iter()
        .map(|t| sh.arrays.get(t.array).ok_or_else(|| Error::Internal(format!("array {} is missing", t.array))))
        .collect()
}

/// Run task `t` of stage `stage` of `plan`; returns the logical bytes it processed.
pub fn run_task(
    plan: &PhysicalPlan,
    stage: usize,
    t: u64,
    sh: &Shared<'_>,
    opened: &Opened,
    codec_threads: usize,
) -> Result<u64> {
    match &plan.stages[stage].op {
        StageOp::Compute { expr, out, groups, inner } => {
            compute(expr, &sh.arrays[*out], groups, *inner, t, sh, codec_threads)
        }
        StageOp::Import { out, .. } => {
            let Opened::File(src, release) = opened else {
                return Err(Error::Internal("import without its file".into()));
            };
            import(src, release, &sh.arrays[*out], t, codec_threads)
        }
        StageOp::Partials(p) => partials(stage, p, t, sh, codec_threads),
        StageOp::Finalize(f) => match &plan.stages.get(f.partials).map(|s| &s.op) {
            Some(StageOp::Partials(spec)) => finalize(f, spec, t, sh),
            _ => Err(Error::Internal("a finalize stage without its partials stage".into())),
        },
        StageOp::ScanTotals { expr, axis, prod, grid, totals } => {
            scan_totals(expr, *axis, *prod, grid, &sh.arrays[*totals], t, sh, codec_threads)
        }
        StageOp::ScanCarries { axis, prod, grid, totals, carries } => {
            scan_carries(*axis, *prod, grid, &sh.arrays[*totals], &sh.arrays[*carries], t)
        }
        StageOp::ScanApply { expr, axis, prod, grid, carries, out } => {
            scan_apply(expr, *axis, *prod, grid, &sh.arrays[*carries], &sh.arrays[*out], t, sh, codec_threads)
        }
        StageOp::Export { .. } => Err(Error::Internal("an export runs as a whole, not by task".into())),
    }
}

fn compute(
    plan: &Plan,
    out: &ZArray,
    groups: &Groups,
    inner: usize,
    t: u64,
    sh: &Shared<'_>,
    codec_threads: usize,
) -> Result<u64> {
    let grid = out.grid();
    let dtype = out.dtype();
    let item = dtype.size() as u64;
    let group = groups.chunks(t);
    let tmp = temps(plan, sh)?;
    // a generator alone fills the chunk directly (create)
    if let NodeKind::Gen { gen } = &plan.root().kind {
        let root = plan.root();
        let mut bytes = 0;
        for &c in &group {
            let idx = grid.chunk_index(c);
            let region = grid.chunk_region(&idx);
            with_dtype!(root.dtype, T => {
                if T::DTYPE == dtype {
                    out.write_chunk_by::<T>(&idx, codec_threads, &mut |r| {
                        let mut v = vec![T::default(); r.len() as usize];
                        gen.fill(&root.shape, r, &mut v);
                        Ok(v)
                    })?;
                } else {
                    with_dtype!(dtype, U => {
                        out.write_chunk_by::<U>(&idx, codec_threads, &mut |r| {
                            let mut v = vec![T::default(); r.len() as usize];
                            gen.fill(&root.shape, r, &mut v);
                            Ok(v.iter().map(|x| x.cast::<U>()).collect())
                        })?;
                    });
                }
            });
            bytes += region.len() * item;
        }
        return Ok(bytes);
    }
    let one = |ev: &mut Evaluator<'_>, c: u64, threads: usize| -> Result<u64> {
        let idx = grid.chunk_index(c);
        let region = grid.chunk_region(&idx);
        let Some(parts) = out.inner_regions(&idx) else {
            let b = ev.root_region(&region)?;
            with_dtype!(dtype, T => {
                let v = into_elems::<T>(b)?;
                out.write_chunk(&idx, &v, threads)?;
            });
            return Ok(region.len() * item);
        };
        // a shard dsk writes itself is made one inner chunk at a time, each source chunk
        // forgotten once no inner chunk left needs it: the task holds one inner chunk's sources
        let needs: Vec<Vec<(usize, u64)>> = parts.iter().map(|p| footprint(plan, p)).collect();
        let mut uses: HashMap<(usize, u64), usize> = HashMap::new();
        for k in needs.iter().flatten() {
            *uses.entry(*k).or_default() += 1;
        }
        with_dtype!(dtype, T => {
            out.write_chunk_by::<T>(&idx, threads, &mut |r| {
                let v = into_elems::<T>(ev.root_region(r)?)?;
                ev.clear_memo();
                for k in parts.iter().position(|p| p == r).map(|i| &needs[i]).into_iter().flatten() {
                    if let Some(n) = uses.get_mut(k) {
                        *n -= 1;
                        if *n == 0 {
                            ev.forget_chunk(k);
                        }
                    }
                }
                Ok(v)
            })?;
        });
        Ok(region.len() * item)
    };
    if inner > 1 && group.len() > 1 {
        use rayon::prelude::*;
        let mut keys: Vec<(usize, u64)> = vec![];
        let mut seen = HashSet::new();
        for &c in &group {
            for k in footprint(plan, &grid.chunk_region(&grid.chunk_index(c))) {
                // (generators fill each tile where it is used)
                if matches!(plan.nodes[k.0].kind, NodeKind::Gen { .. }) {
                    continue;
                }
                if seen.insert(k) {
                    keys.push(k);
                }
            }
        }
        let decoded: Vec<((usize, u64), Buf)> = keys
            .par_iter()
            .map(|&(leaf, lin)| {
                if super::interrupted() {
                    return Err(Error::Interrupted);
                }
                let g = leaf_grid(plan, leaf).ok_or_else(|| Error::Internal("source chunk without a grid".into()))?;
                Ok(((leaf, lin), load_chunk(plan, sh.inputs, &tmp, leaf, &g, lin, 1)?))
            })
            .collect::<Result<_>>()?;
        let cache: HashMap<(usize, u64), Buf> = decoded.into_iter().collect();
        return group
            .par_iter()
            .map(|&c| {
                if super::interrupted() {
                    return Err(Error::Interrupted);
                }
                let mut ev = Evaluator::with_chunks(plan, sh.inputs, &tmp, 1, cache.clone());
                one(&mut ev, c, 1)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b));
    }
    let mut ev = Evaluator::new(plan, sh.inputs, &tmp, codec_threads);
    let mut bytes = 0;
    for &c in &group {
        if super::interrupted() {
            return Err(Error::Interrupted);
        }
        bytes += one(&mut ev, c, codec_threads)?;
    }
    Ok(bytes)
}

fn import(src: &RawSource, release: &Release, out: &ZArray, t: u64, codec_threads: usize) -> Result<u64> {
    let grid = out.grid();
    let idx = grid.chunk_index(t);
    let region = grid.chunk_region(&idx);
    with_dtype!(out.dtype(), T => {
        let mut buf = vec![T::default(); region.len() as usize];
        src.read_region::<T>(&region, &mut buf)?;
        out.write_chunk(&idx, &buf, codec_threads)?;
    });
    release.done(src, &grid, &idx);
    Ok(region.len() * out.dtype().size() as u64)
}

/// Merges partials in a tree of fan-in `split`, in order, as they arrive: the same merges, in the
/// same order, whatever the scheduler (so float results are identical).
struct TreeFold {
    op: ReduceOp,
    input: DType,
    split: usize,
    levels: Vec<Vec<Partial>>,
}

impl TreeFold {
    fn new(op: ReduceOp, input: DType, split: u64) -> TreeFold {
        TreeFold { op, input, split: split.max(2) as usize, levels: vec![] }
    }

    fn merge(&self, items: Vec<Partial>) -> Result<Partial> {
        let mut it = items.into_iter();
        let mut acc = it.next().ok_or_else(|| Error::Internal("merging no partials".into()))?;
        for p in it {
            reduce::combine(self.op, self.input, &mut acc, &p).map_err(Error::Internal)?;
        }
        Ok(acc)
    }

    fn push(&mut self, p: Partial) -> Result<()> {
        let mut item = p;
        let mut k = 0;
        loop {
            if self.levels.len() <= k {
                self.levels.push(vec![]);
            }
            self.levels[k].push(item);
            if self.levels[k].len() < self.split {
                return Ok(());
            }
            let full = std::mem::take(&mut self.levels[k]);
            item = self.merge(full)?;
            k += 1;
        }
    }

    fn finish(mut self) -> Result<Option<Partial>> {
        let mut carry: Option<Partial> = None;
        for k in 0..self.levels.len() {
            let mut items = std::mem::take(&mut self.levels[k]);
            if let Some(c) = carry.take() {
                items.push(c);
            }
            carry = match items.len() {
                0 => None,
                1 => items.pop(),
                _ => Some(self.merge(items)?),
            };
        }
        Ok(carry)
    }
}

/// Fold the input chunks of a partials task into one partial of its block: every reduction of
/// the stage from the same tiles (each evaluated once), their components one after the other.
fn fold_chunks(
    spec: &PartialsSpec,
    task: &PartialTask,
    sh: &Shared<'_>,
    codec_threads: usize,
) -> Result<(Partial, u64)> {
    let plan = &spec.expr;
    let (axes, in_grid, out_grid) = (&spec.axes, &spec.in_grid, &spec.out_grid);
    let tmp = temps(plan, sh)?;
    let kept: Vec<usize> = (0..in_grid.ndim()).filter(|x| !axes.contains(x)).collect();
    let block_region = out_grid.chunk_region(&out_grid.chunk_index(task.block));
    let bshape: Vec<usize> = block_region.shape.iter().map(|&s| s as usize).collect();
    let split = spec.per_task.clamp(2, crate::plan::planner::DEFAULT_SPLIT);
    let mut trees: Vec<TreeFold> = spec.reds.iter().map(|r| TreeFold::new(r.op, r.input, split)).collect();
    let mut ev = Evaluator::new(plan, sh.inputs, &tmp, codec_threads);
    let mut bytes = 0;
    let axis0_kept = kept.first() == Some(&0);
    let feet: Vec<Vec<(usize, u64)>> =
        task.chunks.iter().map(|&c| footprint(plan, &in_grid.chunk_region(&in_grid.chunk_index(c)))).collect();
    for (pos, &c) in task.chunks.iter().enumerate() {
        if super::interrupted() {
            return Err(Error::Interrupted);
        }
        // keep only the source chunks that this and the remaining chunks of the task still need
        let live: HashSet<(usize, u64)> = feet[pos..].iter().flatten().copied().collect();
        ev.retain_chunks(&live);
        let region = in_grid.chunk_region(&in_grid.chunk_index(c));
        bytes += region.len() * spec.reds.iter().map(|r| r.input.size() as u64).max().unwrap_or(0);
        // the chunk's partial, from its tiles: tiles split axis 0, so when axis 0 is kept they fill
        // disjoint rows of it, else each folds into all of it
        let mut cps: Vec<Partial> = spec.reds.iter().map(|r| reduce::empty_partial(r.op, r.input, &bshape)).collect();
        let rows = lower::tile_rows(&region.shape);
        let n0 = region.shape.first().copied().unwrap_or(1);
        let mut r0 = 0;
        let mut first = true;
        loop {
            let mut tile = region.clone();
            if tile.ndim() > 0 {
                tile.start[0] += r0;
                tile.shape[0] = rows.min(n0 - r0);
            }
            let tshape: Vec<usize> = tile.shape.iter().map(|&s| s as usize).collect();
            let offset: Vec<usize> =
                kept.iter().enumerate().map(|(i, &ax)| (tile.start[ax] - block_region.start[i]) as usize).collect();
            for (red, cp) in spec.reds.iter().zip(cps.iter_mut()) {
                // a constant tile (never-written chunks, constants) in closed form where that is exact
                let folded = ev
                    .constant(red.root, &tile)
                    .and_then(|c| fold::tile_partial(red.op, red.input, c, &tshape, axes, &tile.start, &in_grid.shape));
                let p = match folded {
                    Some(p) => p,
                    None => {
                        // (the tile's values stay memoised for the stage's other reductions)
                        let b = ev.eval(red.root, &tile)?;
                        with_dtype!(red.input, T => tile_partial::<T>(red.op, &b, &tshape, axes, &tile.start, &in_grid.shape)?)
                    }
                };
                reduce::merge_into(red.op, red.input, cp, &p, &offset, axis0_kept || first).map_err(Error::Internal)?;
            }
            ev.clear_memo();
            first = false;
            if tile.ndim() == 0 {
                break;
            }
            r0 += tile.shape[0];
            if r0 >= n0 {
                break;
            }
        }
        for (tree, cp) in trees.iter_mut().zip(cps) {
            tree.push(cp)?;
        }
    }
    let mut comps = vec![];
    for tree in trees {
        let p = tree.finish()?.ok_or_else(|| Error::Internal("a reduction task without chunks".into()))?;
        comps.extend(p.comps);
    }
    Ok((Partial { comps }, bytes))
}

fn tile_partial<T: NumElem>(
    op: ReduceOp,
    b: &Buf,
    shape: &[usize],
    axes: &[usize],
    start: &[u64],
    gshape: &[u64],
) -> Result<Partial> {
    let a = T::view(b).ok_or_else(|| Error::Internal("tile dtype".into()))?;
    let v = a.broadcast(IxDyn(shape)).ok_or_else(|| Error::Internal("tile shape".into()))?;
    Ok(reduce::reduce_tile::<T>(op, &v, axes, start, gshape))
}

/// The region of partial `g` of block `block` in a spill array.
fn spill_region(out_grid: &Grid, block: u64, g: u64) -> (Region, Vec<u64>) {
    let r = out_grid.chunk_region(&out_grid.chunk_index(block));
    let mut start = vec![g];
    start.extend_from_slice(&r.start);
    let mut shape = vec![1];
    shape.extend_from_slice(&r.shape);
    let mut idx = vec![g];
    idx.extend(out_grid.chunk_index(block));
    (Region::new(start, shape), idx)
}

fn partials(stage: usize, spec: &PartialsSpec, t: u64, sh: &Shared<'_>, codec_threads: usize) -> Result<u64> {
    let task = spec.task(t);
    if task.chunks.is_empty() {
        return Ok(0);
    }
    let (p, bytes) = fold_chunks(spec, &task, sh, codec_threads)?;
    match &spec.store {
        PartialStore::Memory { .. } => {
            let m = sh.partials.get(&stage).ok_or_else(|| Error::Internal("in-memory partials are missing".into()))?;
            m.put(task.block, task.g, p);
        }
        PartialStore::Disk { arrays } => {
            let (_, idx) = spill_region(&spec.out_grid, task.block, task.g);
            for (&a, c) in arrays.iter().zip(p.comps) {
                with_buf!(c, T, x => {
                    let v: Vec<T> = x.iter().copied().collect();
                    sh.arrays[a].write_chunk(&idx, &v, 1)?;
                });
            }
        }
    }
    Ok(bytes)
}

fn take_partial(spec: &PartialsSpec, stage: usize, block: u64, g: u64, sh: &Shared<'_>) -> Result<Partial> {
    match &spec.store {
        PartialStore::Memory { .. } => sh
            .partials
            .get(&stage)
            .ok_or_else(|| Error::Internal("in-memory partials are missing".into()))?
            .take(block, g),
        PartialStore::Disk { arrays } => {
            let (region, _) = spill_region(&spec.out_grid, block, g);
            let bshape: Vec<usize> = region.shape[1..].iter().map(|&s| s as usize).collect();
            let mut comps = vec![];
            for &a in arrays {
                let z = &sh.arrays[a];
                comps.push(with_dtype!(z.dtype(), T => Buf::from_vec(&bshape, z.read_region::<T>(&region, 1)?)));
            }
            Ok(Partial { comps })
        }
    }
}

/// Task `b` of a finalize stage: merge block `b`'s partials and write the block of each result.
fn finalize(f: &FinalizeSpec, spec: &PartialsSpec, b: u64, sh: &Shared<'_>) -> Result<u64> {
    let count = spec.count(b);
    let out_grid = &spec.out_grid;
    if f.outs.len() != spec.reds.len() {
        return Err(Error::Internal("a finalize stage whose results do not match its reductions".into()));
    }
    let merged: Vec<Partial> = if count == 0 {
        // nothing to reduce (a zero-length reduced axis): the identity state
        let r = out_grid.chunk_region(&out_grid.chunk_index(b));
        let kept: Vec<usize> = (0..f.nd).filter(|x| !f.axes.contains(x)).collect();
        let mut shape: Vec<usize> = vec![0; f.nd];
        for (i, &k) in kept.iter().enumerate() {
            shape[k] = r.shape[i] as usize;
        }
        let in_shape = &spec.in_grid.shape;
        spec.reds
            .iter()
            .map(|red| {
                with_dtype!(red.input, T => {
                    let empty = ArrayD::<T>::from_elem(IxDyn(&shape), T::default());
                    reduce::reduce_tile::<T>(red.op, &empty.view(), &f.axes, &vec![0; f.nd], in_shape)
                })
            })
            .collect()
    } else {
        let mut trees: Vec<TreeFold> = spec.reds.iter().map(|r| TreeFold::new(r.op, r.input, f.split)).collect();
        for g in 0..count {
            let mut p = take_partial(spec, f.partials, b, g, sh)?;
            if p.comps.len() != spec.state_dtypes().len() {
                return Err(Error::Internal(format!("partial {g} of block {b} has the wrong components")));
            }
            for (k, tree) in trees.iter_mut().enumerate().rev() {
                let comps = p.comps.split_off(spec.comps_of(k).start);
                tree.push(Partial { comps })?;
            }
        }
        trees
            .into_iter()
            .map(|t| t.finish()?.ok_or_else(|| Error::Internal(format!("block {b} has no partials"))))
            .collect::<Result<_>>()?
    };
    let region = out_grid.chunk_region(&out_grid.chunk_index(b));
    let mut written = 0;
    for ((red, o), p) in spec.reds.iter().zip(&f.outs).zip(merged) {
        let v = reduce::finalize(red.op, red.input, &p, o.ddof).map_err(Error::Internal)?;
        let out = &sh.arrays[o.out];
        // with keepdims, the reduced axes come back as length-1 axes
        let start: Vec<u64> = if o.keepdims {
            let mut st = vec![];
            let mut k = 0;
            for i in 0..f.nd {
                if f.axes.contains(&i) {
                    st.push(0);
                } else {
                    st.push(region.start[k]);
                    k += 1;
                }
            }
            st
        } else {
            region.start.clone()
        };
        let idx = out.grid().chunk_index_of(&start);
        let v = v.cast(out.dtype());
        with_buf!(v, T, a => {
            let data: Vec<T> = a.iter().copied().collect();
            out.write_chunk(&idx, &data, 1)?;
        });
        written += region.len() * out.dtype().size() as u64;
    }
    Ok(written)
}

/// Evaluate chunk `t` of `grid` through `plan`, cast to `dtype`.
fn eval_chunk(
    plan: &Plan,
    grid: &Grid,
    t: u64,
    dtype: DType,
    sh: &Shared<'_>,
    threads: usize,
) -> Result<(Region, Buf)> {
    let tmp = temps(plan, sh)?;
    let region = grid.chunk_region(&grid.chunk_index(t));
    let mut ev = Evaluator::new(plan, sh.inputs, &tmp, threads);
    let b = ev.root_region(&region)?.cast(dtype);
    Ok((region, b))
}

/// Chunk `idx` of the totals/carries arrays for input chunk `idx` (its index along the axis).
fn cross_region(grid: &Grid, idx: &[u64], axis: usize) -> Region {
    let r = grid.chunk_region(idx);
    let mut start = r.start.clone();
    let mut shape = r.shape.clone();
    start[axis] = idx[axis];
    shape[axis] = 1;
    Region::new(start, shape)
}

#[allow(clippy::too_many_arguments)]
fn scan_totals(
    plan: &Plan,
    axis: usize,
    prod: bool,
    grid: &Grid,
    totals: &ZArray,
    t: u64,
    sh: &Shared<'_>,
    threads: usize,
) -> Result<u64> {
    let dtype = totals.dtype();
    let (region, b) = eval_chunk(plan, grid, t, dtype, sh, threads)?;
    let idx = grid.chunk_index(t);
    let cross = cross_region(grid, &idx, axis);
    with_dtype!(dtype, T => {
        let x = T::view(&b).ok_or_else(|| Error::Internal("scan dtype".into()))?;
        // the last element of the chunk's own scan: from its first slice on, as NumPy's cumsum runs
        // (an identity of +0.0 would turn a sum of -0.0 into +0.0)
        let mut lanes = x.axis_iter(ndarray::Axis(axis));
        let mut tot = match lanes.next() {
            Some(first) => first.to_owned(),
            None => return Err(Error::Internal("a scan chunk with no elements along its axis".into())),
        };
        for lane in lanes {
            tot.zip_mut_with(&lane, |a, &v| *a = if prod { T::mul(*a, v) } else { T::add(*a, v) });
        }
        let v: Vec<T> = tot.iter().copied().collect();
        totals.write_chunk(&totals.grid().chunk_index_of(&cross.start), &v, 1)?;
    });
    Ok(region.len() * plan.root().dtype.size() as u64)
}

fn scan_carries(axis: usize, prod: bool, grid: &Grid, totals: &ZArray, carries: &ZArray, column: u64) -> Result<u64> {
    let dtype = totals.dtype();
    let gshape = grid.grid_shape();
    // the column's first chunk: `column` enumerates the chunk grid without the scanned axis
    let mut others = gshape.clone();
    others[axis] = 1;
    let mut idx = crate::grid::unravel(column, &others);
    let mut bytes = 0;
    with_dtype!(dtype, T => {
        let mut running: Option<Vec<T>> = None;
        for k in 0..gshape[axis] {
            if super::interrupted() {
                return Err(Error::Interrupted);
            }
            idx[axis] = k;
            let cross = cross_region(grid, &idx, axis);
            let cidx = carries.grid().chunk_index_of(&cross.start);
            let n = cross.len() as usize;
            // the first chunk has no carry (what is written is never read)
            let identity = if prod { T::from_i64(1) } else { T::default() };
            let carry = running.clone().unwrap_or_else(|| vec![identity; n]);
            carries.write_chunk(&cidx, &carry, 1)?;
            let tot: Vec<T> = totals.read_region::<T>(&cross, 1)?;
            running = Some(match running {
                None => tot,
                Some(r) => r.iter().zip(&tot).map(|(&a, &b)| if prod { T::mul(a, b) } else { T::add(a, b) }).collect(),
            });
            bytes += cross.len() * dtype.size() as u64;
        }
    });
    Ok(bytes)
}

#[allow(clippy::too_many_arguments)]
fn scan_apply(
    plan: &Plan,
    axis: usize,
    prod: bool,
    grid: &Grid,
    carries: &ZArray,
    out: &ZArray,
    t: u64,
    sh: &Shared<'_>,
    threads: usize,
) -> Result<u64> {
    let dtype = out.dtype();
    let (region, b) = eval_chunk(plan, grid, t, dtype, sh, threads)?;
    let idx = grid.chunk_index(t);
    let cross = cross_region(grid, &idx, axis);
    with_dtype!(dtype, T => {
        let x = T::view(&b).ok_or_else(|| Error::Internal("scan dtype".into()))?;
        let carry = if idx[axis] > 0 {
            let c: Vec<T> = carries.read_region::<T>(&cross, 1)?;
            let cshape: Vec<usize> = cross.shape.iter().enumerate().filter(|(a, _)| *a != axis).map(|(_, &s)| s as usize).collect();
            Some(ArrayD::from_shape_vec(IxDyn(&cshape), c).map_err(|e| Error::Internal(format!("carry: {e}")))?)
        } else {
            None
        };
        let cv = carry.as_ref().map(|c| c.view());
        let s = reduce::scan::<T>(&x.view(), axis, prod, cv.as_ref());
        let v: Vec<T> = s.iter().copied().collect();
        out.write_chunk(&out.grid().chunk_index_of(&region.start), &v, threads)?;
    });
    Ok(region.len() * plan.root().dtype.size() as u64)
}
