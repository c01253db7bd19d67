//! Lowering an array plan to chunk tasks: which regions of which sources each output chunk needs
//! (through broadcasting, indexing and transposes), which output chunks should share a task so that
//! every source chunk is decoded once (`x * x[::-1, ::-1]` pairs chunk (i, j) with its mirror), and
//! how many bytes each task holds at its peak.
//!
//! Everything element-wise, indexing, transposing and casting fuses into the task that reads its
//! sources: one task per output chunk (or group of chunks), reading each source chunk once and
//! writing once. Nothing here reads data.

use std::collections::HashMap;

use super::{NodeKind, Plan};
use crate::error::human;
use crate::grid::{tuple, Grid, Region};
use crate::kernels::generate::Generator;

/// Elements per tile: a task evaluates its output chunk in tiles of about this many elements so
/// that the temporaries of a fused expression stay in the CPU caches.
pub const TILE_ELEMS: u64 = 8 * 1024;

/// The region of argument `pos` of node `id` needed for `region` of the node.
pub fn arg_region(plan: &Plan, id: usize, pos: usize, region: &Region) -> Region {
    let n = &plan.nodes[id];
    match &n.kind {
        NodeKind::Map { args, .. } => {
            let a = &plan.nodes[args[pos]];
            let off = n.shape.len() - a.shape.len();
            let (mut start, mut shape) = (vec![], vec![]);
            for (j, &extent) in a.shape.iter().enumerate() {
                if extent == 1 && n.shape[j + off] != 1 {
                    start.push(0);
                    shape.push(1);
                } else {
                    start.push(region.start[j + off]);
                    shape.push(region.shape[j + off]);
                }
            }
            Region::new(start, shape)
        }
        NodeKind::Index { sel, .. } => {
            let (mut start, mut shape) = (vec![], vec![]);
            let mut k = 0;
            for s in sel {
                if s.keep {
                    if region.shape[k] == 0 {
                        start.push(s.start);
                        shape.push(0);
                    } else {
                        let (lo, hi) = s.bbox(region.start[k], region.start[k] + region.shape[k]);
                        start.push(lo);
                        shape.push(hi - lo);
                    }
                    k += 1;
                } else {
                    start.push(s.start);
                    shape.push(1);
                }
            }
            Region::new(start, shape)
        }
        NodeKind::Transpose { perm, .. } => {
            let nd = perm.len();
            let (mut start, mut shape) = (vec![0; nd], vec![0; nd]);
            for (i, &p) in perm.iter().enumerate() {
                start[p] = region.start[i];
                shape[p] = region.shape[i];
            }
            Region::new(start, shape)
        }
        NodeKind::Astype { .. } => region.clone(),
        // both parts of the elements of `region` (its last axis is the parts')
        NodeKind::Pair { .. } => {
            let nd = region.ndim();
            Region::new(region.start[..nd - 1].to_vec(), region.shape[..nd - 1].to_vec())
        }
        _ => region.clone(),
    }
}

/// The chunk grid a leaf is read in, when reading it by whole chunks pays (Zarr inputs, and
/// generators that cost something to evaluate).
pub fn leaf_grid(plan: &Plan, id: usize) -> Option<Grid> {
    let n = &plan.nodes[id];
    match &n.kind {
        NodeKind::Input { input } => {
            let inp = &plan.inputs[*input];
            Some(Grid::new(inp.shape.clone(), inp.chunks.clone()))
        }
        NodeKind::Gen { gen } if !matches!(gen, Generator::Const(_)) => {
            Some(Grid::new(n.shape.clone(), n.chunks.clone()))
        }
        NodeKind::Temp { temp } if *temp < plan.temps.len() => Some(Grid::new(n.shape.clone(), n.chunks.clone())),
        _ => None,
    }
}

/// Every (leaf, region) the evaluation of `region` of the root (and of the plan's other results,
/// which have the root's shape where a plan computes several) reads.
pub fn leaf_reads(plan: &Plan, region: &Region) -> Vec<(usize, Region)> {
    let mut out = vec![];
    for root in plan.roots() {
        walk(plan, root, region, &mut |id, r| {
            if plan.nodes[id].args().is_empty() {
                out.push((id, r.clone()));
            }
        });
    }
    out
}

