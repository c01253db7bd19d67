//! Pictures of a physical plan, like Dask's `.visualize()` without Python or Graphviz: `dsk graph`
//! and `--graph FILE` on every computing command.
//!
//! Two levels, both built from the [`PhysicalPlan`] alone (nothing is read or run):
//! - **tasks**: one node per task of every stage, labelled with its fused operation chain
//!   (`index → multiply → mean partial`), and a data node per chunk it reads or writes (input
//!   chunks, chunks of the output, work-directory chunks such as spilled partials and scan
//!   totals/carries). Which chunks a task reads comes from the plan's own region arithmetic
//!   ([`crate::plan::lower::leaf_reads`]), the same the executor uses. A reduction's finalize task
//!   is drawn with the levels of its merge tree (fan-in `split`) as nodes of their own.
//! - **stages**: one node per stage (tasks, chunk shape, projected memory, bytes read and written)
//!   between the arrays it reads and writes.
//!
//! A [`Graph`] is laid out by [`layout`] (layered, Sugiyama-style) and written by [`render`] as SVG
//! (and PNG through [`super::draw::svg_to_png`]) or as DOT. This module decides nothing about the
//! plan; it only draws it.

mod layout;
mod render;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::draw::{self, PictureFormat};
use crate::error::{human, Error, Result};
use crate::grid::{tuple, unravel, Grid, Region};
use crate::plan::physical::{ArrayId, ExportSource, PartialStore, PhysicalPlan, Place, StageOp};
use crate::plan::{lower, NodeKind, Plan};

pub use render::{to_dot, to_svg};

/// Without a level, the tasks are drawn when their graph has at most this many nodes…
pub const AUTO_TASK_NODES: usize = 500;
/// … and at most this many nodes side by side in one layer; else the stages.
pub const AUTO_TASK_WIDTH: usize = 64;
/// `--level tasks` refuses a task graph of more nodes than this.
pub const MAX_TASK_NODES: usize = 2000;

/// Which picture of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// One node per task and per chunk read or written.
    Tasks,
    /// One node per stage and per array.
    Stages,
}

/// What a node stands for; each kind has its own shape and colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An input array, or a chunk of it that a task reads.
    Input,
    /// The command's output array, or a chunk of it.
    Output,
    /// An array (or chunk) in the work directory: intermediates, spilled partials, scan totals.
    Work,
    /// Reduction partials held in memory between two stages.
    Memory,
    /// A file read or written whole (import, export), or standard output.
    File,
    /// A task.
    Task,
    /// A level of a reduction's merge tree, inside a finalize task.
    Level,
    /// A stage (stages level).
    Stage,
}

impl Kind {
    /// The CSS class of the node in the SVG (`class="node task"`), also its legend text.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Input => "input",
            Kind::Output => "output",
            Kind::Work => "work",
            Kind::Memory => "memory",
            Kind::File => "file",
            Kind::Task => "task",
            Kind::Level => "level",
            Kind::Stage => "stage",
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Kind::Input => "input (read)",
            Kind::Output => "output (written)",
            Kind::Work => "work dir (spill, intermediate)",
            Kind::Memory => "partials in memory",
            Kind::File => "file / stdout",
            Kind::Task => "task",
            Kind::Level => "merge level (inside a finalize task)",
            Kind::Stage => "stage",
        }
    }
}

/// A node: its kind, the lines of its label and its tooltip.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub label: Vec<String>,
    pub tooltip: String,
}

/// A picture to lay out: nodes, and edges from a node to the nodes that depend on it.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub title: String,
    pub subtitle: String,
    pub nodes: Vec<Node>,
    pub edges: Vec<(usize, usize)>,
}

/// The stages-level picture of `plan` as a self-contained SVG document (to inline into HTML).
pub fn stage_svg(plan: &PhysicalPlan) -> String {
    to_svg(&stages(plan))
}

/// Draw `plan` into `path` (`.svg`, `.png`, `.dot`; `-` writes DOT on stdout) at `level`, or,
/// without one, at the tasks level when the task graph is small (a note on stderr says when it
/// is not). `arg` and `level_arg` name the options in errors.
pub fn write(plan: &PhysicalPlan, path: &Path, level: Option<Level>, arg: &str, level_arg: &str) -> Result<()> {
    let format = if path.as_os_str() == "-" {
        PictureFormat::Dot
    } else {
        PictureFormat::of(path, arg, &[PictureFormat::Svg, PictureFormat::Png, PictureFormat::Dot])?
    };
    let g = choose(plan, level, level_arg)?;
    let bytes = match format {
        PictureFormat::Dot => to_dot(&g).into_bytes(),
        PictureFormat::Png => {
            let (svg, w, h) = render::svg(&g);
            // sharp on screens, but never more than about 16 M pixels
            let scale = (16e6 / (w * h).max(1.0)).sqrt().min(2.0) as f32;
            draw::svg_to_png(&svg, scale)?
        }
        _ => to_svg(&g).into_bytes(),
    };
    draw::write_file(path, arg, &bytes)
}

