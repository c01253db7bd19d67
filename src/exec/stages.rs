//! Stage boundaries: reductions and scans are computed before the stage that reads them, into
//! intermediates (memory, or a Zarr array in the work dir) that the next stage reads as leaves.
//!
//! A reduction is a tree:
//! 1. *partials*: tasks of at most `split_every` input chunks of one output block each evaluate the
//!    fused upstream expression over their chunks, tile by tile, and fold every tile into the
//!    block's partial state (chunks needing the same source chunks, such as mirrors, share a task);
//! 2. *combine*: rounds merging `split_every` partials of a block at a time, until one is left;
//! 3. *finalize*: the state becomes the result (mean = sum / count, var = M2 / (n − ddof), …).
//!
//! Partials stay in memory while they fit a quarter of `--memory`; past that, and always under the
//! processes scheduler, they are spilled to uncompressed Zarr arrays in the work dir (one per state
//! component, a chunk per partial), which are deleted as soon as the next round has read them.
//!
//! A scan (cumsum, cumprod) takes two passes: the totals of every chunk along the axis, then each
//! chunk scanned from the carried total of the chunks before it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{ArrayD, IxDyn};

use super::evaluate::{Evaluator, TempData};
use super::job::{self, open_sources, Scheduler};
use super::workdir::WorkDir;
use super::{admissible, run_stage, EventSink, RunOptions, Stage, TaskCtx};
use crate::dtype::{DType, Scalar};
use crate::error::{human, Error, Result};
use crate::grid::{tuple, Grid, Region};
use crate::kernels::buf::{Buf, BufElem};
use crate::kernels::elementwise::NumElem;
use crate::kernels::reduce::{self, Partial, ReduceOp};
use crate::plan::lower::{self, footprint, group_by_footprint};
use crate::plan::{Node, NodeKind, Plan, TempInfo};
use crate::store::{self, CodecSpec, CreateSpec, ZArray};
use crate::{with_buf, with_dtype};

/// How boundary stages run.
pub struct StageCtx<'a> {
    pub opts: RunOptions,
    pub scheduler: Scheduler,
    pub sink: &'a dyn EventSink,
    pub work: &'a WorkDir,
    pub split_every: Option<usize>,
    /// When set, describe the stages here instead of running them.
    pub explain: Option<String>,
}

/// Compute every reduction and scan of `plan`, innermost first. Returns the plan with those nodes
/// replaced by `Temp` leaves, and the intermediates' data.
pub fn materialize(mut plan: Plan, ctx: &mut StageCtx<'_>) -> Result<(Plan, Vec<TempData>)> {
    let mut order = vec![];
    post_order(&plan, plan.root, &mut vec![false; plan.nodes.len()], &mut order);
    let mut temps: Vec<TempData> = vec![];
    let mut n_stage = 0;
    for id in order {
        let node = plan.nodes[id].clone();
        let (arg, data) = match &node.kind {
            NodeKind::Reduce { arg, op, axes, keepdims, ddof } => {
                n_stage += 1;
                let sub = Plan { root: *arg, ..plan.clone() };
                (*arg, reduce_stage(&sub, &temps, &node, *op, axes, *keepdims, *ddof, id, n_stage, ctx)?)
            }
            NodeKind::Scan { arg, axis, prod } => {
                n_stage += 1;
                let sub = Plan { root: *arg, ..plan.clone() };
                (*arg, scan_stage(&sub, &temps, &node, *axis, *prod, id, n_stage, ctx)?)
            }
            _ => continue,
        };
        let _ = arg;
        let path = match &data {
            TempData::Zarr(z) => Some(z.path().to_path_buf()),
            TempData::Mem(_) => None,
        };
        plan.temps.push(TempInfo { path });
        temps.push(data);
        plan.nodes[id].kind = NodeKind::Temp { temp: plan.temps.len() - 1 };
    }
    Ok((plan, temps))
}

fn post_order(plan: &Plan, id: usize, seen: &mut Vec<bool>, out: &mut Vec<usize>) {
    if seen[id] {
        return;
    }
    seen[id] = true;
    for a in plan.nodes[id].args() {
        post_order(plan, a, seen, out);
    }
    out.push(id);
}

