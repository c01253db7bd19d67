//! The physical plan: everything a run will do, decided before anything runs.
//!
//! A [`PhysicalPlan`] lists the arrays a run writes ([`ArrayDecl`]: the output, intermediates and
//! spills in the work directory) and its [`Stage`]s in the order they run. A stage is a set of
//! independent tasks described by arithmetic ([`Groups`], reduction ranges): task `t` of stage `s`
//! knows what it reads and what it writes without any list that grows with the task count (an
//! explicit table of groups is kept only for stages of at most [`TABLE_MAX`] chunks, where pairing
//! chunks that share source chunks saves decoding). Every stage carries its projected peak bytes per
//! task and how many tasks run at once under `--memory`; the planner has checked all of them before
//! the first byte is read.
//!
//! The plan is what every other part reads: `--explain` prints it ([`PhysicalPlan::explain`], or
//! JSON), every scheduler runs it (`exec::run`), `dsk worker` receives it as a file and runs task
//! ranges of one stage, and its [`fingerprint`](PhysicalPlan::fingerprint) names what it computes
//! (run options such as `--workers`, `--memory` and `--scheduler` are not part of it). Floats are
//! serialised exactly (see [`crate::serial`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Plan;
use crate::dtype::DType;
use crate::error::human;
use crate::expr::slice::AxisSel;
use crate::grid::{tuple, unravel, Grid};
use crate::kernels::reduce::ReduceOp;
use crate::store::{CreateSpec, FileFormat};

/// Stages of at most this many chunks may list their task groups explicitly.
pub const TABLE_MAX: u64 = 1 << 16;

/// An index into [`PhysicalPlan::arrays`].
pub type ArrayId = usize;

/// Where an array lives.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Place {
    /// The command's result: written into its staging directory (`OUT.partial`) and renamed into
    /// place when the run succeeds.
    Output(#[serde(with = "crate::serial::os_path")] PathBuf),
    /// In the run's work directory, at this relative path; removed with the work directory.
    Work(#[serde(with = "crate::serial::os_path")] PathBuf),
}

/// An array the plan writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArrayDecl {
    /// What it holds, for `--explain`.
    pub what: String,
    pub place: Place,
    pub spec: CreateSpec,
    /// Store chunks equal to the fill value too (a partial of zeros is data, not "missing").
    pub write_empty_chunks: bool,
}

impl ArrayDecl {
    pub fn nbytes(&self) -> u64 {
        self.spec.shape.iter().product::<u64>() * self.spec.dtype.size() as u64
    }

    /// The storage grid (shards when sharded).
    pub fn grid(&self) -> Grid {
        Grid::new(self.spec.shape.clone(), self.spec.shard.clone().unwrap_or_else(|| self.spec.chunks.clone()))
    }

    /// When dsk writes this array's shards itself, making each one inner chunk at a time
    /// (`ZArray::write_chunk_by`): the inner chunk shape, and whether the shard's file is
    /// streamed to a local disk (else it is filled in memory, then stored at once).
    pub fn shards_by_inner(&self) -> Option<(Vec<u64>, bool)> {
        let s = &self.spec;
        s.shard.as_ref()?;
        let plain = matches!(
            s.codec,
            crate::store::CodecSpec::Auto
                | crate::store::CodecSpec::None
                | crate::store::CodecSpec::Zstd { .. }
                | crate::store::CodecSpec::Blosc { .. }
        );
        if !plain || s.dtype.is_bool() || s.half || s.complex || s.zarr_format != 3 {
            return None;
        }
        let local = match &self.place {
            Place::Output(p) => !crate::store::remote::is_url(p),
            _ => true,
        };
        Some((s.chunks.clone(), local))
    }
}

/// Which chunks of a chunk grid each task of a stage covers.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Groups {
    /// Task `t` is chunk `t` (C order) of a grid of `chunks` chunks.
    Each { chunks: u64 },
    /// Explicit groups of chunk indices (only for grids of at most [`TABLE_MAX`] chunks): chunks
    /// that need the same source chunks share a task, so each source chunk is decoded once.
    Table(Vec<Vec<u64>>),
    /// Hyper-rectangular blocks of the chunk grid (`grid_shape` chunks per axis): per axis, the
    /// start of every run of chunk indices (`cuts[a][0] == 0`); task `t` is the block of runs at
    /// multi-index `unravel(t)`. A rechunk's bands are such blocks.
    Blocks { grid_shape: Vec<u64>, cuts: Vec<Vec<u64>> },
}