/// Visit every node reached from `id` with the region evaluated there.
pub fn walk(plan: &Plan, id: usize, region: &Region, f: &mut impl FnMut(usize, &Region)) {
    f(id, region);
    for (pos, a) in plan.nodes[id].args().into_iter().enumerate() {
        let r = arg_region(plan, id, pos, region);
        walk(plan, a, &r, f);
    }
}

/// The source chunks (leaf, chunk index in C order) that `region` of the root needs.
pub fn footprint(plan: &Plan, region: &Region) -> Vec<(usize, u64)> {
    let mut out: Vec<(usize, u64)> = vec![];
    let mut seen: std::collections::HashSet<(usize, u64)> = std::collections::HashSet::new();
    for (leaf, r) in leaf_reads(plan, region) {
        let Some(g) = leaf_grid(plan, leaf) else { continue };
        if r.is_empty() {
            continue;
        }
        let gshape = g.grid_shape();
        let ranges: Vec<std::ops::Range<u64>> =
            (0..r.ndim()).map(|a| g.chunks_overlapping(a, r.start[a], r.end(a))).collect();
        let counts: Vec<u64> = ranges.iter().map(|x| x.end - x.start).collect();
        let total: u64 = counts.iter().product();
        let strides = crate::grid::strides(&gshape);
        for k in 0..total {
            let idx = crate::grid::unravel(k, &counts);
            let lin: u64 = idx.iter().zip(&ranges).zip(&strides).map(|((i, r), s)| (i + r.start) * s).sum();
            if seen.insert((leaf, lin)) {
                out.push((leaf, lin));
            }
        }
    }
    out
}

/// Bytes a source chunk holds once decoded (a generator's none: it fills each tile where it is
/// used).
fn chunk_bytes(plan: &Plan, leaf: usize, lin: u64) -> u64 {
    match leaf_grid(plan, leaf) {
        // a generator fills each tile where it is used: no chunk of it is held
        _ if matches!(plan.nodes[leaf].kind, NodeKind::Gen { .. }) => 0,
        Some(g) => g.chunk_region(&g.chunk_index(lin)).len() * plan.nodes[leaf].dtype.size() as u64,
        None => 0,
    }
}

/// Peak bytes of the temporaries of one tile evaluation of `region` (every node's output, plus the
/// copies a map makes of operands it casts or broadcasts).
fn tile_bytes(plan: &Plan, region: &Region) -> u64 {
    let tile_rows = tile_rows(&region.shape);
    let mut tile = region.clone();
    if let Some(first) = tile.shape.first_mut() {
        *first = (*first).min(tile_rows);
    }
    let mut total = 0;
    // (a tile's values are kept for every result of the plan until the tile is done)
    for root in plan.roots() {
        walk(plan, root, &tile, &mut |id, r| {
            let n = &plan.nodes[id];
            let elems = r.len();
            total += elems * n.dtype.size() as u64;
            if let NodeKind::Map { compute, args, .. } = &n.kind {
                total += args.len() as u64 * elems * compute.size() as u64;
            }
        });
    }
    total
}

/// Bytes a task holds to write one output chunk of `out_bytes` besides its tile: the chunk as
/// computed, its cast or padded copy, its encoded bytes and the aligned buffer of the write, and the
/// codec's scratch.
pub fn write_bytes(out_bytes: u64, codec_scratch: u64) -> u64 {
    4 * out_bytes + codec_scratch
}

/// Bytes held for a moment while one source chunk of `plan` is decoded: its stored bytes, read
/// whole (at most the decoded size for the codecs dsk reads).
pub fn decode_transient(plan: &Plan) -> u64 {
    (0..plan.nodes.len())
        .filter(|&id| !matches!(plan.nodes[id].kind, NodeKind::Gen { .. }))
        .filter_map(|id| leaf_grid(plan, id).map(|g| g.chunk_len() * plan.nodes[id].dtype.size() as u64))
        .max()
        .unwrap_or(0)
}

/// Rows (along the first axis) per tile for a region of `shape`.
pub fn tile_rows(shape: &[u64]) -> u64 {
    let row: u64 = shape.iter().skip(1).product::<u64>().max(1);
    (TILE_ELEMS / row).max(1)
}

/// The output of a computing command: its chunk grid (storage chunks: shards when sharded) and
/// element size.
#[derive(Clone, Debug)]
pub struct OutputLayout {
    pub grid: Grid,
    pub itemsize: u64,
    /// Extra bytes the output codec may hold while encoding one chunk.
    pub codec_scratch: u64,
}