/// Intermediates of at most this share of `--memory` stay in memory (unless processes need files).
fn fits_in_memory(bytes: u64, ctx: &StageCtx<'_>) -> bool {
    ctx.scheduler != Scheduler::Processes && bytes <= ctx.opts.memory / 8
}

/// Where a partial lives: memory, or chunk `[g, block…]` of per-component Zarr arrays.
enum PartialStore {
    Mem(Mutex<HashMap<(u64, usize), Partial>>),
    Disk { dir: PathBuf, arrays: Vec<ZArray>, out_grid: Grid },
}

impl PartialStore {
    fn mem() -> PartialStore {
        PartialStore::Mem(Mutex::new(HashMap::new()))
    }

    /// Zarr arrays for `gmax` partials per block of `out_grid`, one per state dtype.
    fn disk(dir: &Path, level: usize, gmax: usize, out_grid: &Grid, dtypes: &[DType]) -> Result<PartialStore> {
        let dir = dir.join(format!("partials-{level}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create a spill directory", e))?;
        let mut shape = vec![gmax as u64];
        shape.extend_from_slice(&out_grid.shape);
        let mut chunks = vec![1];
        chunks.extend_from_slice(&out_grid.chunks);
        let mut arrays = vec![];
        for (c, &d) in dtypes.iter().enumerate() {
            let p = dir.join(format!("c{c}.zarr"));
            std::fs::create_dir(&p).map_err(|e| Error::io(&p, "create a spill array", e))?;
            let fill = if d.is_bool() { Scalar::Bool(false) } else { Scalar::Int(0) };
            let spec = CreateSpec {
                shape: shape.clone(),
                chunks: chunks.clone(),
                shard: None,
                dtype: d,
                fill,
                codec: CodecSpec::None,
                dimension_names: None,
            };
            let mut z = store::create(&p, &spec)?;
            z.set_write_empty_chunks(true);
            arrays.push(z);
        }
        Ok(PartialStore::Disk { dir, arrays, out_grid: out_grid.clone() })
    }

    fn put(&self, block: u64, g: usize, p: Partial) -> Result<()> {
        match self {
            PartialStore::Mem(m) => {
                m.lock().unwrap_or_else(|e| e.into_inner()).insert((block, g), p);
                Ok(())
            }
            PartialStore::Disk { arrays, out_grid, .. } => {
                let mut idx = vec![g as u64];
                idx.extend(out_grid.chunk_index(block));
                for (z, c) in arrays.iter().zip(p.comps) {
                    with_buf!(c, T, a => {
                        let v: Vec<T> = a.iter().copied().collect();
                        z.write_chunk(&idx, &v, 1)?;
                    });
                }
                Ok(())
            }
        }
    }

    fn take(&self, block: u64, g: usize) -> Result<Partial> {
        match self {
            PartialStore::Mem(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(block, g))
                .ok_or_else(|| Error::Internal(format!("partial ({block}, {g}) is missing"))),
            PartialStore::Disk { arrays, out_grid, .. } => {
                let r = out_grid.chunk_region(&out_grid.chunk_index(block));
                let mut start = vec![g as u64];
                start.extend_from_slice(&r.start);
                let mut shape = vec![1];
                shape.extend_from_slice(&r.shape);
                let region = Region::new(start, shape);
                let bshape: Vec<usize> = r.shape.iter().map(|&s| s as usize).collect();
                let mut comps = vec![];
                for z in arrays {
                    comps.push(with_dtype!(z.dtype(), T => Buf::from_vec(&bshape, z.read_region::<T>(&region, 1)?)));
                }
                Ok(Partial { comps })
            }
        }
    }