/// The graph of `plan` at `level` (or the level chosen for it).
pub fn choose(plan: &PhysicalPlan, level: Option<Level>, level_arg: &str) -> Result<Graph> {
    match level {
        Some(Level::Stages) => Ok(stages(plan)),
        Some(Level::Tasks) => tasks(plan, MAX_TASK_NODES).map_err(|_| {
            Error::usage(
                level_arg,
                format!(
                    "the task graph of this plan ({} tasks) has more than {MAX_TASK_NODES} nodes — draw it with {level_arg} stages",
                    plan.total_tasks()
                ),
            )
        }),
        None => match tasks(plan, AUTO_TASK_NODES) {
            Ok(g) if layout::widest(g.nodes.len(), &g.edges) <= AUTO_TASK_WIDTH => Ok(g),
            _ => {
                eprintln!(
                    "dsk: the task graph of this plan ({} tasks) is too large to read (over {AUTO_TASK_NODES} nodes or {AUTO_TASK_WIDTH} side by side): drawing its stages — {level_arg} tasks draws every task",
                    plan.total_tasks()
                );
                Ok(stages(plan))
            }
        },
    }
}

fn title(plan: &PhysicalPlan) -> String {
    cut(&format!("dsk {}: {}", plan.command, plan.text), 160)
}

fn subtitle(plan: &PhysicalPlan, level: &str) -> String {
    format!(
        "{level} · {} task{} in {} stage{} · under --memory {} with {} worker{} ({})",
        plan.total_tasks(),
        if plan.total_tasks() == 1 { "" } else { "s" },
        plan.stages.len(),
        if plan.stages.len() == 1 { "" } else { "s" },
        human(plan.memory),
        plan.workers,
        if plan.workers == 1 { "" } else { "s" },
        plan.scheduler
    )
}

/// The operations a task of `expr` runs, in order: `ones → index → multiply`. Inputs, results of
/// earlier stages and literals are data, not operations, and are left out.
pub fn op_chain(expr: &Plan) -> String {
    let mut order = vec![];
    let mut seen = vec![false; expr.nodes.len()];
    post_order(expr, expr.root, &mut seen, &mut order);
    let ops: Vec<String> = order
        .into_iter()
        .filter_map(|id| {
            let n = &expr.nodes[id];
            match &n.kind {
                NodeKind::Input { .. } | NodeKind::Temp { .. } | NodeKind::Const { .. } => None,
                NodeKind::Gen { .. } => Some(n.label.split('(').next().unwrap_or("generate").to_string()),
                NodeKind::Map { op, .. } => Some(op.name().to_string()),
                NodeKind::Index { .. } => Some("getitem".to_string()),
                NodeKind::Transpose { .. } => Some("transpose".to_string()),
                NodeKind::Astype { .. } => Some(n.label.clone()),
                NodeKind::Pair { .. } => Some(n.label.clone()),
                NodeKind::Rechunk { .. } => Some("rechunk".to_string()),
                NodeKind::Reduce { op, .. } => Some(op.name().to_string()),
                NodeKind::Scan { prod, .. } => Some(if *prod { "cumprod" } else { "cumsum" }.to_string()),
            }
        })
        .collect();
    ops.join(" → ")
}

fn post_order(plan: &Plan, id: usize, seen: &mut [bool], out: &mut Vec<usize>) {
    if id >= seen.len() || seen[id] {
        return;
    }
    seen[id] = true;
    for a in plan.nodes[id].args() {
        post_order(plan, a, seen, out);
    }
    out.push(id);
}

/// `a → b` after a chain that may be empty.
fn then(chain: &str, op: &str) -> String {
    if chain.is_empty() {
        op.to_string()
    } else {
        format!("{chain} → {op}")
    }
}

/// Cut `s` to `n` characters with an ellipsis.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn short_path(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

fn array_name(plan: &PhysicalPlan, a: ArrayId) -> String {
    match plan.arrays.get(a).map(|d| &d.place) {
        Some(Place::Output(p)) => short_path(p),
        Some(Place::Work(p)) => p.display().to_string(),
        None => format!("a{a}"),
    }
}

fn array_kind(plan: &PhysicalPlan, a: ArrayId) -> Kind {
    match plan.arrays.get(a).map(|d| &d.place) {
        Some(Place::Output(_)) => Kind::Output,
        _ => Kind::Work,
    }
}