impl Groups {
    pub fn len(&self) -> u64 {
        match self {
            Groups::Each { chunks } => *chunks,
            Groups::Table(t) => t.len() as u64,
            Groups::Blocks { cuts, .. } => cuts.iter().map(|c| c.len() as u64).product(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The chunks (C-order indices) of task `t`.
    pub fn chunks(&self, t: u64) -> Vec<u64> {
        match self {
            Groups::Each { .. } => vec![t],
            Groups::Table(t2) => t2.get(t as usize).cloned().unwrap_or_default(),
            Groups::Blocks { grid_shape, cuts } => {
                let counts: Vec<u64> = cuts.iter().map(|c| c.len() as u64).collect();
                let bi = unravel(t, &counts);
                let ranges: Vec<(u64, u64)> = (0..cuts.len())
                    .map(|a| {
                        let lo = cuts[a][bi[a] as usize];
                        let hi = cuts[a].get(bi[a] as usize + 1).copied().unwrap_or(grid_shape[a]);
                        (lo, hi)
                    })
                    .collect();
                let sizes: Vec<u64> = ranges.iter().map(|(lo, hi)| hi - lo).collect();
                let strides = crate::grid::strides(grid_shape);
                (0..sizes.iter().product::<u64>())
                    .map(|k| {
                        let rel = unravel(k, &sizes);
                        rel.iter().zip(&ranges).zip(&strides).map(|((r, (lo, _)), s)| (r + lo) * s).sum()
                    })
                    .collect()
            }
        }
    }

    /// The most chunks one task covers.
    pub fn max_group(&self) -> u64 {
        match self {
            Groups::Each { chunks } => u64::from(*chunks > 0),
            Groups::Table(t) => t.iter().map(|g| g.len() as u64).max().unwrap_or(0),
            Groups::Blocks { grid_shape, cuts } => (0..cuts.len())
                .map(|a| {
                    let c = &cuts[a];
                    (0..c.len()).map(|i| c.get(i + 1).copied().unwrap_or(grid_shape[a]) - c[i]).max().unwrap_or(0)
                })
                .product(),
        }
    }
}

/// One task of a reduction's partials stage, when tasks are listed (see [`PartialsSpec::table`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PartialTask {
    /// The output block (chunk of the reduction's result grid, C order).
    pub block: u64,
    /// Which partial of the block this task computes.
    pub g: u64,
    /// The input chunks it folds, in order.
    pub chunks: Vec<u64>,
}

/// Where a reduction's partials wait for the finalize stage.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum PartialStore {
    /// In the parent's memory (threads and sync schedulers), reserved from the run's budget.
    Memory { bytes: u64 },
    /// One uncompressed array per state component in the work directory: shape
    /// `(per_block, *result_shape)`, one chunk per partial.
    Disk { arrays: Vec<ArrayId> },
}

/// One reduction of a partials stage: the values of node `root` of the stage's expression,
/// reduced by `op`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Red {
    pub root: usize,
    pub op: ReduceOp,
    /// The dtype of the values reduced.
    pub input: DType,
}

/// A reduction's partials stage. Several reductions over the same axes of values with the same
/// chunks (`x.mean()` and `x.std()`, or `x.sum()` and `(x * x).sum()`) share one: each tile is
/// evaluated once for all of them, so what they read is read once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartialsSpec {
    /// The fused expression whose values are reduced (its root is the first reduction's input,
    /// its `others` the rest's).
    pub expr: Plan,
    /// The reductions; a partial holds their state components one after the other.
    pub reds: Vec<Red>,
    pub axes: Vec<usize>,
    /// The chunks of the reduction's input, and the blocks of its result (kept axes).
    pub in_grid: Grid,
    pub out_grid: Grid,
    /// Ranges: partial `g` of block `b` folds reduced chunks `g·per_task .. (g+1)·per_task`.
    pub per_task: u64,
    /// Partials per block (the most any block has).
    pub per_block: u64,
    /// Listed tasks instead of ranges (grids of at most [`TABLE_MAX`] chunks whose chunks share
    /// source chunks, such as `x * x[::-1]`).
    pub table: Option<Vec<PartialTask>>,
    pub store: PartialStore,
}

