//! Building physical plans: an expression (with its reductions and scans) into stages and the
//! arrays between them, generated and imported arrays (`create`), exports, and rechunking
//! ([`super::rechunk`]). Nothing here reads data: shapes, dtypes and chunk grids are enough.
//!
//! Every stage is checked against `--memory` here, before the run starts: a stage whose task
//! cannot fit is refused with a suggestion that has itself been checked to fit.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::lower::{self, footprint, group_by_footprint, OutputLayout};
use super::physical::*;
use super::{Node, NodeKind, Plan, TempInfo};
use crate::dtype::{DType, Scalar};
use crate::error::{human, Error, Result};
use crate::expr::slice::AxisSel;
use crate::grid::{tuple, Grid, Region};
use crate::kernels::generate::Generator;
use crate::kernels::reduce::ReduceOp;
use crate::store::{CodecSpec, CreateSpec, FileFormat};

/// Input bytes a reduction's partial task folds by default (its chunks are evaluated one after
/// another, so this sets the number of tasks, not their memory).
const PARTIAL_TASK_BYTES: u64 = 64 << 20;
/// The most chunks one partial task folds.
const PARTIAL_TASK_CHUNKS: u64 = 1024;
/// Fan-in of the merge tree of a reduction's partials (and of listed partial tasks).
pub const DEFAULT_SPLIT: u64 = 8;
/// At most this many output chunks share a compute task (enough to pair mirrors and transposes).
const MAX_GROUP: usize = 4;
/// Bookkeeping bytes per in-memory partial besides its values.
const PARTIAL_OVERHEAD: u64 = 256;

/// What a plan is checked against: the run options.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub memory: u64,
    pub workers: usize,
    /// `--scheduler processes`: partials and intermediates must live on disk.
    pub processes: bool,
    pub scheduler: String,
    /// `--split-every`: chunks per partial task and fan-in of the merge tree.
    pub split_every: Option<u64>,
}

/// Where an expression's result goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// A Zarr array at `path`, created with `spec`.
    Array { path: PathBuf, spec: Box<CreateSpec> },
    /// A file (`None`: stdout) in `format`, streamed from an uncompressed array in the work dir
    /// with these chunks and dtype.
    File { path: Option<PathBuf>, format: FileFormat, chunks: Vec<u64>, dtype: DType },
    /// A 0-d result printed on stdout (`--dtype` casts it when printed), in a JSON object with the
    /// run's other printed results when `json`.
    Print { dtype: Option<DType>, json: bool },
}

/// A plan being assembled.
struct Builder<'a> {
    opts: &'a PlanOptions,
    arrays: Vec<ArrayDecl>,
    stages: Vec<Stage>,
    /// Bytes of in-memory partials waiting for their finalize stage.
    held: u64,
}

fn zero(d: DType) -> Scalar {
    if d.is_bool() {
        Scalar::Bool(false)
    } else {
        Scalar::Int(0)
    }
}