/// The chunk (C-order index) of `grid` holding `point`.
fn lin_of(grid: &Grid, point: &[u64]) -> u64 {
    let idx = grid.chunk_index_of(point);
    idx.iter().zip(crate::grid::strides(&grid.grid_shape())).map(|(i, s)| i * s).sum()
}

/// The chunks (C-order indices) of `grid` overlapping `region`, or `None` when more than `limit`.
fn chunks_in(grid: &Grid, region: &Region, limit: u64) -> Option<Vec<u64>> {
    if region.is_empty() || region.ndim() != grid.ndim() {
        return Some(vec![]);
    }
    let ranges: Vec<std::ops::Range<u64>> =
        (0..region.ndim()).map(|a| grid.chunks_overlapping(a, region.start[a], region.end(a))).collect();
    let counts: Vec<u64> = ranges.iter().map(|r| r.end.saturating_sub(r.start)).collect();
    let total = counts.iter().try_fold(1u64, |acc, &c| acc.checked_mul(c))?;
    if total > limit {
        return None;
    }
    let strides = crate::grid::strides(&grid.grid_shape());
    Some(
        (0..total)
            .map(|k| {
                let idx = unravel(k, &counts);
                idx.iter().zip(&ranges).zip(&strides).map(|((i, r), s)| (i + r.start) * s).sum()
            })
            .collect(),
    )
}

/// The region of a scan's totals and carries arrays for the chunk at `idx` of `grid`.
fn cross_region(grid: &Grid, idx: &[u64], axis: usize) -> Region {
    let r = grid.chunk_region(idx);
    let mut start = r.start.clone();
    let mut shape = r.shape.clone();
    if axis < start.len() {
        start[axis] = idx[axis];
        shape[axis] = 1;
    }
    Region::new(start, shape)
}

/// The task graph is larger than the limit it was built under.
#[derive(Debug)]
pub struct TooBig;

/// A data node of the task graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Input(PathBuf, u64),
    Array(ArrayId, u64),
    Spill(usize, u64, u64),
    File(PathBuf),
    Stdout,
}

struct Tasks<'a> {
    plan: &'a PhysicalPlan,
    g: Graph,
    limit: usize,
    data: HashMap<Key, usize>,
    edges: HashSet<(usize, usize)>,
    /// Where partial `g` of block `b` of a partials stage `s` comes from (its task, or its spill).
    partials: HashMap<(usize, u64, u64), usize>,
}