impl PartialsSpec {
    /// The state components of reduction `k` within a partial.
    pub fn comps_of(&self, k: usize) -> std::ops::Range<usize> {
        let n = |r: &Red| r.op.state_dtypes(r.input).len();
        let start: usize = self.reds[..k].iter().map(n).sum();
        start..start + n(&self.reds[k])
    }

    /// The dtypes of a partial's components, every reduction's in turn.
    pub fn state_dtypes(&self) -> Vec<DType> {
        self.reds.iter().flat_map(|r| r.op.state_dtypes(r.input)).collect()
    }

    pub fn tasks(&self) -> u64 {
        match &self.table {
            Some(t) => t.len() as u64,
            None => self.out_grid.nchunks() * self.per_block,
        }
    }

    /// Chunks of the reduced axes per block.
    pub fn n_red(&self) -> u64 {
        let g = self.in_grid.grid_shape();
        self.axes.iter().map(|&a| g[a]).product()
    }

    /// Input chunk (C-order index) number `r` of the reduced chunks of block `block`.
    pub fn chunk_of(&self, block: u64, r: u64) -> u64 {
        let nd = self.in_grid.ndim();
        let gshape = self.in_grid.grid_shape();
        let kept: Vec<usize> = (0..nd).filter(|x| !self.axes.contains(x)).collect();
        let red_counts: Vec<u64> = self.axes.iter().map(|&x| gshape[x]).collect();
        let bi = self.out_grid.chunk_index(block);
        let ri = unravel(r, &red_counts);
        let mut idx = vec![0; nd];
        for (i, &k) in kept.iter().enumerate() {
            idx[k] = bi[i];
        }
        for (i, &x) in self.axes.iter().enumerate() {
            idx[x] = ri[i];
        }
        idx.iter().zip(crate::grid::strides(&gshape)).map(|(i, s)| i * s).sum()
    }

    /// Task `t`: its block, its partial number and its input chunks.
    pub fn task(&self, t: u64) -> PartialTask {
        if let Some(table) = &self.table {
            return table[t as usize].clone();
        }
        let (block, g) = (t / self.per_block.max(1), t % self.per_block.max(1));
        let n_red = self.n_red();
        let lo = (g * self.per_task).min(n_red);
        let hi = ((g + 1) * self.per_task).min(n_red);
        PartialTask { block, g, chunks: (lo..hi).map(|r| self.chunk_of(block, r)).collect() }
    }

    /// Partials of block `b` (in ranges mode every block has `per_block`; a zero-length reduced
    /// axis gives none).
    pub fn count(&self, block: u64) -> u64 {
        match &self.table {
            Some(t) => t.iter().filter(|x| x.block == block).map(|x| x.g + 1).max().unwrap_or(0),
            None => {
                if self.n_red() == 0 {
                    0
                } else {
                    self.n_red().div_ceil(self.per_task.max(1))
                }
            }
        }
    }
}

/// One result of a finalize stage: reduction `k` of its partials stage, finalized into `out`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinalOut {
    #[serde(with = "crate::serial::exact_f64")]
    pub ddof: f64,
    pub keepdims: bool,
    pub out: ArrayId,
}

/// A reduction's finalize stage: task `b` merges the partials of block `b` (in a tree of fan-in
/// `split`) and writes the result's block, of every reduction of the partials stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinalizeSpec {
    /// The partials stage this one reads.
    pub partials: usize,
    /// Per reduction of the partials stage, in its order.
    pub outs: Vec<FinalOut>,
    pub axes: Vec<usize>,
    /// Rank of the reduction's input.
    pub nd: usize,
    pub split: u64,
}

/// A file read by `create from-npy` / `from-raw`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileSource {
    #[serde(with = "crate::serial::os_path")]
    pub path: PathBuf,
    pub dtype: DType,
    pub shape: Vec<u64>,
    pub big_endian: bool,
    /// True for a .npy file (its header is read again by each process), false for raw bytes.
    pub npy: bool,
}