/// Tasks of the stage that computes the output: groups of output chunks (C-order indices), each
/// group run as one task, and the projected peak bytes of the largest task.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Tasks {
    pub groups: Vec<Vec<u64>>,
    pub task_bytes: u64,
    /// Logical bytes of source chunks decoded (or generated) over the whole stage.
    pub read_bytes: u64,
    /// Source chunks decoded over the whole stage, and how many distinct ones exist.
    pub chunk_reads: u64,
    pub distinct_chunks: u64,
}

/// A memory cap for [`group_by_footprint`]: a group's distinct source chunks (`chunk_bytes` each)
/// plus `member_bytes` per member running at once (at most `inner` at once) must fit `budget`.
pub struct GroupCap<'a> {
    pub chunk_bytes: &'a dyn Fn(&(usize, u64)) -> u64,
    pub member_bytes: u64,
    pub inner: usize,
    pub budget: u64,
}

/// Group `items` (each with its footprint) so that items needing the same source chunks share a
/// group — at most `max_group` per group, and within `cap` — so each source chunk is decoded once
/// per stage where memory allows. Groups keep the items' order.
pub fn group_by_footprint(feet: &[Vec<(usize, u64)>], max_group: usize, cap: Option<&GroupCap<'_>>) -> Vec<Vec<usize>> {
    let n = feet.len();
    let mut owners: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    for (c, f) in feet.iter().enumerate() {
        for k in f {
            owners.entry(*k).or_default().push(c);
        }
    }
    let shared = owners.values().any(|v| v.len() > 1);
    if !shared || max_group <= 1 {
        return (0..n).map(|c| vec![c]).collect();
    }
    let mut assigned = vec![false; n];
    let mut groups = vec![];
    for c in 0..n {
        if assigned[c] {
            continue;
        }
        assigned[c] = true;
        let mut group = vec![c];
        let mut chunks: std::collections::HashSet<(usize, u64)> = feet[c].iter().copied().collect();
        let mut bytes: u64 = cap.map(|k| chunks.iter().map(|x| (k.chunk_bytes)(x)).sum()).unwrap_or(0);
        let mut queue = vec![c];
        // candidates already weighed for this group (bytes only grow: a refusal is final)
        let mut considered: std::collections::HashSet<usize> = std::collections::HashSet::new();
        while let Some(x) = queue.pop() {
            for k in &feet[x] {
                for &o in &owners[k] {
                    if group.len() >= max_group || assigned[o] || !considered.insert(o) {
                        continue;
                    }
                    if let Some(cap) = cap {
                        let extra: u64 =
                            feet[o].iter().filter(|q| !chunks.contains(q)).map(|q| (cap.chunk_bytes)(q)).sum();
                        let members = (group.len() + 1).min(cap.inner.max(1)) as u64;
                        if bytes + extra + members * cap.member_bytes > cap.budget {
                            continue;
                        }
                        bytes += extra;
                    }
                    chunks.extend(feet[o].iter().copied());
                    assigned[o] = true;
                    group.push(o);
                    queue.push(o);
                }
            }
        }
        group.sort_unstable();
        groups.push(group);
    }
    groups
}

/// Bytes of the distinct source chunks of a set of footprints.
pub fn decoded_bytes(plan: &Plan, feet: &[&Vec<(usize, u64)>]) -> (u64, usize) {
    let mut seen: std::collections::HashSet<(usize, u64)> = std::collections::HashSet::new();
    let mut distinct: Vec<(usize, u64)> = vec![];
    for f in feet {
        for k in f.iter() {
            if seen.insert(*k) {
                distinct.push(*k);
            }
        }
    }
    (distinct.iter().map(|&(l, k)| chunk_bytes(plan, l, k)).sum(), distinct.len())
}

/// Peak bytes of evaluating one tile of `region` (see [`TILE_ELEMS`]).
pub fn tile_peak(plan: &Plan, region: &Region) -> u64 {
    tile_bytes(plan, region)
}