/// The value of `DSK_WORK_CODEC`, `None` when unset or blank.
fn work_codec_var() -> Option<String> {
    std::env::var("DSK_WORK_CODEC").ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The codec of intermediate arrays and spills: none, unless `DSK_WORK_CODEC` names another (a
/// benchmark knob: `make bench` measures the two-pass rechunk and spilled reductions both ways,
/// docs/benchmarks.md). A plan that has work arrays is refused before it is explained or run when
/// the value is not a codec ([`check_work_codec`]), so the fallback here is never what runs.
pub fn work_codec() -> CodecSpec {
    work_codec_var().and_then(|v| CodecSpec::parse(&v).ok()).unwrap_or(CodecSpec::None)
}

/// Refuse a plan with work arrays while `DSK_WORK_CODEC` is not a codec dsk writes (`auto` is
/// not: work arrays are made before anything can be sampled). Commands that make no work array
/// ignore the variable.
pub fn check_work_codec(plan: &PhysicalPlan) -> Result<()> {
    if !plan.has_work_arrays() {
        return Ok(());
    }
    let Some(v) = work_codec_var() else { return Ok(()) };
    match CodecSpec::parse(&v) {
        Ok(CodecSpec::Auto) => Err(Error::usage(
            "DSK_WORK_CODEC",
            "auto is not available for intermediates — name a codec (e.g. none or zstd:1) or unset it",
        )),
        Ok(_) => Ok(()),
        Err(Error::Usage { msg, .. }) => Err(Error::usage("DSK_WORK_CODEC", format!("{msg} — or unset it"))),
        Err(e) => Err(e),
    }
}

/// An array in the work dir, uncompressed unless `DSK_WORK_CODEC` says otherwise.
fn work_array(what: String, file: String, shape: Vec<u64>, chunks: Vec<u64>, dtype: DType) -> ArrayDecl {
    let chunks = chunks.iter().zip(&shape).map(|(&c, &n)| c.max(1).min(n.max(1))).collect();
    ArrayDecl {
        what,
        place: Place::Work(PathBuf::from(file)),
        spec: CreateSpec {
            shape,
            chunks,
            shard: None,
            dtype,
            fill: zero(dtype),
            codec: work_codec(),
            dimension_names: None,
            zarr_format: 3,
            attributes: Default::default(),
            half: false,
            complex: false,
            fill_im: 0.0,
        },
        write_empty_chunks: true,
    }
}

impl Plan {
    /// The plan computing nodes `roots` (the first is its root; repeats are computed once): only
    /// the nodes they need, renumbered. Returns it and each root's node in it.
    pub fn sub_many(&self, roots: &[usize]) -> (Plan, Vec<usize>) {
        let (nodes, new) = super::prune_many(self.nodes.clone(), roots);
        let mut others: Vec<usize> = vec![];
        for &r in &new[1..] {
            if r != new[0] && !others.contains(&r) {
                others.push(r);
            }
        }
        let plan = Plan {
            text: self.text.clone(),
            inputs: self.inputs.clone(),
            nodes,
            root: new[0],
            temps: self.temps.clone(),
            complex: false,
            others,
        };
        (plan, new)
    }

    /// The plan of node `root`: only the nodes it needs, renumbered.
    pub fn sub(&self, root: usize) -> Plan {
        let (nodes, root) = super::prune(self.nodes.clone(), root);
        let complex = self.complex && matches!(nodes[root].kind, NodeKind::Pair { .. });
        Plan {
            text: self.text.clone(),
            inputs: self.inputs.clone(),
            nodes,
            root,
            temps: self.temps.clone(),
            complex,
            others: vec![],
        }
    }
}

/// What a `dsk worker` process holds besides its task (the binary's pages, the allocator, codec
/// contexts): the processes scheduler counts it for every child in flight.
pub const PROCESS_BYTES: u64 = 16 << 20;

impl Builder<'_> {
    fn add_array(&mut self, a: ArrayDecl) -> ArrayId {
        self.arrays.push(a);
        self.arrays.len() - 1
    }

    /// Admit a stage: how many of its tasks fit at once next to what the run already holds.
    fn admit(
        &self,
        name: &str,
        tasks: u64,
        task_bytes: u64,
        held: u64,
        hint: impl FnOnce(u64) -> String,
    ) -> Result<usize> {
        let room = self.opts.memory.saturating_sub(held);
        if tasks > 0 && task_bytes > room {
            let what = if held > 0 {
                format!("one {name} task (next to {} of reduction partials held in memory)", human(held))
            } else {
                format!("one {name} task")
            };
            return Err(Error::Budget { what, needed: task_bytes, budget: self.opts.memory, hint: hint(room) });
        }
        // under the processes scheduler each task in flight is a process of its own
        let each = if self.opts.scheduler == "processes" { task_bytes + PROCESS_BYTES } else { task_bytes };
        let by_memory = room / each.max(1);
        Ok((self.opts.workers as u64).min(by_memory).min(tasks).max(1) as usize)
    }

    fn push_stage(&mut self, s: Stage) -> usize {
        self.stages.push(s);
        self.stages.len() - 1
    }

    /// Replace every reduction and scan of `plan` by a `Temp` leaf holding its result, adding
    /// the stages that compute them (innermost first). `targets`: the arrays the results of
    /// root nodes that are reductions or scans should go to. Reductions over the same axes of
    /// values with the same chunks that are ready together (`x.mean()` and `x.std()`, also
    /// within one expression: `(x - x.mean()) / x.std()`) share one stage, so their input is
    /// read once.
    fn boundaries(&mut self, mut plan: Plan, targets: &HashMap<usize, ArrayId>) -> Result<Plan> {
        let mut order = vec![];
        let mut seen = vec![false; plan.nodes.len()];
        for r in plan.roots() {
            post_order(&plan, r, &mut seen, &mut order);
        }
        let mut n_stage = 0;
        for (pos, &id) in order.iter().enumerate() {
            let node = plan.nodes[id].clone();
            let arrays: Vec<(usize, ArrayId)> = match &node.kind {
                NodeKind::Reduce { arg, axes, .. } => {
                    n_stage += 1;
                    let key = |n: &Node, axes: &[usize]| (n.shape.clone(), n.chunks.clone(), axes.to_vec());
                    let want = key(&plan.nodes[*arg], axes);
                    let mut members = vec![id];
                    for &other in &order[pos + 1..] {
                        if let NodeKind::Reduce { arg: oa, axes: ox, .. } = &plan.nodes[other].kind {
                            if key(&plan.nodes[*oa], ox) == want && ready(&plan, *oa) {
                                members.push(other);
                            }
                        }
                    }
                    self.reduction(&plan, &members, n_stage, targets)?
                }
                NodeKind::Scan { arg, axis, prod } => {
                    n_stage += 1;
                    let sub = plan.sub(*arg);
                    vec![(id, self.scan(sub, &node, *axis, *prod, id, n_stage, targets.get(&id).copied())?)]
                }
                _ => continue,
            };
            for (id, array) in arrays {
                plan.temps.push(TempInfo { array });
                plan.nodes[id].kind = NodeKind::Temp { temp: plan.temps.len() - 1 };
            }
        }
        let (nodes, roots) = super::prune_many(plan.nodes.clone(), &plan.roots());
        Ok(Plan { nodes, root: roots[0], others: roots[1..].to_vec(), ..plan })
    }

    /// The array holding the result of boundary node `id`: `target` when given, else a new one in
    /// the work dir.
    fn result_array(&mut self, node: &Node, id: usize, target: Option<ArrayId>) -> ArrayId {
        match target {
            Some(t) => t,
            None => self.add_array(work_array(
                format!("result of #{id} {}", node.label),
                format!("node-{id}.zarr"),
                node.shape.clone(),
                node.chunks.clone(),
                node.dtype,
            )),
        }
    }

    /// The stages of the reductions `members` of `plan` (same axes, arguments of one shape and
    /// chunking): one partials stage folding all of them from the same tiles, one finalize stage
    /// writing each result. Returns each member's result array.
    fn reduction(
        &mut self,
        plan: &Plan,
        members: &[usize],
        n_stage: usize,
        targets: &HashMap<usize, ArrayId>,
    ) -> Result<Vec<(usize, ArrayId)>> {
        struct Member {
            id: usize,
            node: Node,
            arg: usize,
            op: ReduceOp,
            keepdims: bool,
            ddof: f64,
        }
        let mut ms = vec![];
        let mut axes = vec![];
        for &id in members {
            let node = plan.nodes[id].clone();
            let NodeKind::Reduce { arg, op, axes: ax, keepdims, ddof } = node.kind.clone() else {
                return Err(Error::Internal(format!("node {id} is not a reduction")));
            };
            axes = ax;
            ms.push(Member { id, node, arg, op, keepdims, ddof });
        }
        let args: Vec<usize> = ms.iter().map(|m| m.arg).collect();
        let (sub, roots) = plan.sub_many(&args);
        let id = ms[0].id;
        let a = sub.root().clone();
        let axes = axes.as_slice();
        let reds: Vec<Red> =
            ms.iter().zip(&roots).map(|(m, &root)| Red { root, op: m.op, input: sub.nodes[root].dtype }).collect();
        let label = ms.iter().map(|m| format!("#{} {}", m.id, m.node.label)).collect::<Vec<_>>().join(", ");
        let nd = a.shape.len();
        let kept: Vec<usize> = (0..nd).filter(|x| !axes.contains(x)).collect();
        let in_grid = Grid::new(a.shape.clone(), a.chunks.iter().map(|&c| c.max(1)).collect());
        let out_grid =
            Grid::new(kept.iter().map(|&k| a.shape[k]).collect(), kept.iter().map(|&k| a.chunks[k].max(1)).collect());
        let state_dtypes: Vec<DType> = reds.iter().flat_map(|r| r.op.state_dtypes(r.input)).collect();
        let state_bytes: u64 = state_dtypes.iter().map(|d| d.size() as u64).sum();
        let block_bytes = out_grid.chunk_len() * state_bytes;
        let item = reds.iter().map(|r| r.input.size() as u64).max().unwrap_or(1);
        let chunk_in_bytes = in_grid.chunk_len() * item;
        let gshape = in_grid.grid_shape();
        let n_red: u64 = axes.iter().map(|&x| gshape[x]).product();
        // (a --split-every beyond the chunks there are changes nothing)
        let per_task = match self.opts.split_every {
            Some(s) => s.min(n_red.max(1)),
            None => (PARTIAL_TASK_BYTES / chunk_in_bytes.max(1)).clamp(1, PARTIAL_TASK_CHUNKS),
        };
        let split = self.opts.split_every.unwrap_or(DEFAULT_SPLIT).clamp(2, n_red.div_ceil(per_task.max(1)).max(2));
        let nblocks = out_grid.nchunks();
        let mut spec = PartialsSpec {
            expr: sub.clone(),
            reds,
            axes: axes.to_vec(),
            in_grid: in_grid.clone(),
            out_grid: out_grid.clone(),
            per_task,
            per_block: if n_red == 0 { 0 } else { n_red.div_ceil(per_task) },
            table: None,
            store: PartialStore::Memory { bytes: 0 },
        };
        // chunks that need the same source chunks (mirrors, transposes) share a task when the
        // grid is small enough to list its tasks
        if in_grid.nchunks() <= TABLE_MAX && shares_sources(&sub, &in_grid) {
            let mut table = vec![];
            for b in 0..nblocks {
                let chunks: Vec<u64> = (0..n_red).map(|r| spec.chunk_of(b, r)).collect();
                let feet: Vec<Vec<(usize, u64)>> =
                    chunks.iter().map(|&c| footprint(&sub, &in_grid.chunk_region(&in_grid.chunk_index(c)))).collect();
                let mut merged: Vec<Vec<usize>> = vec![];
                for g in group_by_footprint(&feet, per_task as usize, None) {
                    match merged.last_mut() {
                        Some(last) if (last.len() + g.len()) as u64 <= per_task => last.extend(g),
                        _ => merged.push(g),
                    }
                }
                for (g, members) in merged.into_iter().enumerate() {
                    table.push(PartialTask {
                        block: b,
                        g: g as u64,
                        chunks: members.into_iter().map(|m| chunks[m]).collect(),
                    });
                }
            }
            spec.per_block = table.iter().map(|t| t.g + 1).max().unwrap_or(0);
            spec.table = Some(table);
        }
        let tasks = spec.tasks();
        // a task holds the source chunks its remaining input chunks still need, a tile's
        // temporaries and three block partials
        let sample = in_grid.chunk_region(&vec![0; nd]);
        let tile = lower::tile_peak(&sub, &sample);
        let task_bytes = sample_tasks(tasks)
            .into_iter()
            .map(|t| live_bytes(&sub, &in_grid, &spec.task(t).chunks))
            .max()
            .unwrap_or(0)
            + tile
            + lower::decode_transient(&sub)
            + 3 * block_bytes;
        let partial_bytes = tasks * (block_bytes + PARTIAL_OVERHEAD);
        let in_memory = !self.opts.processes && partial_bytes <= self.opts.memory / 4;
        if in_memory {
            spec.store = PartialStore::Memory { bytes: partial_bytes };
        } else {
            let mut shape = vec![spec.per_block.max(1)];
            shape.extend_from_slice(&out_grid.shape);
            let mut chunks = vec![1];
            chunks.extend_from_slice(&out_grid.chunks);
            let arrays = state_dtypes
                .into_iter()
                .enumerate()
                .map(|(c, d)| {
                    self.add_array(work_array(
                        format!("partials of {label} (component {c})"),
                        format!("partials-{id}/c{c}.zarr"),
                        shape.clone(),
                        chunks.clone(),
                        d,
                    ))
                })
                .collect();
            spec.store = PartialStore::Disk { arrays };
        }
        let held_during = if in_memory { partial_bytes } else { 0 };
        let name = format!("reduce-{n_stage}");
        let parallel = self.admit(&name, tasks, task_bytes, self.held + held_during, |room| {
            format!(
                "a task holds its input's source chunks, a tile and a block of partials ({} here): rechunk the input smaller, or raise --memory",
                human(room)
            )
        })?;
        let read_bytes = in_grid.shape.iter().product::<u64>() * item;
        let what = format!(
            "partials of {label} of ({}): {} input chunks {} → {} block{} {}, {} per task{}; partials {} {}",
            sub.text_of_root(),
            in_grid.nchunks(),
            tuple(&in_grid.chunks),
            nblocks,
            if nblocks == 1 { "" } else { "s" },
            tuple(&out_grid.chunks),
            if spec.table.is_some() {
                "listed groups of chunks sharing source chunks".to_string()
            } else {
                let k = per_task.min(n_red);
                format!("up to {k} chunk{}", if k == 1 { "" } else { "s" })
            },
            if spec.table.is_some() { format!(" (up to {per_task})") } else { String::new() },
            human(partial_bytes),
            if in_memory { "in memory" } else { "spilled to the work dir" },
        );
        let partials_stage = self.push_stage(Stage {
            name: name.clone(),
            what,
            op: StageOp::Partials(spec.clone()),
            tasks,
            task_bytes,
            held_bytes: self.held + held_during,
            read_bytes,
            write_bytes: if in_memory { 0 } else { partial_bytes },
            parallel,
            local: false,
        });
        // finalize: one task per block, merging its partials in a tree of fan-in `split`
        let outs: Vec<FinalOut> = ms
            .iter()
            .map(|m| FinalOut {
                ddof: m.ddof,
                keepdims: m.keepdims,
                out: self.result_array(&m.node, m.id, targets.get(&m.id).copied()),
            })
            .collect();
        let max_count = spec.per_block;
        let levels = if max_count <= 1 { 1 } else { (max_count as f64).log(split as f64).ceil() as u64 + 1 };
        let out_block: u64 = ms.iter().map(|m| out_grid.chunk_len() * m.node.dtype.size() as u64).sum();
        let fin_bytes = (split * levels + 2) * block_bytes + 2 * out_block;
        let fin_parallel = self.admit(&format!("{name} merge"), nblocks, fin_bytes, self.held + held_during, |_| {
            "use smaller chunks along the kept axes (a merge holds partials of one block), or raise --memory".into()
        })?;
        self.push_stage(Stage {
            name: format!("{name}-merge"),
            what: format!(
                "merge the partials of each block (fan-in {split}) and finalize {}",
                ms.iter()
                    .zip(&outs)
                    .map(|(m, o)| format!("#{} {} into a{} {}", m.id, m.node.label, o.out, tuple(&m.node.shape)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            op: StageOp::Finalize(FinalizeSpec {
                partials: partials_stage,
                outs: outs.clone(),
                axes: axes.to_vec(),
                nd,
                split,
            }),
            tasks: nblocks,
            task_bytes: fin_bytes,
            held_bytes: self.held + held_during,
            read_bytes: if in_memory { 0 } else { partial_bytes },
            write_bytes: ms.iter().map(|m| m.node.shape.iter().product::<u64>() * m.node.dtype.size() as u64).sum(),
            parallel: if in_memory { 1 } else { fin_parallel },
            local: in_memory,
        });
        let _ = id;
        Ok(ms.iter().zip(outs).map(|(m, o)| (m.id, o.out)).collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn scan(
        &mut self,
        sub: Plan,
        node: &Node,
        axis: usize,
        prod: bool,
        id: usize,
        n_stage: usize,
        target: Option<ArrayId>,
    ) -> Result<ArrayId> {
        let a = sub.root().clone();
        let grid = Grid::new(a.shape.clone(), a.chunks.iter().map(|&c| c.max(1)).collect());
        let gshape = grid.grid_shape();
        let out_dtype = node.dtype;
        let item = out_dtype.size() as u64;
        // totals and carries: one element per chunk along the axis
        let mut tshape = a.shape.clone();
        tshape[axis] = gshape[axis];
        let mut tchunks = grid.chunks.clone();
        tchunks[axis] = 1;
        let totals = self.add_array(work_array(
            format!("chunk totals of #{id} {}", node.label),
            format!("scan-{id}/totals.zarr"),
            tshape.clone(),
            tchunks.clone(),
            out_dtype,
        ));
        let carries = self.add_array(work_array(
            format!("carries of #{id} {}", node.label),
            format!("scan-{id}/carries.zarr"),
            tshape,
            tchunks.clone(),
            out_dtype,
        ));
        let out = self.result_array(node, id, target);
        let nchunks = grid.nchunks();
        let sample = grid.chunk_region(&vec![0; grid.ndim()]);
        let decoded = lower::decoded_bytes(&sub, &[&footprint(&sub, &sample)]).0;
        let chunk_out = sample.len() * item;
        let cross: u64 = tchunks.iter().product::<u64>() * item;
        let name = format!("scan-{n_stage}");
        let in_bytes = grid.shape.iter().product::<u64>() * a.dtype.size() as u64;
        let out_bytes = node.shape.iter().product::<u64>() * item;
        let hint = |room: u64| format!("use smaller chunks for the scanned array ({} fits)", human(room));
        let transient = lower::decode_transient(&sub);
        let t1 = decoded + transient + lower::tile_peak(&sub, &sample) + 2 * chunk_out + cross;
        let p1 = self.admit(&name, nchunks, t1, self.held, hint)?;
        let label = &node.label;
        self.push_stage(Stage {
            name: format!("{name}-totals"),
            what: format!(
                "the total along axis {axis} of each of {nchunks} chunks {} of #{id} {label}",
                tuple(&grid.chunks)
            ),
            op: StageOp::ScanTotals { expr: sub.clone(), axis, prod, grid: grid.clone(), totals },
            tasks: nchunks,
            task_bytes: t1,
            held_bytes: self.held,
            read_bytes: in_bytes,
            write_bytes: self.arrays[totals].nbytes(),
            parallel: p1,
            local: false,
        });
        let columns = nchunks / gshape[axis].max(1);
        let t2 = 4 * cross;
        let p2 = self.admit(&name, columns, t2, self.held, hint)?;
        self.push_stage(Stage {
            name: format!("{name}-carries"),
            what: format!(
                "running totals before each chunk, along {} column{} of chunks",
                columns,
                if columns == 1 { "" } else { "s" }
            ),
            op: StageOp::ScanCarries { axis, prod, grid: grid.clone(), totals, carries },
            tasks: columns,
            task_bytes: t2,
            held_bytes: self.held,
            read_bytes: self.arrays[totals].nbytes(),
            write_bytes: self.arrays[carries].nbytes(),
            parallel: p2,
            local: false,
        });
        // the chunk computed, its scanned copy and the values written, then the write itself
        let scratch = self.arrays[out].spec.codec.scratch_bytes(chunk_out);
        let t3 = decoded
            + transient
            + lower::tile_peak(&sub, &sample)
            + 2 * chunk_out
            + lower::write_bytes(chunk_out, scratch)
            + 2 * cross;
        let p3 = self.admit(&name, nchunks, t3, self.held, hint)?;
        self.push_stage(Stage {
            name,
            what: format!("#{id} {label}: each chunk scanned from its carry into a{out} {}", tuple(&node.shape)),
            op: StageOp::ScanApply { expr: sub, axis, prod, grid, carries, out },
            tasks: nchunks,
            task_bytes: t3,
            held_bytes: self.held,
            read_bytes: in_bytes + self.arrays[carries].nbytes(),
            write_bytes: out_bytes,
            parallel: p3,
            local: false,
        });
        Ok(out)
    }

    /// The stage writing `plan`'s root into array `out`; with `group`, output chunks that share
    /// source chunks share a task.
    fn compute(&mut self, plan: Plan, out: ArrayId, name: &str, band: bool, group: bool) -> Result<()> {
        let decl = self.arrays[out].clone();
        let grid = decl.grid();
        let item = decl.spec.dtype.size() as u64;
        let layout = OutputLayout {
            grid: grid.clone(),
            itemsize: item,
            codec_scratch: decl.spec.codec.scratch_bytes(grid.chunk_len() * item),
        };
        let skip = match &plan.root().kind {
            NodeKind::Gen { gen: Generator::Const(c) } => {
                !decl.write_empty_chunks && Scalar::from(*c) == decl.spec.fill && plan.root().dtype == decl.spec.dtype
            }
            _ => false,
        };
        let leaves = || -> u64 {
            plan.nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| lower::leaf_grid(&plan, *i).is_some())
                .map(|(_, n)| n.shape.iter().product::<u64>() * n.dtype.size() as u64)
                .sum()
        };
        let (groups, task_bytes, read_bytes, reads, distinct) = if skip {
            (Groups::Each { chunks: 0 }, 0, 0, 0, 0)
        } else if let Some((inner, streamed)) = decl.shards_by_inner() {
            // a shard per task, made one inner chunk at a time: the task holds the source chunks
            // still needed (each forgotten after the last inner chunk that needs it), one inner
            // chunk's values and encoding, and the shard's file when it is not streamed to disk
            let n = grid.nchunks();
            let inner_bytes = inner.iter().product::<u64>() * item;
            let file = if streamed { 0 } else { grid.chunk_len() * item + grid.chunk_len() * item / 128 };
            let first = grid.chunk_region(&vec![0; grid.ndim()]);
            let inner_region =
                Region::new(first.start.clone(), inner.iter().zip(&first.shape).map(|(i, s)| *i.min(s)).collect());
            let member = lower::tile_peak(&plan, &inner_region)
                + lower::write_bytes(inner_bytes, decl.spec.codec.scratch_bytes(inner_bytes))
                + lower::decode_transient(&plan)
                + file;
            let held = sample_tasks(n)
                .into_iter()
                .map(|c| held_sources(&plan, &grid.chunk_region(&grid.chunk_index(c)), &inner))
                .max()
                .unwrap_or(0);
            (Groups::Each { chunks: n }, held + member, leaves(), 0, 0)
        } else if (group || band) && grid.nchunks() <= TABLE_MAX {
            let t = if band {
                lower::tasks(&plan, &layout, usize::MAX, Some(self.opts.memory), self.opts.workers)
            } else {
                lower::tasks(&plan, &layout, if group { MAX_GROUP } else { 1 }, None, 1)
            };
            let groups = if t.groups.iter().all(|g| g.len() == 1) {
                Groups::Each { chunks: t.groups.len() as u64 }
            } else {
                Groups::Table(t.groups)
            };
            (groups, t.task_bytes, t.read_bytes, t.chunk_reads, t.distinct_chunks)
        } else {
            // one chunk per task, sized from a sample of tasks
            let n = grid.nchunks();
            let member = lower::tile_peak(&plan, &grid.chunk_region(&vec![0; grid.ndim()]))
                + lower::write_bytes(grid.chunk_len() * item, layout.codec_scratch)
                + lower::decode_transient(&plan);
            let tb = sample_tasks(n)
                .into_iter()
                .map(|c| {
                    let f = footprint(&plan, &grid.chunk_region(&grid.chunk_index(c)));
                    lower::decoded_bytes(&plan, &[&f]).0
                })
                .max()
                .unwrap_or(0)
                + member;
            (Groups::Each { chunks: n }, tb, leaves(), 0, 0)
        };
        let tasks = groups.len();
        let inner = if band { self.opts.workers } else { 1 };
        let unit = if decl.spec.shard.is_some() { "shard" } else { "chunk" };
        let parallel = self.admit(name, tasks, task_bytes, self.held, |room| {
            format!("a task holds the source chunks it reads and its output {unit}; {} fits", human(room))
        })?;
        let per = groups.max_group();
        let what = format!(
            "{} → a{out} {}: {} output {unit}s {}{}{}",
            plan.text_of_root(),
            tuple(&decl.spec.shape),
            grid.nchunks(),
            tuple(&grid.chunks),
            if skip { ", all equal to the fill value: nothing to write".to_string() } else { String::new() },
            if per > 1 { format!(", up to {per} per task (chunks sharing source chunks)") } else { String::new() },
        ) + &if distinct > 0 {
            format!("; {reads} source chunk decodes of {distinct} chunks")
        } else {
            String::new()
        };
        self.push_stage(Stage {
            name: name.to_string(),
            what,
            op: StageOp::Compute { expr: plan, out, groups, inner },
            tasks,
            task_bytes,
            held_bytes: self.held,
            read_bytes,
            write_bytes: if skip { 0 } else { decl.nbytes() },
            parallel,
            local: false,
        });
        Ok(())
    }

    fn finish(
        self,
        command: &str,
        text: String,
        inputs: Vec<super::Input>,
        output: Option<ArrayId>,
        print: Vec<Print>,
        source: serde_json::Value,
    ) -> PhysicalPlan {
        let logical = super::physical::logical_id(command, &text, &inputs, output.map(|o| &self.arrays[o]), source);
        let scratch_bytes = self.arrays.iter().filter(|a| matches!(a.place, Place::Work(_))).map(|a| a.nbytes()).sum();
        PhysicalPlan {
            command: command.to_string(),
            text,
            inputs,
            arrays: self.arrays,
            stages: self.stages,
            output,
            also: vec![],
            print,
            memory: self.opts.memory,
            workers: self.opts.workers,
            scheduler: self.opts.scheduler.clone(),
            scratch_bytes,
            logical,
        }
    }
}

impl Plan {
    /// A short description of what the root computes, for `--explain`.
    pub fn text_of_root(&self) -> String {
        let n = self.root();
        match &n.kind {
            NodeKind::Input { input } => {
                format!("{} ({})", self.inputs[*input].name, self.inputs[*input].path.display())
            }
            NodeKind::Temp { temp } => format!("a{}", self.temps[*temp].array),
            _ if self.nodes.len() <= 12 => {
                let labels: Vec<&str> = self.nodes.iter().map(|n| n.label.as_str()).collect();
                labels.join(" · ")
            }
            _ => format!("{} fused operations ending in {}", self.nodes.len(), n.label),
        }
    }
}

/// True when node `id` depends on no reduction or scan still to be computed.
fn ready(plan: &Plan, id: usize) -> bool {
    let mut stack = vec![id];
    while let Some(n) = stack.pop() {
        if matches!(plan.nodes[n].kind, NodeKind::Reduce { .. } | NodeKind::Scan { .. }) {
            return false;
        }
        stack.extend(plan.nodes[n].args());
    }
    true
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

/// A few task indices to size a stage by: the first, the middle and the last.
/// The most bytes of decoded source chunks held at once while the shard `shard` is made one inner
/// chunk (of shape `inner`) at a time, in the order they are written: a source chunk is held from
/// the first inner chunk that needs it to the last.
fn held_sources(plan: &Plan, shard: &Region, inner: &[u64]) -> u64 {
    let parts = Grid::new(shard.shape.clone(), inner.to_vec());
    let feet: Vec<Vec<(usize, u64)>> = (0..parts.nchunks())
        .map(|k| {
            let r = parts.chunk_region(&parts.chunk_index(k));
            let start = r.start.iter().zip(&shard.start).map(|(a, b)| a + b).collect();
            lower::footprint(plan, &Region::new(start, r.shape))
        })
        .collect();
    let mut last: HashMap<(usize, u64), usize> = HashMap::new();
    for (i, f) in feet.iter().enumerate() {
        for k in f {
            last.insert(*k, i);
        }
    }
    let mut live: HashMap<(usize, u64), u64> = HashMap::new();
    let mut peak = 0;
    for (i, f) in feet.iter().enumerate() {
        for k in f {
            live.entry(*k).or_insert_with(|| lower::decoded_bytes(plan, &[&vec![*k]]).0);
        }
        peak = peak.max(live.values().sum::<u64>());
        live.retain(|k, _| last.get(k).is_some_and(|&l| l > i));
    }
    peak
}

fn sample_tasks(n: u64) -> Vec<u64> {
    let mut v = vec![0, n / 2, n.saturating_sub(1)];
    v.retain(|&t| t < n);
    v.dedup();
    v
}

/// True when two chunks of `grid` need a common source chunk through something other than
/// neighbours (a mirror, a transpose): then listing groups pays.
fn shares_sources(plan: &Plan, grid: &Grid) -> bool {
    plan.nodes.iter().any(|n| match &n.kind {
        NodeKind::Index { sel, .. } => sel.iter().any(|s| s.step < 0),
        NodeKind::Transpose { .. } => true,
        _ => false,
    }) && grid.nchunks() > 1
}

/// Peak bytes of source chunks held while folding `chunks` in order, dropping each source chunk
/// once no later chunk of the task needs it.
fn live_bytes(plan: &Plan, grid: &Grid, chunks: &[u64]) -> u64 {
    let feet: Vec<Vec<(usize, u64)>> =
        chunks.iter().map(|&c| footprint(plan, &grid.chunk_region(&grid.chunk_index(c)))).collect();
    let mut loaded: HashSet<(usize, u64)> = HashSet::new();
    let mut peak = 0;
    for pos in 0..feet.len() {
        loaded.extend(feet[pos].iter().copied());
        let later: HashSet<(usize, u64)> = feet[pos..].iter().flatten().copied().collect();
        loaded.retain(|k| later.contains(k));
        let live: Vec<(usize, u64)> = loaded.iter().copied().collect();
        peak = peak.max(lower::decoded_bytes(plan, &[&live]).0);
    }
    peak
}

/// The physical plan of an expression (its array plan) writing to `target`.
pub fn expression(command: &str, plan: Plan, target: Target, opts: &PlanOptions) -> Result<PhysicalPlan> {
    expressions(command, plan, vec![(target, None)], opts)
}

/// The physical plan of the results of `plan` (its root, then its others), each written to its
/// target; a printed result with a label is printed after it. What the results share is
/// computed once: common nodes are one node, and reductions ready together share a stage.
pub fn expressions(
    command: &str,
    plan: Plan,
    targets: Vec<(Target, Option<String>)>,
    opts: &PlanOptions,
) -> Result<PhysicalPlan> {
    let roots = plan.roots();
    if roots.len() != targets.len() {
        return Err(Error::Internal(format!("{} results for {} targets", roots.len(), targets.len())));
    }
    let source = serde_json::to_value(&plan).unwrap_or_default();
    let inputs = plan.inputs.clone();
    let text = plan.text.clone();
    let mut b = Builder { opts, arrays: vec![], stages: vec![], held: 0 };
    let several = roots.len() > 1;
    let mut outs = vec![];
    let mut prints = vec![];
    let mut exports = vec![];
    let mut outputs = vec![];
    let mut direct: HashMap<usize, ArrayId> = HashMap::new();
    for (k, (&r, (target, label))) in roots.iter().zip(targets).enumerate() {
        let root = plan.nodes[r].clone();
        let what = if several { format!("result {}", k + 1) } else { "the result".into() };
        let file = if several { format!("result-{}.zarr", k + 1) } else { "result.zarr".into() };
        let out = match target {
            Target::Array { path, spec } => {
                let out =
                    b.add_array(ArrayDecl { what, place: Place::Output(path), spec: *spec, write_empty_chunks: false });
                outputs.push(out);
                out
            }
            Target::File { path, format, chunks, dtype } => {
                let mut decl = work_array(format!("{what}, to export"), file, root.shape.clone(), chunks, dtype);
                // a complex result is stored complex, which the export writes as such
                decl.spec.complex = plan.complex;
                let out = b.add_array(decl);
                exports.push((out, path, format));
                out
            }
            Target::Print { dtype, json } => {
                // a 0-d result; a complex one is its view, its two parts
                let parts = if plan.complex { vec![2] } else { vec![] };
                let mut decl = work_array(what, file, parts.clone(), parts, root.dtype);
                decl.spec.complex = plan.complex;
                let out = b.add_array(decl);
                prints.push(Print { array: out, label, dtype, json });
                out
            }
        };
        // a reduction or scan at a root writes straight into the result when it has the result's
        // chunks and dtype (once: a result asked for twice is copied the second time)
        let decl = &b.arrays[out];
        let is_direct = matches!(root.kind, NodeKind::Reduce { .. } | NodeKind::Scan { .. })
            && !direct.contains_key(&r)
            && decl.spec.dtype == root.dtype
            && decl.spec.shard.is_none()
            && decl.grid()
                == Grid::new(
                    root.shape.clone(),
                    root.chunks.iter().zip(&root.shape).map(|(&c, &n)| c.max(1).min(n.max(1))).collect(),
                );
        if is_direct {
            direct.insert(r, out);
        }
        outs.push((out, is_direct));
    }
    let plan = b.boundaries(plan, &direct)?;
    for (k, (&r, &(out, is_direct))) in plan.roots().iter().zip(&outs).enumerate() {
        if !is_direct {
            // (`reduce-1` … name reduction stages)
            let name = if several { format!("{command}-out{}", k + 1) } else { command.to_string() };
            b.compute(plan.sub(r), out, &name, false, true)?;
        }
    }
    for (out, path, format) in exports {
        export_stage(&mut b, out, path, format)?;
    }
    let mut outputs = outputs.into_iter();
    let output = outputs.next();
    let mut p = b.finish(command, text, inputs, output, prints, source);
    p.also = outputs.collect();
    Ok(p)
}

fn export_stage(b: &mut Builder<'_>, array: ArrayId, path: Option<PathBuf>, format: FileFormat) -> Result<()> {
    let shape = b.arrays[array].spec.shape.clone();
    let nbytes = b.arrays[array].nbytes();
    let item = b.arrays[array].spec.dtype.size() as u64;
    let grid = b.arrays[array].grid();
    let sizing =
        export_sizing(b.opts, nbytes, item, grid.chunk_len() * item, band_bytes(&shape, &grid.chunks, item), format)?;
    let block_bytes = sizing.block;
    let sel: Vec<AxisSel> = shape.iter().map(|&n| AxisSel::full(n)).collect();
    let blocks = crate::exec::export::count_blocks(&sel, &grid.chunks, item, block_bytes);
    let dest = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "stdout".into());
    b.push_stage(Stage {
        name: "export".into(),
        what: format!(
            "a{array} {} as {} → {dest}, in blocks of at most {}",
            tuple(&shape),
            format_name(format),
            human(block_bytes)
        ),
        op: StageOp::Export {
            array: ExportSource::Array(array),
            sel,
            format,
            path,
            block_bytes,
            decoders: sizing.decoders,
        },
        tasks: blocks,
        task_bytes: sizing.task,
        held_bytes: 0,
        read_bytes: nbytes,
        write_bytes: nbytes,
        parallel: 1,
        local: true,
    });
    Ok(())
}

/// How an export reads: blocks of at most `block` bytes, `decoders` chunks decoded at once, and
/// what it holds in all (`task`).
#[derive(Clone, Copy, Debug)]
struct ExportSizing {
    block: u64,
    task: u64,
    decoders: usize,
}

/// A block that holds less than a band of whole chunks along the first axis decodes the band's
/// chunks once per block; at most this many times each, else the export is refused.
const MAX_REDECODE: u64 = 16;

/// Blocks of an export and what the export holds: a block being read (its bounding box and the
/// gathered selection), one waiting, one being written with its encoded bytes (text is up to three
/// times the binary size), the write buffer, and the chunks being decoded (each with its
/// stored bytes), `decoders` at a time: as many as `--workers` allows and a quarter of the bound
/// holds, at least one. `band` is the bytes of one band of chunks along the first axis: blocks
/// smaller than it decode chunks more than once.
fn export_sizing(
    opts: &PlanOptions,
    nbytes: u64,
    item: u64,
    chunk_bytes: u64,
    band: u64,
    format: FileFormat,
) -> Result<ExportSizing> {
    let write_buffer = crate::exec::export::write_buffer(opts.memory) as u64;
    let copies = if matches!(format, FileFormat::Csv | FileFormat::Json) { 7 } else { 5 };
    // zarrs holds the stored bytes, the decoded chunk and a copy of the part read
    let per_decode = 3 * chunk_bytes.max(item);
    let decoders = (opts.memory / 4 / per_decode).clamp(1, opts.workers.max(1) as u64);
    let decoding = decoders * per_decode;
    let block = (opts.memory.saturating_sub(write_buffer + decoding) / copies).min(nbytes);
    // the smallest block that decodes no chunk more than MAX_REDECODE times
    let least = band.min(nbytes).div_ceil(MAX_REDECODE).max(item);
    if nbytes > 0 && block < least {
        return Err(Error::Budget {
            what: format!(
                "an export whose chunks decode {} each and whose bands of chunks hold {}",
                human(chunk_bytes),
                human(band)
            ),
            needed: write_buffer + per_decode + copies * least,
            budget: opts.memory,
            hint: String::new(),
        });
    }
    let block = block.max(item);
    Ok(ExportSizing { block, task: copies * block + write_buffer + decoding, decoders: decoders as usize })
}

/// Bytes of one band of chunks along the first axis of a selection of lengths `sel_len` from an
/// array with chunks `chunks`: the data a block must hold to decode each chunk once.
fn band_bytes(sel_len: &[u64], chunks: &[u64], item: u64) -> u64 {
    match sel_len.split_first() {
        None => item,
        Some((&n0, rest)) => n0.min(chunks[0].max(1)) * rest.iter().product::<u64>() * item,
    }
}

fn format_name(f: FileFormat) -> &'static str {
    match f {
        FileFormat::Npy => "npy",
        FileFormat::Csv => "csv",
        FileFormat::Raw => "raw",
        FileFormat::Json => "json",
    }
}

/// The smallest `--memory` (in steps of 64 KiB) for which `plan` succeeds, from `needed` up:
/// checked, since what a plan needs can grow with the bound (more tasks in flight, partials kept
/// in memory).
pub fn least_memory<T>(opts: &PlanOptions, needed: u64, plan: impl Fn(&PlanOptions) -> Result<T>) -> Option<u64> {
    let mut o = opts.clone();
    let mut m = needed.max(opts.memory);
    for _ in 0..16 {
        o.memory = m.next_multiple_of(64 << 10);
        match plan(&o) {
            Ok(_) => return Some(o.memory),
            Err(Error::Budget { needed, .. }) => m = needed.max(o.memory + (o.memory >> 3)),
            Err(_) => return None,
        }
    }
    None
}

/// A byte size as `--memory` takes it (`64MiB`, `384KiB`), never below `bytes`.
pub fn mem_arg(bytes: u64) -> String {
    if bytes.is_multiple_of(1 << 30) {
        format!("{}GiB", bytes >> 30)
    } else if bytes >= 16 << 20 || bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes.div_ceil(1 << 20))
    } else {
        format!("{}KiB", bytes.div_ceil(1 << 10))
    }
}

/// `dsk create` from a generator (`ones`, `random`, `arange`, …): one compute stage whose tasks
/// fill and write the output's chunks (none for a constant equal to the fill value).
pub fn generate(
    gen_plan: Plan,
    path: &Path,
    spec: CreateSpec,
    write_empty: bool,
    opts: &PlanOptions,
) -> Result<PhysicalPlan> {
    let mut b = Builder { opts, arrays: vec![], stages: vec![], held: 0 };
    let text = gen_plan.text.clone();
    let source = serde_json::to_value(&gen_plan).unwrap_or_default();
    let out = b.add_array(ArrayDecl {
        what: "the new array".into(),
        place: Place::Output(path.to_path_buf()),
        spec,
        write_empty_chunks: write_empty,
    });
    b.compute(gen_plan, out, "create", false, false)?;
    Ok(b.finish("create", text, vec![], Some(out), vec![], source))
}

/// `dsk create from-npy` / `from-raw`: one import stage, a chunk per task.
pub fn import(file: FileSource, path: &Path, spec: CreateSpec, opts: &PlanOptions) -> Result<PhysicalPlan> {
    let source = serde_json::to_value(&file).unwrap_or_default();
    let mut b = Builder { opts, arrays: vec![], stages: vec![], held: 0 };
    let out = b.add_array(ArrayDecl {
        what: "the new array".into(),
        place: Place::Output(path.to_path_buf()),
        spec,
        write_empty_chunks: false,
    });
    let decl = b.arrays[out].clone();
    let grid = decl.grid();
    let item = decl.spec.dtype.size() as u64;
    let unit = grid.chunk_len() * item;
    let task_bytes = unit + lower::write_bytes(unit, decl.spec.codec.scratch_bytes(unit));
    let tasks = grid.nchunks();
    let parallel = b.admit("create", tasks, task_bytes, 0, |room| {
        let fit = crate::grid::scaled_chunks(&grid.chunks, 0.9 * room as f64 / task_bytes.max(1) as f64);
        format!("use smaller chunks, e.g. --chunks {}, or raise --memory", crate::grid::chunks_arg(&fit))
    })?;
    let text = format!("{} → {}", file.path.display(), path.display());
    b.push_stage(Stage {
        name: "create".into(),
        what: format!(
            "copy {} ({} {}) into a{out}, {} chunks {}",
            file.path.display(),
            tuple(&file.shape),
            file.dtype,
            tasks,
            tuple(&grid.chunks)
        ),
        op: StageOp::Import { file, out },
        tasks,
        task_bytes,
        held_bytes: 0,
        read_bytes: decl.nbytes(),
        write_bytes: decl.nbytes(),
        parallel,
        local: false,
    });
    Ok(b.finish("create", text, vec![], Some(out), vec![], source))
}

/// `dsk export`: one local stage streaming a selection of an input array.
pub fn export(
    input: super::Input,
    sel: Vec<AxisSel>,
    format: FileFormat,
    path: Option<PathBuf>,
    opts: &PlanOptions,
) -> Result<PhysicalPlan> {
    let item = input.dtype.size() as u64;
    let out_shape: Vec<u64> = sel.iter().filter(|s| s.keep).map(|s| s.len).collect();
    let nbytes = out_shape.iter().product::<u64>() * item;
    let chunks: Vec<u64> = input.chunks.iter().zip(&input.shape).map(|(&c, &n)| c.min(n.max(1))).collect();
    let chunk_bytes = chunks.iter().product::<u64>() * item;
    // the band along the first axis of the selection, in the input's rows (steps skip rows)
    let sel_len: Vec<u64> = sel.iter().map(|s| s.len).collect();
    let sel_chunks: Vec<u64> =
        sel.iter().zip(&chunks).map(|(s, &c)| c.div_ceil(s.step.unsigned_abs().max(1))).collect();
    let band = band_bytes(&sel_len, &sel_chunks, item);
    let sizing = export_sizing(opts, nbytes, item, chunk_bytes, band, format)?;
    let (block_bytes, task_bytes) = (sizing.block, sizing.task);
    let ntasks = crate::exec::export::count_blocks(&sel, &chunks, item, block_bytes);
    let dest = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "stdout".into());
    let text = format!("{} as {} → {dest}", input.path.display(), format_name(format));
    let stage = Stage {
        name: "export".into(),
        what: format!(
            "selection {} of {} as {} → {dest}, in blocks of at most {}",
            tuple(&out_shape),
            input.path.display(),
            format_name(format),
            human(block_bytes)
        ),
        op: StageOp::Export {
            array: ExportSource::Input(0),
            sel,
            format,
            path,
            block_bytes,
            decoders: sizing.decoders,
        },
        tasks: ntasks,
        task_bytes,
        held_bytes: 0,
        read_bytes: nbytes,
        write_bytes: nbytes,
        parallel: 1,
        local: true,
    };
    Ok(PhysicalPlan {
        command: "export".into(),
        text,
        inputs: vec![input],
        arrays: vec![],
        stages: vec![stage],
        output: None,
        print: vec![],
        also: vec![],
        memory: opts.memory,
        workers: opts.workers,
        scheduler: opts.scheduler.clone(),
        scratch_bytes: 0,
        logical: String::new(),
    })
}

/// For [`super::rechunk`]: a builder over these options.
pub(super) fn with_builder<T>(
    opts: &PlanOptions,
    f: impl FnOnce(&mut RechunkBuilder<'_>) -> Result<T>,
) -> Result<(T, Vec<ArrayDecl>, Vec<Stage>)> {
    let mut b = RechunkBuilder(Builder { opts, arrays: vec![], stages: vec![], held: 0 });
    let t = f(&mut b)?;
    Ok((t, b.0.arrays, b.0.stages))
}

/// The planner's builder, as the rechunk planner uses it.
pub(super) struct RechunkBuilder<'a>(Builder<'a>);

impl RechunkBuilder<'_> {
    pub fn add_array(&mut self, a: ArrayDecl) -> ArrayId {
        self.0.add_array(a)
    }

    pub fn compute(&mut self, plan: Plan, out: ArrayId, name: &str, band: bool, group: bool) -> Result<()> {
        self.0.compute(plan, out, name, band, group)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn compute_blocks(
        &mut self,
        plan: Plan,
        out: ArrayId,
        name: &str,
        groups: Groups,
        task_bytes: u64,
        read_bytes: u64,
        what: String,
    ) -> Result<()> {
        let b = &mut self.0;
        let tasks = groups.len();
        let parallel = b.admit(name, tasks, task_bytes, 0, |room| format!("{} fits", human(room)))?;
        let write_bytes = b.arrays[out].nbytes();
        b.push_stage(Stage {
            name: name.to_string(),
            what,
            op: StageOp::Compute { expr: plan, out, groups, inner: b.opts.workers },
            tasks,
            task_bytes,
            held_bytes: 0,
            read_bytes,
            write_bytes,
            parallel,
            local: false,
        });
        Ok(())
    }

    pub fn work_array(what: String, file: String, shape: Vec<u64>, chunks: Vec<u64>, dtype: DType) -> ArrayDecl {
        work_array(what, file, shape, chunks, dtype)
    }
}