/// The array an export stage streams: an input of the plan, or an array it wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ExportSource {
    Input(usize),
    Array(ArrayId),
}

/// What the tasks of a stage do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StageOp {
    /// Evaluate `expr` over the chunks of array `out` and write them. With `inner` above 1, a
    /// task's source chunks are decoded in parallel first and its chunks computed in parallel (the
    /// band of a rechunk). `skip_fill`: every chunk equals the fill value, nothing is written.
    Compute { expr: Plan, out: ArrayId, groups: Groups, inner: usize },
    /// Copy a .npy or raw file into array `out`, one chunk per task.
    Import { file: FileSource, out: ArrayId },
    /// Reduction partials.
    Partials(PartialsSpec),
    /// Reduction results.
    Finalize(FinalizeSpec),
    /// Scan pass 1: the total along `axis` of every chunk of `expr`, into `totals` (one element
    /// per chunk along the axis).
    ScanTotals { expr: Plan, axis: usize, prod: bool, grid: Grid, totals: ArrayId },
    /// Scan pass 2: for every column of chunks along `axis`, the running totals before each chunk
    /// (the carries), from `totals` into `carries`.
    ScanCarries { axis: usize, prod: bool, grid: Grid, totals: ArrayId, carries: ArrayId },
    /// Scan pass 3: every chunk of `expr` scanned from its carry, into `out`.
    ScanApply { expr: Plan, axis: usize, prod: bool, grid: Grid, carries: ArrayId, out: ArrayId },
    /// Stream a selection of `array` to a file (staged, renamed when complete) or stdout, block
    /// by block in order; runs in the parent process.
    Export {
        array: ExportSource,
        sel: Vec<AxisSel>,
        format: FileFormat,
        #[serde(with = "crate::serial::os_path::option")]
        path: Option<PathBuf>,
        block_bytes: u64,
        /// chunks decoded at once
        decoders: usize,
    },
}

/// A stage: independent tasks, run after the stages before it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stage {
    /// Short name for progress bars and events (`compute`, `reduce-1`, `rechunk-2`, …).
    pub name: String,
    /// What it does, for `--explain`.
    pub what: String,
    pub op: StageOp,
    pub tasks: u64,
    /// Projected peak bytes of one task.
    pub task_bytes: u64,
    /// Bytes held from the run's budget while this stage runs besides its tasks (in-memory
    /// partials of an earlier stage waiting to be merged, or produced by this one).
    pub held_bytes: u64,
    /// Logical bytes decoded (or generated) and written.
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Tasks in flight under `--workers` and `--memory` (a run option: not in the fingerprint).
    pub parallel: usize,
    /// Runs in the parent process under every scheduler (streams to stdout, or merges partials
    /// that live in the parent's memory).
    pub local: bool,
}

/// A 0-d result printed on stdout.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Print {
    pub array: ArrayId,
    /// Printed before the value (`mean 0.5`) when a run prints several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Printed as one JSON object keyed by label, `{"mean": {"shape": [], "dtype": …, "value": …}}`,
    /// with the other printed results of the run (`--json` with several reductions).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
    /// `--dtype`: printed as this type.
    pub dtype: Option<DType>,
}

/// Everything a run does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhysicalPlan {
    /// The command (`eval`, `rechunk`, …) and what it computes (the expression, or a description).
    pub command: String,
    pub text: String,
    /// Arrays read: (name, path, shape, dtype, storage chunks).
    pub inputs: Vec<super::Input>,
    pub arrays: Vec<ArrayDecl>,
    pub stages: Vec<Stage>,
    /// The Zarr array committed into place at the end.
    pub output: Option<ArrayId>,
    /// Further Zarr arrays committed into place after it (a run with several results).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<ArrayId>,
    /// 0-d results printed on stdout, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub print: Vec<Print>,
    /// The run options the plan was checked against (not in the fingerprint).
    pub memory: u64,
    pub workers: usize,
    pub scheduler: String,
    /// Bytes the work directory needs on disk.
    pub scratch_bytes: u64,
    /// What the plan computes, whatever the run options ([`logical_id`]): `--resume` continues a
    /// partial output only for the same computation.
    #[serde(default)]
    pub logical: String,
}