    fn remove(self) {
        if let PartialStore::Disk { dir, arrays, .. } = self {
            drop(arrays);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One task of the partials stage: a block and the input chunks it folds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PartialTask {
    pub block: u64,
    pub g: usize,
    pub chunks: Vec<u64>,
}

/// What a child process needs to compute partials (the processes scheduler).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PartialJob {
    pub plan: Plan,
    pub op: ReduceOp,
    pub axes: Vec<usize>,
    pub in_grid: Grid,
    pub out_grid: Grid,
    pub tasks: Vec<PartialTask>,
    pub spill_dir: PathBuf,
    pub gmax: usize,
}

/// Fold the input chunks of `task` into one partial of its block.
#[allow(clippy::too_many_arguments)]
fn partial_task(
    plan: &Plan,
    sources: &[ZArray],
    temps: &[TempData],
    op: ReduceOp,
    axes: &[usize],
    in_grid: &Grid,
    out_grid: &Grid,
    task: &PartialTask,
    codec_threads: usize,
) -> Result<(Partial, u64)> {
    let a = plan.root();
    let kept: Vec<usize> = (0..in_grid.ndim()).filter(|x| !axes.contains(x)).collect();
    let block_region = out_grid.chunk_region(&out_grid.chunk_index(task.block));
    let bshape: Vec<usize> = block_region.shape.iter().map(|&s| s as usize).collect();
    let mut acc: Option<Partial> = None;
    let mut ev = Evaluator::new(plan, sources, temps, codec_threads);
    let mut bytes = 0;
    let axis0_kept = kept.first() == Some(&0);
    let feet: Vec<Vec<(usize, u64)>> =
        task.chunks.iter().map(|&c| footprint(plan, &in_grid.chunk_region(&in_grid.chunk_index(c)))).collect();
    for (pos, &c) in task.chunks.iter().enumerate() {
        // keep only the source chunks that this and the remaining chunks of the task still need
        let live: std::collections::HashSet<(usize, u64)> = feet[pos..].iter().flatten().copied().collect();
        ev.retain_chunks(&live);
        let region = in_grid.chunk_region(&in_grid.chunk_index(c));
        bytes += region.len() * a.dtype.size() as u64;
        // the chunk's partial, from its tiles: tiles split axis 0, so when axis 0 is kept they fill
        // disjoint rows of it, else each folds into all of it
        let mut cp = reduce::empty_partial(op, a.dtype, &bshape);
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
            let b = ev.eval(plan.root, &tile)?;
            ev.clear_memo();
            let tshape: Vec<usize> = tile.shape.iter().map(|&s| s as usize).collect();
            let p = with_dtype!(a.dtype, T => tile_partial::<T>(op, &b, &tshape, axes, &tile.start, &in_grid.shape)?);
            let offset: Vec<usize> =
                kept.iter().enumerate().map(|(i, &ax)| (tile.start[ax] - block_region.start[i]) as usize).collect();
            reduce::merge_into(op, a.dtype, &mut cp, &p, &offset, axis0_kept || first).map_err(Error::Internal)?;
            first = false;
            if tile.ndim() == 0 {
                break;
            }
            r0 += tile.shape[0];
            if r0 >= n0 {
                break;
            }
        }
        acc = Some(match acc {
            None => cp,
            Some(mut acc) => {
                reduce::combine(op, a.dtype, &mut acc, &cp).map_err(Error::Internal)?;
                acc
            }
        });
    }
    let acc = acc.ok_or_else(|| Error::Internal("a reduction task without chunks".into()))?;
    Ok((acc, bytes))
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

/// The body of `dsk worker` for a partials job.
pub fn partial_worker(job: &PartialJob, first: usize, count: usize) -> Result<()> {
    let sources = open_sources(&job.plan)?;
    let temps = job::open_temps(&job.plan)?;
    let dtypes = job.op.state_dtypes(job.plan.root().dtype);
    let store = open_disk_store(&job.spill_dir, 0, &dtypes)?;
    let store =
        PartialStore::Disk { dir: job.spill_dir.join("partials-0"), arrays: store, out_grid: job.out_grid.clone() };
    let end = (first + count).min(job.tasks.len());
    job::worker_range(first, end, |t| {
        let task = &job.tasks[t];
        let (p, b) =
            partial_task(&job.plan, &sources, &temps, job.op, &job.axes, &job.in_grid, &job.out_grid, task, 1)?;
        store.put(task.block, task.g, p)?;
        Ok(b)
    })
}

fn open_disk_store(dir: &Path, level: usize, dtypes: &[DType]) -> Result<Vec<ZArray>> {
    let d = dir.join(format!("partials-{level}"));
    (0..dtypes.len()).map(|c| ZArray::open(&d.join(format!("c{c}.zarr")))).collect()
}

#[allow(clippy::too_many_arguments)]
fn reduce_stage(
    sub: &Plan,
    temps: &[TempData],
    node: &Node,
    op: ReduceOp,
    axes: &[usize],
    keepdims: bool,
    ddof: f64,
    id: usize,
    n_stage: usize,
    ctx: &mut StageCtx<'_>,
) -> Result<TempData> {
    let a = sub.root();
    let nd = a.shape.len();
    let kept: Vec<usize> = (0..nd).filter(|x| !axes.contains(x)).collect();
    let in_grid = Grid::new(a.shape.clone(), a.chunks.iter().map(|&c| c.max(1)).collect());
    let out_grid =
        Grid::new(kept.iter().map(|&k| a.shape[k]).collect(), kept.iter().map(|&k| a.chunks[k].max(1)).collect());
    let state_bytes: u64 = op.state_dtypes(a.dtype).iter().map(|d| d.size() as u64).sum();
    let block_bytes = out_grid.chunk_len() * state_bytes;
    // the input chunks of each block, grouped so that chunks sharing source chunks share a task
    let gshape = in_grid.grid_shape();
    let red_counts: Vec<u64> = axes.iter().map(|&x| gshape[x]).collect();
    let n_red: u64 = red_counts.iter().product();
    let chunk_of = |block: u64, r: u64| -> u64 {
        let bi = out_grid.chunk_index(block);
        let ri = crate::grid::unravel(r, &red_counts);
        let mut idx = vec![0; nd];
        for (i, &k) in kept.iter().enumerate() {
            idx[k] = bi[i];
        }
        for (i, &x) in axes.iter().enumerate() {
            idx[x] = ri[i];
        }
        idx.iter().zip(crate::grid::strides(&gshape)).map(|(i, s)| i * s).sum()
    };
    // memory: a task holds its decoded source chunks, a tile's temporaries and its block partial
    let sample = in_grid.chunk_region(&in_grid.chunk_index(0));
    let per_chunk = {
        let f = footprint(sub, &sample);
        lower::decoded_bytes(sub, &[&f]).0 + lower::tile_peak(sub, &sample)
    };
    let budget_per_task = (ctx.opts.memory / ctx.opts.workers.max(1) as u64).saturating_sub(3 * block_bytes);
    let split = ctx.split_every.unwrap_or_else(|| (budget_per_task / per_chunk.max(1)).clamp(2, 32) as usize).max(2);
    let nblocks = out_grid.nchunks();
    let mut tasks = vec![];
    let mut gmax = 0;
    for b in 0..nblocks {
        let chunks: Vec<u64> = (0..n_red).map(|r| chunk_of(b, r)).collect();
        let feet: Vec<Vec<(usize, u64)>> =
            chunks.iter().map(|&c| footprint(sub, &in_grid.chunk_region(&in_grid.chunk_index(c)))).collect();
        let mut groups = group_by_footprint(&feet, split, None);
        // fill groups up to `split` chunks (consecutive groups merge) to keep the task count down
        let mut merged: Vec<Vec<usize>> = vec![];
        for g in groups.drain(..) {
            match merged.last_mut() {
                Some(last) if last.len() + g.len() <= split => last.extend(g),
                _ => merged.push(g),
            }
        }
        gmax = gmax.max(merged.len());
        for (g, members) in merged.into_iter().enumerate() {
            tasks.push(PartialTask { block: b, g, chunks: members.into_iter().map(|m| chunks[m]).collect() });
        }
    }
    let task_bytes = tasks
        .iter()
        .map(|t| {
            let feet: Vec<Vec<(usize, u64)>> =
                t.chunks.iter().map(|&c| footprint(sub, &in_grid.chunk_region(&in_grid.chunk_index(c)))).collect();
            let refs: Vec<&Vec<(usize, u64)>> = feet.iter().collect();
            lower::decoded_bytes(sub, &refs).0 + lower::tile_peak(sub, &sample) + 3 * block_bytes
        })
        .max()
        .unwrap_or(0);
    let partial_bytes = tasks.len() as u64 * block_bytes;
    let spill = ctx.scheduler == Scheduler::Processes || partial_bytes > ctx.opts.memory / 4;
    let stage = Stage {
        name: format!("reduce-{n_stage}"),
        tasks: tasks.len() as u64,
        task_bytes,
        total_bytes: a.shape.iter().product::<u64>() * a.dtype.size() as u64,
    };
    let parallel = admissible(&stage, &ctx.opts, |m| {
        format!("use smaller chunks, or a smaller --split-every (a task holds its input chunks and a block of partials; {} fits)", human(m))
    })?;
    let result_bytes = node.shape.iter().product::<u64>() * node.dtype.size() as u64;
    let result_in_memory = fits_in_memory(result_bytes, ctx);
    if let Some(text) = ctx.explain.as_mut() {
        text.push_str(&format!(
            "stage {n_stage} reduce #{id} {}: {} tasks of up to {split} input chunks (split_every {split}) over {} chunks {} → {} block{} {}\n",
            node.label,
            tasks.len(),
            in_grid.nchunks(),
            tuple(&in_grid.chunks),
            nblocks,
            if nblocks == 1 { "" } else { "s" },
            tuple(&out_grid.chunks),
        ));
        text.push_str(&format!(
            "  projected peak per task {}; at most {parallel} in flight → {}; partials {} ({}); result {} ({})\n",
            human(task_bytes),
            human(task_bytes * parallel as u64),
            human(partial_bytes),
            if spill { "spilled to the work dir" } else { "in memory" },
            human(result_bytes),
            if result_in_memory { "in memory" } else { "in the work dir" },
        ));
        return placeholder(node, ctx, id);
    }

    // 1. partials
    let dtypes = op.state_dtypes(a.dtype);
    let spill_root = ctx.work.path().join(format!("reduce-{id}"));
    let store =
        if spill { PartialStore::disk(&spill_root, 0, gmax.max(1), &out_grid, &dtypes)? } else { PartialStore::mem() };
    if ctx.scheduler == Scheduler::Processes {
        let pj = PartialJob {
            plan: sub.clone(),
            op,
            axes: axes.to_vec(),
            in_grid: in_grid.clone(),
            out_grid: out_grid.clone(),
            tasks: tasks.clone(),
            spill_dir: spill_root.clone(),
            gmax: gmax.max(1),
        };
        job::run_processes(&job::WorkerJob::Partials(pj), &stage, parallel, ctx.work.path(), ctx.sink)?;
    } else {
        let sources = open_sources(sub)?;
        let o = RunOptions {
            workers: if ctx.scheduler == Scheduler::Sync { 1 } else { ctx.opts.workers },
            memory: ctx.opts.memory,
        };
        let par = if ctx.scheduler == Scheduler::Sync { 1 } else { parallel };
        run_stage(&stage, par, &o, ctx.sink, |tc: TaskCtx| {
            let t = &tasks[tc.index as usize];
            let (p, bytes) = partial_task(sub, &sources, temps, op, axes, &in_grid, &out_grid, t, tc.codec_threads)?;
            store.put(t.block, t.g, p)?;
            Ok(bytes)
        })?;
    }

    // 2. combine rounds of `split` partials per block, 3. finalize into the result
    let mut counts: Vec<usize> = vec![0; nblocks as usize];
    for t in &tasks {
        counts[t.block as usize] = counts[t.block as usize].max(t.g + 1);
    }
    // blocks with nothing to reduce (a zero-length reduced axis) get the identity state
    for b in 0..nblocks {
        if counts[b as usize] == 0 {
            let r = out_grid.chunk_region(&out_grid.chunk_index(b));
            let mut shape: Vec<usize> = vec![0; nd];
            for (i, &k) in kept.iter().enumerate() {
                shape[k] = r.shape[i] as usize;
            }
            let p = with_dtype!(a.dtype, T => {
                let empty = ArrayD::<T>::from_elem(IxDyn(&shape), T::default());
                reduce::reduce_tile::<T>(op, &empty.view(), axes, &vec![0; nd], &a.shape)
            });
            store.put(b, 0, p)?;
            counts[b as usize] = 1;
        }
    }
    let result = new_result(node, ctx, id)?;
    let mut store = store;
    let mut level = 0;
    loop {
        let max = counts.iter().copied().max().unwrap_or(1);
        if max <= 1 {
            break;
        }
        level += 1;
        let next_counts: Vec<usize> = counts.iter().map(|&c| c.div_ceil(split)).collect();
        let next_bytes = next_counts.iter().sum::<usize>() as u64 * block_bytes;
        let next = if spill && next_bytes > ctx.opts.memory / 4 {
            PartialStore::disk(&spill_root, level, next_counts.iter().copied().max().unwrap_or(1), &out_grid, &dtypes)?
        } else {
            PartialStore::mem()
        };
        for b in 0..nblocks {
            for g in 0..next_counts[b as usize] {
                let lo = g * split;
                let hi = (lo + split).min(counts[b as usize]);
                let mut acc = store.take(b, lo)?;
                for k in lo + 1..hi {
                    let p = store.take(b, k)?;
                    reduce::combine(op, a.dtype, &mut acc, &p).map_err(Error::Internal)?;
                }
                next.put(b, g, acc)?;
            }
        }
        store.remove();
        store = next;
        counts = next_counts;
    }
    for b in 0..nblocks {
        let p = store.take(b, 0)?;
        let v = reduce::finalize(op, a.dtype, &p, ddof).map_err(Error::Internal)?;
        let region = out_grid.chunk_region(&out_grid.chunk_index(b));
        result.put(&region, &v, keepdims, axes, nd)?;
    }
    store.remove();
    result.finish()
}

/// An intermediate being filled: in memory, or a Zarr array in the work dir.
enum ResultBuf {
    Mem(Mutex<Buf>),
    Zarr(Box<ZArray>),
}

fn new_result(node: &Node, ctx: &StageCtx<'_>, id: usize) -> Result<ResultBuf> {
    let bytes = node.shape.iter().product::<u64>() * node.dtype.size() as u64;
    if fits_in_memory(bytes, ctx) {
        let shape: Vec<usize> = node.shape.iter().map(|&s| s as usize).collect();
        let b = with_dtype!(node.dtype, T => T::wrap(ArrayD::from_elem(IxDyn(&shape), T::default()).into_shared()));
        return Ok(ResultBuf::Mem(Mutex::new(b)));
    }
    ctx.work.check_free(bytes)?;
    let p = ctx.work.path().join(format!("node-{id}.zarr"));
    std::fs::create_dir(&p).map_err(|e| Error::io(&p, "create an intermediate", e))?;
    let spec = CreateSpec {
        shape: node.shape.clone(),
        chunks: node.chunks.iter().map(|&c| c.max(1)).collect(),
        shard: None,
        dtype: node.dtype,
        fill: if node.dtype.is_bool() { Scalar::Bool(false) } else { Scalar::Int(0) },
        codec: CodecSpec::None,
        dimension_names: None,
    };
    let mut z = store::create(&p, &spec)?;
    z.set_write_empty_chunks(true);
    Ok(ResultBuf::Zarr(Box::new(z)))
}

/// In `--explain` mode: a stand-in for the intermediate (nothing is computed).
fn placeholder(node: &Node, _ctx: &StageCtx<'_>, _id: usize) -> Result<TempData> {
    let shape: Vec<usize> = node.shape.iter().map(|&s| s as usize).collect();
    Ok(TempData::Mem(
        with_dtype!(node.dtype, T => T::wrap(ArrayD::from_elem(IxDyn(&shape), T::default()).into_shared())),
    ))
}

impl ResultBuf {
    /// Store the values `v` of `region` (of the reduced shape without keepdims axes).
    fn put(&self, region: &Region, v: &Buf, keepdims: bool, axes: &[usize], nd: usize) -> Result<()> {
        // with keepdims, the reduced axes come back as length-1 axes
        let (start, shape) = if keepdims {
            let (mut st, mut sh) = (vec![], vec![]);
            let mut k = 0;
            for i in 0..nd {
                if axes.contains(&i) {
                    st.push(0);
                    sh.push(1);
                } else {
                    st.push(region.start[k]);
                    sh.push(region.shape[k]);
                    k += 1;
                }
            }
            (st, sh)
        } else {
            (region.start.clone(), region.shape.clone())
        };
        let ushape: Vec<usize> = shape.iter().map(|&s| s as usize).collect();
        match self {
            ResultBuf::Mem(m) => {
                let mut dst = m.lock().unwrap_or_else(|e| e.into_inner());
                let r: Vec<(usize, usize)> =
                    start.iter().zip(&shape).map(|(&s, &n)| (s as usize, (s + n) as usize)).collect();
                with_buf!(&mut *dst, T, d => {
                    let src = T::view(v).ok_or_else(|| Error::Internal("result dtype".into()))?;
                    let src = src.to_shape(IxDyn(&ushape)).map_err(|e| Error::Internal(e.to_string()))?;
                    if r.is_empty() {
                        d.assign(&src);
                    } else {
                        let elems: Vec<ndarray::SliceInfoElem> = r.iter().map(|&(s, e)| ndarray::SliceInfoElem::Slice { start: s as isize, end: Some(e as isize), step: 1 }).collect();
                        let si: ndarray::SliceInfo<Vec<ndarray::SliceInfoElem>, IxDyn, IxDyn> = ndarray::SliceInfo::try_from(elems).map_err(|e| Error::Internal(e.to_string()))?;
                        d.slice_mut(si).assign(&src);
                    }
                });
                Ok(())
            }
            ResultBuf::Zarr(z) => {
                let g = Grid::new(z.shape().to_vec(), z.meta().chunks.clone());
                let idx = g.chunk_index_of(&start);
                with_buf!(v, T, a => {
                    let data: Vec<T> = a.iter().copied().collect();
                    z.write_chunk(&idx, &data, 1)?;
                });
                Ok(())
            }
        }
    }

    fn finish(self) -> Result<TempData> {
        Ok(match self {
            ResultBuf::Mem(m) => TempData::Mem(m.into_inner().unwrap_or_else(|e| e.into_inner())),
            ResultBuf::Zarr(z) => TempData::Zarr(Box::new(ZArray::open(z.path())?)),
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn scan_stage(
    sub: &Plan,
    temps: &[TempData],
    node: &Node,
    axis: usize,
    prod: bool,
    id: usize,
    n_stage: usize,
    ctx: &mut StageCtx<'_>,
) -> Result<TempData> {
    let a = sub.root();
    let grid = Grid::new(a.shape.clone(), a.chunks.iter().map(|&c| c.max(1)).collect());
    let out_dtype = node.dtype;
    let nchunks = grid.nchunks();
    let sample = grid.chunk_region(&grid.chunk_index(0));
    let f = footprint(sub, &sample);
    let task_bytes = lower::decoded_bytes(sub, &[&f]).0 + 3 * sample.len() * out_dtype.size() as u64;
    let stage = Stage {
        name: format!("scan-{n_stage}"),
        tasks: nchunks,
        task_bytes,
        total_bytes: a.shape.iter().product::<u64>() * a.dtype.size() as u64,
    };
    let parallel = admissible(&stage, &ctx.opts, |m| format!("use smaller chunks ({} fits)", human(m)))?;
    if let Some(text) = ctx.explain.as_mut() {
        text.push_str(&format!(
            "stage {n_stage} scan #{id} {}: 2 passes of {nchunks} tasks (chunk totals, then scans from the carried totals); projected peak per task {}\n",
            node.label,
            human(task_bytes)
        ));
        return placeholder(node, ctx, id);
    }
    let sources = open_sources(sub)?;
    let o = RunOptions {
        workers: if ctx.scheduler == Scheduler::Sync { 1 } else { ctx.opts.workers },
        memory: ctx.opts.memory,
    };
    let par = if ctx.scheduler == Scheduler::Sync { 1 } else { parallel };
    // pass 1: the total of every chunk along the axis
    let totals: Mutex<HashMap<u64, Buf>> = Mutex::new(HashMap::new());
    let st1 = Stage { name: format!("scan-{n_stage}-totals"), ..stage.clone() };
    run_stage(&st1, par, &o, ctx.sink, |tc: TaskCtx| {
        let region = grid.chunk_region(&grid.chunk_index(tc.index));
        let mut ev = Evaluator::new(sub, &sources, temps, tc.codec_threads);
        let b = ev.root_region(&region)?.cast(out_dtype);
        let t = with_dtype!(out_dtype, T => scan_total::<T>(&b, axis, prod)?);
        totals.lock().unwrap_or_else(|e| e.into_inner()).insert(tc.index, t);
        Ok(region.len() * a.dtype.size() as u64)
    })?;
    let totals = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    // carries: for chunk index i along the axis, the running total of chunks 0..i of its column
    let gshape = grid.grid_shape();
    let strides = crate::grid::strides(&gshape);
    let mut carries: HashMap<u64, Buf> = HashMap::new();
    for c in 0..nchunks {
        let idx = grid.chunk_index(c);
        if idx[axis] != 0 {
            continue;
        }
        let mut running: Option<Buf> = None;
        for i in 0..gshape[axis] {
            let lin = c + i * strides[axis];
            if let Some(r) = &running {
                carries.insert(lin, r.clone());
            }
            let t = totals.get(&lin).cloned().ok_or_else(|| Error::Internal("scan total missing".into()))?;
            running = Some(match running {
                None => t,
                Some(r) => with_dtype!(out_dtype, T => combine_carry::<T>(&r, &t, prod)?),
            });
        }
    }
    // pass 2: scan every chunk from its carry, into the intermediate
    let result = new_result(node, ctx, id)?;
    let st2 = Stage { name: format!("scan-{n_stage}"), ..stage };
    run_stage(&st2, par, &o, ctx.sink, |tc: TaskCtx| {
        let region = grid.chunk_region(&grid.chunk_index(tc.index));
        let mut ev = Evaluator::new(sub, &sources, temps, tc.codec_threads);
        let b = ev.root_region(&region)?.cast(out_dtype);
        let out = with_dtype!(out_dtype, T => {
            let x = T::view(&b).ok_or_else(|| Error::Internal("scan dtype".into()))?;
            let carry = carries.get(&tc.index).and_then(|c| T::view(c).cloned());
            let cv = carry.as_ref().map(|c| c.view());
            T::wrap(reduce::scan::<T>(&x.view(), axis, prod, cv.as_ref()).into_shared())
        });
        result.put(&region, &out, false, &[], region.ndim())?;
        Ok(region.len() * a.dtype.size() as u64)
    })?;
    result.finish()
}

fn scan_total<T: NumElem>(b: &Buf, axis: usize, prod: bool) -> Result<Buf> {
    let x = T::view(b).ok_or_else(|| Error::Internal("scan dtype".into()))?;
    let t = x.fold_axis(ndarray::Axis(axis), if prod { T::from_i64(1) } else { T::default() }, |&acc, &v| {
        if prod {
            T::mul(acc, v)
        } else {
            T::add(acc, v)
        }
    });
    Ok(T::wrap(t.into_shared()))
}

fn combine_carry<T: NumElem>(r: &Buf, t: &Buf, prod: bool) -> Result<Buf> {
    let (x, y) = (T::view(r), T::view(t));
    let (Some(x), Some(y)) = (x, y) else { return Err(Error::Internal("carry dtype".into())) };
    let mut out = x.to_owned();
    out.zip_mut_with(y, |a, &b| *a = if prod { T::mul(*a, b) } else { T::add(*a, b) });
    Ok(T::wrap(out.into_shared()))
}