impl Tasks<'_> {
    fn node(&mut self, kind: Kind, label: Vec<String>, tooltip: String) -> std::result::Result<usize, TooBig> {
        if self.g.nodes.len() >= self.limit {
            return Err(TooBig);
        }
        self.g.nodes.push(Node { kind, label, tooltip });
        Ok(self.g.nodes.len() - 1)
    }

    fn edge(&mut self, a: usize, b: usize) -> std::result::Result<(), TooBig> {
        if self.edges.insert((a, b)) {
            if self.edges.len() > 16 * self.limit {
                return Err(TooBig);
            }
            self.g.edges.push((a, b));
        }
        Ok(())
    }

    /// The node of a chunk or file, made when first met.
    fn data(&mut self, key: Key) -> std::result::Result<usize, TooBig> {
        if let Some(&n) = self.data.get(&key) {
            return Ok(n);
        }
        let (kind, label, tooltip) = match &key {
            Key::Input(path, lin) => {
                let inp = self.plan.inputs.iter().find(|i| &i.path == path);
                let (name, idx) = match inp {
                    Some(i) => (i.name.clone(), Grid::new(i.shape.clone(), i.chunks.clone()).chunk_index(*lin)),
                    None => (short_path(path), vec![*lin]),
                };
                (
                    Kind::Input,
                    vec![format!("{name} {}", tuple(&idx))],
                    format!("chunk {} of the input {name} ({}), read", tuple(&idx), path.display()),
                )
            }
            Key::Array(a, lin) => {
                let (what, idx) = match self.plan.arrays.get(*a) {
                    Some(d) => (d.what.clone(), d.grid().chunk_index(*lin)),
                    None => (String::new(), vec![*lin]),
                };
                let name = array_name(self.plan, *a);
                (
                    array_kind(self.plan, *a),
                    vec![format!("{} {}", cut(&name, 24), tuple(&idx))],
                    format!("chunk {} of {name}: {what}", tuple(&idx)),
                )
            }
            Key::Spill(s, b, g) => {
                let stage = &self.plan.stages[*s];
                let bidx = match &stage.op {
                    StageOp::Partials(p) => p.out_grid.chunk_index(*b),
                    _ => vec![*b],
                };
                (
                    Kind::Work,
                    vec![format!("partial {g} of block {}", tuple(&bidx))],
                    format!("partial {g} of block {} of stage {}, spilled to the work dir", tuple(&bidx), stage.name),
                )
            }
            Key::File(p) => (Kind::File, vec![cut(&short_path(p), 32)], format!("the file {}", p.display())),
            Key::Stdout => (Kind::File, vec!["stdout".to_string()], "standard output".to_string()),
        };
        let n = self.node(kind, label, tooltip)?;
        self.data.insert(key, n);
        Ok(n)
    }

    /// Edges from the chunks that evaluating `region` of `expr`'s root reads to `task`.
    fn reads(&mut self, expr: &Plan, region: &Region, task: usize) -> std::result::Result<(), TooBig> {
        for (leaf, r) in lower::leaf_reads(expr, region) {
            let (grid, key): (Grid, Box<dyn Fn(u64) -> Key>) = match &expr.nodes[leaf].kind {
                NodeKind::Input { input } => {
                    let Some(inp) = expr.inputs.get(*input) else { continue };
                    let path = inp.path.clone();
                    (Grid::new(inp.shape.clone(), inp.chunks.clone()), Box::new(move |l| Key::Input(path.clone(), l)))
                }
                NodeKind::Temp { temp } => {
                    let Some(a) = expr.temps.get(*temp).map(|t| t.array) else { continue };
                    let Some(d) = self.plan.arrays.get(a) else { continue };
                    (d.grid(), Box::new(move |l| Key::Array(a, l)))
                }
                _ => continue,
            };
            let chunks = chunks_in(&grid, &r, self.limit as u64).ok_or(TooBig)?;
            for lin in chunks {
                let d = self.data(key(lin))?;
                self.edge(d, task)?;
            }
        }
        Ok(())
    }

    fn stage(&mut self, s: usize) -> std::result::Result<(), TooBig> {
        let plan = self.plan;
        let st = &plan.stages[s];
        let tip = |t: u64, what: &str| format!("stage {} {}, task {t}: {what}", s + 1, st.name);
        match &st.op {
            StageOp::Compute { expr, out, groups, .. } => {
                let chain = match op_chain(expr) {
                    c if !c.is_empty() => c,
                    _ if plan.command == "rechunk" => "rechunk".to_string(),
                    _ => "copy".to_string(),
                };
                let Some(decl) = plan.arrays.get(*out) else { return Ok(()) };
                let grid = decl.grid();
                for t in 0..groups.len() {
                    let chunks = groups.chunks(t);
                    let which = if chunks.len() == 1 {
                        format!("chunk {}", tuple(&grid.chunk_index(chunks[0])))
                    } else {
                        format!("{} chunks", chunks.len())
                    };
                    let n = self.node(
                        Kind::Task,
                        vec![cut(&chain, 48), format!("task {t} · {which}")],
                        tip(t, &format!("{chain}, writing {which} of {}", array_name(plan, *out))),
                    )?;
                    for c in chunks {
                        let region = grid.chunk_region(&grid.chunk_index(c));
                        self.reads(expr, &region, n)?;
                        let d = self.data(Key::Array(*out, c))?;
                        self.edge(n, d)?;
                    }
                }
            }
            StageOp::Import { file, out } => {
                let f = self.data(Key::File(file.path.clone()))?;
                let Some(decl) = plan.arrays.get(*out) else { return Ok(()) };
                let grid = decl.grid();
                for t in 0..st.tasks.min(grid.nchunks()) {
                    let idx = tuple(&grid.chunk_index(t));
                    let n = self.node(
                        Kind::Task,
                        vec!["import".into(), format!("task {t} · chunk {idx}")],
                        tip(t, &format!("copy chunk {idx} from {}", file.path.display())),
                    )?;
                    self.edge(f, n)?;
                    let d = self.data(Key::Array(*out, t))?;
                    self.edge(n, d)?;
                }
            }
            StageOp::Partials(spec) => {
                let chain = then(&op_chain(&spec.expr), &format!("{} partial", op_names(&spec.reds)));
                for t in 0..spec.tasks() {
                    let task = spec.task(t);
                    let bidx = tuple(&spec.out_grid.chunk_index(task.block));
                    let n = self.node(
                        Kind::Task,
                        vec![
                            cut(&chain, 48),
                            format!(
                                "task {t} · block {bidx} · {} chunk{}",
                                task.chunks.len(),
                                if task.chunks.len() == 1 { "" } else { "s" }
                            ),
                        ],
                        tip(t, &format!("{chain}: partial {} of block {bidx}", task.g)),
                    )?;
                    for &c in &task.chunks {
                        let region = spec.in_grid.chunk_region(&spec.in_grid.chunk_index(c));
                        self.reads(&spec.expr, &region, n)?;
                    }
                    let src = match &spec.store {
                        PartialStore::Memory { .. } => n,
                        PartialStore::Disk { .. } => {
                            let d = self.data(Key::Spill(s, task.block, task.g))?;
                            self.edge(n, d)?;
                            d
                        }
                    };
                    self.partials.insert((s, task.block, task.g), src);
                }
            }
            StageOp::Finalize(f) => {
                let Some(StageOp::Partials(spec)) = plan.stages.get(f.partials).map(|x| &x.op) else {
                    return Ok(());
                };
                let split = f.split.max(2) as usize;
                for b in 0..st.tasks.min(spec.out_grid.nchunks()) {
                    let bidx = tuple(&spec.out_grid.chunk_index(b));
                    let items: Vec<usize> =
                        (0..spec.count(b)).filter_map(|g| self.partials.get(&(f.partials, b, g)).copied()).collect();
                    let last = self.merge_tree(items, split, &bidx, s, b)?;
                    let n = self.node(
                        Kind::Task,
                        vec![format!("finalize {}", op_names(&spec.reds)), format!("task {b} · block {bidx}")],
                        tip(b, &format!("merge the partials of block {bidx} (fan-in {split}) and write it")),
                    )?;
                    if let Some(l) = last {
                        self.edge(l, n)?;
                    }
                    for o in &f.outs {
                        let Some(decl) = plan.arrays.get(o.out) else { continue };
                        // with keepdims the reduced axes come back as length-1 axes
                        let region = spec.out_grid.chunk_region(&spec.out_grid.chunk_index(b));
                        let mut start = vec![];
                        let mut k = 0;
                        for i in 0..decl.spec.shape.len() {
                            if o.keepdims && f.axes.contains(&i) {
                                start.push(0);
                            } else {
                                start.push(region.start.get(k).copied().unwrap_or(0));
                                k += 1;
                            }
                        }
                        let d = self.data(Key::Array(o.out, lin_of(&decl.grid(), &start)))?;
                        self.edge(n, d)?;
                    }
                }
            }
            StageOp::ScanTotals { expr, axis, prod, grid, totals } => {
                let chain = then(&op_chain(expr), if *prod { "chunk product" } else { "chunk total" });
                let Some(tgrid) = plan.arrays.get(*totals).map(|d| d.grid()) else { return Ok(()) };
                for t in 0..grid.nchunks() {
                    let idx = grid.chunk_index(t);
                    let n = self.node(
                        Kind::Task,
                        vec![cut(&chain, 48), format!("task {t} · chunk {}", tuple(&idx))],
                        tip(t, &format!("{chain} along axis {axis}")),
                    )?;
                    self.reads(expr, &grid.chunk_region(&idx), n)?;
                    let d = self.data(Key::Array(*totals, lin_of(&tgrid, &cross_region(grid, &idx, *axis).start)))?;
                    self.edge(n, d)?;
                }
            }
            StageOp::ScanCarries { axis, grid, totals, carries, .. } => {
                let (Some(tgrid), Some(cgrid)) =
                    (plan.arrays.get(*totals).map(|d| d.grid()), plan.arrays.get(*carries).map(|d| d.grid()))
                else {
                    return Ok(());
                };
                let gshape = grid.grid_shape();
                let mut others = gshape.clone();
                if let Some(o) = others.get_mut(*axis) {
                    *o = 1;
                }
                for col in 0..others.iter().product::<u64>() {
                    let mut idx = unravel(col, &others);
                    let mut shown = idx.clone();
                    if *axis < shown.len() {
                        shown.remove(*axis);
                    }
                    let n = self.node(
                        Kind::Task,
                        vec!["running totals".into(), format!("task {col} · column {}", tuple(&shown))],
                        tip(col, &format!("carries along axis {axis}")),
                    )?;
                    for k in 0..gshape.get(*axis).copied().unwrap_or(0) {
                        let Some(at) = idx.get_mut(*axis) else { break };
                        *at = k;
                        let start = cross_region(grid, &idx, *axis).start;
                        let a = self.data(Key::Array(*totals, lin_of(&tgrid, &start)))?;
                        self.edge(a, n)?;
                        let c = self.data(Key::Array(*carries, lin_of(&cgrid, &start)))?;
                        self.edge(n, c)?;
                    }
                }
            }
            StageOp::ScanApply { expr, axis, prod, grid, carries, out } => {
                let chain = then(&op_chain(expr), if *prod { "cumprod" } else { "cumsum" });
                let (Some(cgrid), Some(ogrid)) =
                    (plan.arrays.get(*carries).map(|d| d.grid()), plan.arrays.get(*out).map(|d| d.grid()))
                else {
                    return Ok(());
                };
                for t in 0..grid.nchunks() {
                    let idx = grid.chunk_index(t);
                    let region = grid.chunk_region(&idx);
                    let n = self.node(
                        Kind::Task,
                        vec![cut(&chain, 48), format!("task {t} · chunk {}", tuple(&idx))],
                        tip(t, &format!("{chain} along axis {axis}, from the carry")),
                    )?;
                    self.reads(expr, &region, n)?;
                    if idx.get(*axis).is_some_and(|&i| i > 0) {
                        let c =
                            self.data(Key::Array(*carries, lin_of(&cgrid, &cross_region(grid, &idx, *axis).start)))?;
                        self.edge(c, n)?;
                    }
                    let d = self.data(Key::Array(*out, lin_of(&ogrid, &region.start)))?;
                    self.edge(n, d)?;
                }
            }
            StageOp::Export { array, sel, format, path, .. } => {
                let fmt = format!("{format:?}").to_lowercase();
                let n = self.node(
                    Kind::Task,
                    vec![format!("export {fmt}"), "task 0".into()],
                    tip(0, &format!("stream the selection as {fmt}")),
                )?;
                let (grid, key): (Grid, Box<dyn Fn(u64) -> Key>) = match array {
                    ExportSource::Input(i) => {
                        let Some(inp) = plan.inputs.get(*i) else { return Ok(()) };
                        let p = inp.path.clone();
                        (Grid::new(inp.shape.clone(), inp.chunks.clone()), Box::new(move |l| Key::Input(p.clone(), l)))
                    }
                    ExportSource::Array(a) => {
                        let Some(d) = plan.arrays.get(*a) else { return Ok(()) };
                        let a = *a;
                        (d.grid(), Box::new(move |l| Key::Array(a, l)))
                    }
                };
                let (start, shape): (Vec<u64>, Vec<u64>) = sel
                    .iter()
                    .map(|s| if s.len == 0 { (s.start, 0) } else { s.bbox(0, s.len) })
                    .map(|(lo, hi)| (lo, hi.saturating_sub(lo)))
                    .unzip();
                let chunks = chunks_in(&grid, &Region::new(start, shape), self.limit as u64).ok_or(TooBig)?;
                for lin in chunks {
                    let d = self.data(key(lin))?;
                    self.edge(d, n)?;
                }
                let f = match path {
                    Some(p) => self.data(Key::File(p.clone()))?,
                    None => self.data(Key::Stdout)?,
                };
                self.edge(n, f)?;
            }
        }
        Ok(())
    }

    /// The merge tree of a finalize task over `items` with fan-in `split`, merging as
    /// `exec::tasks` does (each level folds `split` items as they arrive, the rest at the end);
    /// returns the node holding the merged state.
    fn merge_tree(
        &mut self,
        items: Vec<usize>,
        split: usize,
        bidx: &str,
        s: usize,
        b: u64,
    ) -> std::result::Result<Option<usize>, TooBig> {
        let mut levels: Vec<Vec<usize>> = vec![];
        let merge = |me: &mut Self, level: usize, from: Vec<usize>| -> std::result::Result<usize, TooBig> {
            let n = me.node(
                Kind::Level,
                vec![format!("merge level {level}"), format!("block {bidx} · {} in", from.len())],
                format!(
                    "stage {} task {b}: level {level} of the merge tree, {} states merged into one",
                    s + 1,
                    from.len()
                ),
            )?;
            for f in from {
                me.edge(f, n)?;
            }
            Ok(n)
        };
        for it in items {
            let mut item = it;
            let mut k = 0;
            loop {
                if levels.len() <= k {
                    levels.push(vec![]);
                }
                levels[k].push(item);
                if levels[k].len() < split {
                    break;
                }
                let full = std::mem::take(&mut levels[k]);
                item = merge(self, k + 1, full)?;
                k += 1;
            }
        }
        let mut carry = None;
        for (k, level) in levels.into_iter().enumerate() {
            let mut items = level;
            items.extend(carry.take());
            carry = match items.len() {
                0 => None,
                1 => items.pop(),
                _ => Some(merge(self, k + 1, items)?),
            };
        }
        Ok(carry)
    }
}