/// A hash of what a plan computes, independent of how it runs (`--memory`, `--workers`,
/// `--scheduler` change the stages, not this): the command, its inputs, the output array, what
/// is computed (`source`: the expression's DAG, the generator, the file imported) and dsk's
/// version, as 16 hex digits.
pub fn logical_id(
    command: &str,
    text: &str,
    inputs: &[super::Input],
    output: Option<&ArrayDecl>,
    source: serde_json::Value,
) -> String {
    use sha2::Digest;
    // a rechunk's or an import's text only repeats its paths, which are below
    let text = if command == "rechunk" || (command == "create" && inputs.is_empty() && text.contains(" → ")) {
        ""
    } else {
        text
    };
    let mut v = serde_json::json!({
        "dsk": env!("CARGO_PKG_VERSION"),
        "command": command,
        "text": text,
        "inputs": inputs,
        "output": output.map(|o| serde_json::json!({"place": o.place, "spec": o.spec})),
        "source": source,
    });
    canonical_paths(&mut v);
    let digest = sha2::Sha256::digest(v.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Paths in a plan's JSON (`"path"` fields, `{"Output": path}`) as the files they name, so that
/// `a.zarr`, `./a.zarr` and `/home/me/a.zarr` are the same computation.
fn canonical_paths(v: &mut serde_json::Value) {
    use serde_json::Value;
    let canon = |s: &str, output: bool| -> String {
        let p = Path::new(s);
        if let Some(Ok(u)) = crate::store::remote::parse(p) {
            return u.to_string();
        }
        let c = if output {
            let parent = p.parent().filter(|q| !q.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::canonicalize(parent).map(|d| d.join(p.file_name().unwrap_or_default()))
        } else {
            std::fs::canonicalize(p)
        };
        c.or_else(|_| std::path::absolute(p)).map(|c| c.display().to_string()).unwrap_or_else(|_| s.to_string())
    };
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                match (k.as_str(), &*x) {
                    ("path", Value::String(s)) => *x = Value::String(canon(s, false)),
                    ("Output", Value::String(s)) => *x = Value::String(canon(s, true)),
                    _ => canonical_paths(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(canonical_paths),
        _ => {}
    }
}

impl PhysicalPlan {
    /// True when the plan writes arrays to the work directory (intermediates, spills).
    pub fn has_work_arrays(&self) -> bool {
        self.arrays.iter().any(|a| matches!(a.place, Place::Work(_)))
    }

    /// True when the run needs a work directory (work arrays, or job files).
    pub fn needs_work_dir(&self) -> bool {
        self.scheduler == "processes" || self.has_work_arrays()
    }

    pub fn total_tasks(&self) -> u64 {
        self.stages.iter().map(|s| s.tasks).sum()
    }

    /// The number of tasks of each stage.
    pub fn task_counts(&self) -> Vec<u64> {
        self.stages.iter().map(|s| s.tasks).collect()
    }

    /// This plan with every local path made absolute, for processes that do not share this one's
    /// working directory (Slurm jobs, Dask workers). What it computes (`logical`) is unchanged.
    pub fn with_absolute_paths(&self) -> PhysicalPlan {
        let abs = |p: &Path| -> PathBuf {
            if crate::store::remote::is_url(p) {
                p.to_path_buf()
            } else {
                std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
            }
        };
        let mut plan = self.clone();
        for i in &mut plan.inputs {
            i.path = abs(&i.path);
        }
        for a in &mut plan.arrays {
            if let Place::Output(p) = &mut a.place {
                *p = abs(p);
            }
        }
        for st in &mut plan.stages {
            if let StageOp::Export { path: Some(p), .. } = &mut st.op {
                *p = abs(p);
            }
        }
        plan
    }

    /// A stable name for what this plan computes: a hash of the plan with the run options left
    /// out, as 16 hex digits.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            for k in ["memory", "workers", "scheduler", "scratch_bytes", "logical"] {
                o.remove(k);
            }
            if let Some(stages) = o.get_mut("stages").and_then(|s| s.as_array_mut()) {
                for s in stages {
                    if let Some(so) = s.as_object_mut() {
                        so.remove("parallel");
                    }
                }
            }
        }
        let digest = sha2::Sha256::digest(v.to_string().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The plan as JSON (what `--explain json` prints and `dsk worker` reads), with derived
    /// figures (fingerprint, task totals) added.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        v["fingerprint"] = serde_json::json!(self.fingerprint());
        v["total_tasks"] = serde_json::json!(self.total_tasks());
        v
    }

    /// `--explain`: the plan as text.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("plan of dsk {}: {}\n", self.command, self.text));
        s.push_str(&format!("fingerprint {}\n", self.fingerprint()));
        for inp in &self.inputs {
            s.push_str(&format!(
                "input {} = {}: {} {}, chunks {}\n",
                inp.name,
                inp.path.display(),
                tuple(&inp.shape),
                inp.dtype,
                tuple(&inp.chunks)
            ));
        }
        if !self.arrays.is_empty() {
            s.push_str("arrays written:\n");
        }
        for (i, a) in self.arrays.iter().enumerate() {
            let at = match &a.place {
                Place::Output(p) => format!("→ {}", p.display()),
                Place::Work(p) => format!("work dir {}", p.display()),
            };
            s.push_str(&format!(
                "  a{i} {}: {} {}, {} {}, {}, {} ({})\n",
                a.what,
                tuple(&a.spec.shape),
                a.spec.dtype,
                if a.spec.shard.is_some() { "shards" } else { "chunks" },
                tuple(&a.grid().chunks),
                a.spec.codec,
                human(a.nbytes()),
                at
            ));
        }
        s.push_str(&format!(
            "stages (under --memory {} with {} worker{}, scheduler {}):\n",
            human(self.memory),
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            self.scheduler
        ));
        for (i, st) in self.stages.iter().enumerate() {
            s.push_str(&format!("  {} {}: {}\n", i + 1, st.name, st.what));
            s.push_str(&format!(
                "      {} task{}, projected peak {} each, {} in flight → {}{}; reads {}, writes {}\n",
                st.tasks,
                if st.tasks == 1 { "" } else { "s" },
                human(st.task_bytes),
                st.parallel,
                human(st.task_bytes * st.parallel as u64 + st.held_bytes),
                if st.held_bytes > 0 { format!(" (with {} held)", human(st.held_bytes)) } else { String::new() },
                human(st.read_bytes),
                human(st.write_bytes),
            ));
        }
        if self.scratch_bytes > 0 {
            s.push_str(&format!("work dir: {} on disk at most\n", human(self.scratch_bytes)));
        }
        for o in self.output.iter().chain(&self.also) {
            s.push_str(&format!("result: {}\n", self.array_path_text(*o)));
        }
        if !self.also.is_empty() || self.output.is_some() {
            for st in &self.stages {
                if let StageOp::Export { path: Some(p), .. } = &st.op {
                    s.push_str(&format!("result: {}\n", p.display()));
                }
            }
        }
        match self.print.len() {
            0 => {}
            1 => s.push_str("result: printed on stdout\n"),
            n => s.push_str(&format!("results: {n} numbers printed on stdout\n")),
        }
        s
    }

    fn array_path_text(&self, id: ArrayId) -> String {
        match &self.arrays[id].place {
            Place::Output(p) | Place::Work(p) => p.display().to_string(),
        }
    }
}

/// The staging directory of an output array (`OUT.partial` next to `OUT`).
pub fn staging_path(out: &Path) -> PathBuf {
    crate::store::output::staging_path(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_enumerate_each_chunk_once() {
        let g = Groups::Blocks { grid_shape: vec![5, 4], cuts: vec![vec![0, 2, 3], vec![0, 1]] };
        assert_eq!(g.len(), 6);
        let mut all: Vec<u64> = (0..g.len()).flat_map(|t| g.chunks(t)).collect();
        assert_eq!(g.chunks(0), vec![0, 4]); // rows 0-1, column 0
        assert_eq!(g.chunks(1), vec![1, 2, 3, 5, 6, 7]); // rows 0-1, columns 1-3
        all.sort_unstable();
        assert_eq!(all, (0..20).collect::<Vec<u64>>());
        assert_eq!(g.max_group(), 2 * 3);
    }
}