/// Plan the tasks for `out`: output chunks needing the same source chunks share a task (and so
/// decode them once) — at most `max_group` of them, and, with `budget`, as many as fit it when up to
/// `inner` of a task's chunks are computed at once.
pub fn tasks(plan: &Plan, out: &OutputLayout, max_group: usize, budget: Option<u64>, inner: usize) -> Tasks {
    let n = out.grid.nchunks();
    let feet: Vec<Vec<(usize, u64)>> =
        (0..n).map(|c| footprint(plan, &out.grid.chunk_region(&out.grid.chunk_index(c)))).collect();
    let distinct_all: std::collections::HashSet<(usize, u64)> = feet.iter().flatten().copied().collect();
    let out_bytes = out.grid.chunk_len() * out.itemsize;
    let sample = out.grid.chunk_region(&vec![0; out.grid.ndim()]);
    // tile temporaries + the output chunk, its padded/cast copy, and its encoded form
    let member_bytes = tile_bytes(plan, &sample) + write_bytes(out_bytes, out.codec_scratch);
    let transient = decode_transient(plan);
    let cb = |k: &(usize, u64)| chunk_bytes(plan, k.0, k.1);
    let cap = budget.map(|b| GroupCap { chunk_bytes: &cb, member_bytes, inner, budget: b });
    let groups: Vec<Vec<u64>> = group_by_footprint(&feet, max_group, cap.as_ref())
        .into_iter()
        .map(|g| g.into_iter().map(|c| c as u64).collect())
        .collect();
    let mut task_bytes = 0;
    let mut read_bytes = 0;
    let mut chunk_reads = 0;
    for g in &groups {
        let members: Vec<&Vec<(usize, u64)>> = g.iter().map(|&c| &feet[c as usize]).collect();
        let (decoded, count) = decoded_bytes(plan, &members);
        let at_once = g.len().min(inner.max(1)) as u64;
        read_bytes += decoded;
        chunk_reads += count as u64;
        // a group's source chunks are decoded `inner` at a time
        let decoding = (inner.max(1) as u64).min(count as u64).max(1);
        task_bytes = task_bytes.max(decoded + decoding * transient + at_once * member_bytes);
    }
    Tasks { groups, task_bytes, read_bytes, chunk_reads, distinct_chunks: distinct_all.len() as u64 }
}

/// `--explain`: the plan, its stage and the memory projection, as text.
pub fn explain(plan: &Plan, out: &OutputLayout, tasks: &Tasks, parallel: usize, memory: u64, target: &str) -> String {
    let mut s = String::new();
    s.push_str(&format!("expression: {}\n", plan.text));
    for inp in &plan.inputs {
        s.push_str(&format!(
            "input {} = {}: {} {}, chunks {}\n",
            inp.name,
            inp.path.display(),
            tuple(&inp.shape),
            inp.dtype,
            tuple(&inp.chunks)
        ));
    }
    s.push_str("array plan (fused into one stage):\n");
    for (i, n) in plan.nodes.iter().enumerate() {
        let args: Vec<String> = n.args().iter().map(|a| format!("#{a}")).collect();
        let args = if args.is_empty() { String::new() } else { format!("({})", args.join(", ")) };
        s.push_str(&format!(
            "  #{i:<3} {:<28} {:<14} {:<8} chunks {}\n",
            format!("{}{args}", n.label),
            tuple(&n.shape),
            n.dtype.name(),
            tuple(&n.chunks)
        ));
    }
    let root = plan.root();
    let logical = root.shape.iter().product::<u64>() * out.itemsize;
    let per_task = tasks.groups.iter().map(|g| g.len()).max().unwrap_or(0);
    s.push_str(&format!(
        "stage 1 compute → {target}: {} tasks over {} output chunks {} (up to {per_task} chunk{} per task)\n",
        tasks.groups.len(),
        out.grid.nchunks(),
        tuple(&out.grid.chunks),
        if per_task == 1 { "" } else { "s" }
    ));
    s.push_str(&format!(
        "  projected peak per task {}; at most {parallel} in flight under --memory {} → {}\n",
        human(tasks.task_bytes),
        human(memory),
        human(tasks.task_bytes * parallel as u64)
    ));
    s.push_str(&format!(
        "  reads {} ({} source chunk decodes, {} distinct chunks); writes {} ({} logical); spills 0 B\n",
        human(tasks.read_bytes),
        tasks.chunk_reads,
        tasks.distinct_chunks,
        target,
        human(logical)
    ));
    s
}