/// The task graph of `plan`, or [`TooBig`] past `limit` nodes (checked before any work that grows
/// with the plan's size, so a plan of millions of tasks is refused at once).
pub fn tasks(plan: &PhysicalPlan, limit: usize) -> std::result::Result<Graph, TooBig> {
    if plan.total_tasks() > limit as u64 {
        return Err(TooBig);
    }
    let mut b = Tasks {
        plan,
        g: Graph { title: title(plan), subtitle: subtitle(plan, "tasks"), ..Graph::default() },
        limit,
        data: HashMap::new(),
        edges: HashSet::new(),
        partials: HashMap::new(),
    };
    for s in 0..plan.stages.len() {
        b.stage(s)?;
    }
    for p in &plan.print {
        if let Some(d) = plan.arrays.get(p.array) {
            let chunks = chunks_in(&d.grid(), &Region::full(&d.spec.shape), limit as u64).ok_or(TooBig)?;
            let out = b.data(Key::Stdout)?;
            for lin in chunks {
                let c = b.data(Key::Array(p.array, lin))?;
                b.edge(c, out)?;
            }
        }
    }
    Ok(b.g)
}

/// The stages graph of `plan`: arrays and stages.
pub fn stages(plan: &PhysicalPlan) -> Graph {
    let mut g = Graph { title: title(plan), subtitle: subtitle(plan, "stages"), ..Graph::default() };
    let add = |g: &mut Graph, kind: Kind, label: Vec<String>, tooltip: String| {
        g.nodes.push(Node { kind, label, tooltip });
        g.nodes.len() - 1
    };
    let mut inputs: HashMap<PathBuf, usize> = HashMap::new();
    for inp in &plan.inputs {
        let bytes = inp.shape.iter().product::<u64>().saturating_mul(inp.dtype.size() as u64);
        let n = add(
            &mut g,
            Kind::Input,
            vec![
                format!("{} = {}", inp.name, cut(&short_path(&inp.path), 28)),
                format!("{} {}", tuple(&inp.shape), inp.dtype),
                format!("chunks {} · {}", tuple(&inp.chunks), human(bytes)),
            ],
            format!("input {} = {}", inp.name, inp.path.display()),
        );
        inputs.insert(inp.path.clone(), n);
    }
    let arrays: Vec<usize> = plan
        .arrays
        .iter()
        .enumerate()
        .map(|(i, a)| {
            add(
                &mut g,
                array_kind(plan, i),
                vec![
                    cut(&array_name(plan, i), 32),
                    format!("{} {}", tuple(&a.spec.shape), a.spec.dtype),
                    format!("chunks {} · {}", tuple(&a.grid().chunks), human(a.nbytes())),
                ],
                format!("a{i} {}", a.what),
            )
        })
        .collect();
    let mut edges: Vec<(usize, usize)> = vec![];
    let mut memory: HashMap<usize, usize> = HashMap::new();
    let reads_of = |expr: &Plan, inputs: &HashMap<PathBuf, usize>| -> Vec<usize> {
        let mut v = vec![];
        for n in &expr.nodes {
            match &n.kind {
                NodeKind::Input { input } => {
                    if let Some(&x) = expr.inputs.get(*input).and_then(|i| inputs.get(&i.path)) {
                        v.push(x);
                    }
                }
                NodeKind::Temp { temp } => {
                    if let Some(&x) = expr.temps.get(*temp).and_then(|t| arrays.get(t.array)) {
                        v.push(x);
                    }
                }
                _ => {}
            }
        }
        v
    };
    for (s, st) in plan.stages.iter().enumerate() {
        let (chain, chunks) = match &st.op {
            StageOp::Compute { expr, out, .. } => {
                (op_chain(expr), plan.arrays.get(*out).map(|a| tuple(&a.grid().chunks)).unwrap_or_default())
            }
            StageOp::Import { out, .. } => {
                ("import".into(), plan.arrays.get(*out).map(|a| tuple(&a.grid().chunks)).unwrap_or_default())
            }
            StageOp::Partials(p) => {
                (then(&op_chain(&p.expr), &format!("{} partial", op_names(&p.reds))), tuple(&p.in_grid.chunks))
            }
            StageOp::Finalize(f) => {
                let (c, names) = match plan.stages.get(f.partials).map(|x| &x.op) {
                    Some(StageOp::Partials(p)) => (tuple(&p.out_grid.chunks), op_names(&p.reds)),
                    _ => (String::new(), String::new()),
                };
                (format!("merge (fan-in {}) → finalize {names}", f.split), c)
            }
            StageOp::ScanTotals { expr, grid, prod, .. } => {
                (then(&op_chain(expr), if *prod { "chunk products" } else { "chunk totals" }), tuple(&grid.chunks))
            }
            StageOp::ScanCarries { grid, .. } => ("running totals".into(), tuple(&grid.chunks)),
            StageOp::ScanApply { expr, grid, prod, .. } => {
                (then(&op_chain(expr), if *prod { "cumprod" } else { "cumsum" }), tuple(&grid.chunks))
            }
            StageOp::Export { format, block_bytes, .. } => (
                format!("export {}", format!("{format:?}").to_lowercase()),
                format!("blocks ≤ {}", human(*block_bytes)),
            ),
        };
        let n = add(
            &mut g,
            Kind::Stage,
            vec![
                format!("{} {}", s + 1, st.name),
                cut(if chain.is_empty() { "copy" } else { &chain }, 48),
                format!(
                    "{} task{}{}",
                    st.tasks,
                    if st.tasks == 1 { "" } else { "s" },
                    if chunks.is_empty() { String::new() } else { format!(" · chunks {chunks}") }
                ),
                format!(
                    "{}/task · {} in flight → {}",
                    human(st.task_bytes),
                    st.parallel,
                    human(st.task_bytes.saturating_mul(st.parallel as u64).saturating_add(st.held_bytes))
                ),
                format!("reads {} · writes {}", human(st.read_bytes), human(st.write_bytes)),
            ],
            format!("stage {}: {}", s + 1, st.what),
        );
        let arr = |a: &ArrayId| arrays.get(*a).copied();
        let (reads, writes): (Vec<usize>, Vec<usize>) = match &st.op {
            StageOp::Compute { expr, out, .. } => (reads_of(expr, &inputs), arr(out).into_iter().collect()),
            StageOp::Import { file, out } => {
                let f = add(
                    &mut g,
                    Kind::File,
                    vec![cut(&short_path(&file.path), 32)],
                    format!("the file {}", file.path.display()),
                );
                (vec![f], arr(out).into_iter().collect())
            }
            StageOp::Partials(p) => {
                let w = match &p.store {
                    PartialStore::Disk { arrays: a } => a.iter().filter_map(arr).collect(),
                    PartialStore::Memory { bytes } => {
                        let m = add(
                            &mut g,
                            Kind::Memory,
                            vec!["partials in memory".into(), human(*bytes)],
                            format!("the partials of stage {} {}, held in memory until merged", s + 1, st.name),
                        );
                        memory.insert(s, m);
                        vec![m]
                    }
                };
                (reads_of(&p.expr, &inputs), w)
            }
            StageOp::Finalize(f) => {
                let r = match plan.stages.get(f.partials).map(|x| &x.op) {
                    Some(StageOp::Partials(p)) => match &p.store {
                        PartialStore::Disk { arrays: a } => a.iter().filter_map(arr).collect(),
                        PartialStore::Memory { .. } => memory.get(&f.partials).copied().into_iter().collect(),
                    },
                    _ => vec![],
                };
                (r, f.outs.iter().filter_map(|o| arr(&o.out)).collect())
            }
            StageOp::ScanTotals { expr, totals, .. } => (reads_of(expr, &inputs), arr(totals).into_iter().collect()),
            StageOp::ScanCarries { totals, carries, .. } => {
                (arr(totals).into_iter().collect(), arr(carries).into_iter().collect())
            }
            StageOp::ScanApply { expr, carries, out, .. } => {
                let mut r = reads_of(expr, &inputs);
                r.extend(arr(carries));
                (r, arr(out).into_iter().collect())
            }
            StageOp::Export { array, path, .. } => {
                let r = match array {
                    ExportSource::Input(i) => plan.inputs.get(*i).and_then(|x| inputs.get(&x.path)).copied(),
                    ExportSource::Array(a) => arr(a),
                };
                let f = match path {
                    Some(p) => {
                        add(&mut g, Kind::File, vec![cut(&short_path(p), 32)], format!("the file {}", p.display()))
                    }
                    None => add(&mut g, Kind::File, vec!["stdout".into()], "standard output".into()),
                };
                (r.into_iter().collect(), vec![f])
            }
        };
        for r in reads {
            edges.push((r, n));
        }
        for w in writes {
            edges.push((n, w));
        }
    }
    let mut stdout = None;
    for p in &plan.print {
        if let Some(&a) = arrays.get(p.array) {
            let out = *stdout.get_or_insert_with(|| {
                add(&mut g, Kind::File, vec!["stdout".into()], "the result, printed on standard output".into())
            });
            edges.push((a, out));
        }
    }
    let mut seen = HashSet::new();
    edges.retain(|e| seen.insert(*e));
    g.edges = edges;
    g
}

/// The reductions of a partials stage, by name (`mean`, or `mean+std+min`).
fn op_names(reds: &[crate::plan::physical::Red]) -> String {
    reds.iter().map(|r| r.op.name()).collect::<Vec<_>>().join("+")
}
