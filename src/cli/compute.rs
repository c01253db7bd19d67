//! What `transform` and `eval` share: resolving named inputs, building the plan (expression errors
//! shown with a caret), and computing a plan into a new Zarr array through a job and a scheduler.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::export::{self, Format};
use super::RunArgs;
use crate::dtype::{DType, Scalar};
use crate::error::{human, Error, Result};
use crate::exec::evaluate::TempData;
use crate::exec::job::{self, Job, OutJob, Scheduler};
use crate::exec::stages::{materialize, StageCtx};
use crate::exec::workdir::WorkDir;
use crate::exec::{self, Stage};
use crate::expr::slice::AxisSel;
use crate::grid::{tuple, Grid};
use crate::plan::lower::{self, OutputLayout};
use crate::plan::{self, Input, NodeKind, Plan};
use crate::report;
use crate::store::output::{Kind as OutKind, Staged};
use crate::store::{self, CodecSpec, CreateSpec};

/// At most this many output chunks share a task (enough to pair mirrors and transposes).
const MAX_GROUP: usize = 4;

/// Parse `name=path` arguments.
pub fn parse_named(items: &[String], arg: &str) -> Result<Vec<(String, PathBuf)>> {
    items
        .iter()
        .map(|s| {
            let (n, p) = s
                .split_once('=')
                .ok_or_else(|| Error::usage(arg, format!("{s:?} is not NAME=PATH; name the array, e.g. x=big.zarr")))?;
            let n = n.trim();
            if n.is_empty()
                || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || n.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(Error::usage(arg, format!("{n:?} is not a valid name (letters, digits, _)")));
            }
            Ok((n.to_string(), PathBuf::from(p)))
        })
        .collect()
}

/// Open the inputs' metadata and build the plan of `text`.
pub fn build_plan(text: &str, arg: &str, named: &[(String, PathBuf)]) -> Result<(Plan, Vec<store::ArrayMeta>)> {
    let mut inputs = vec![];
    let mut metas = vec![];
    for (name, path) in named {
        if inputs.iter().any(|i: &Input| &i.name == name) {
            return Err(Error::usage(arg, format!("the name {name} is given twice")));
        }
        let m = store::meta::read_meta(path)?;
        inputs.push(Input {
            name: name.clone(),
            path: path.clone(),
            shape: m.shape.clone(),
            dtype: m.dtype,
            chunks: m.storage_chunks().to_vec(),
        });
        metas.push(m);
    }
    let plan = plan::build(text, inputs).map_err(|e| Error::Expr { arg: arg.to_string(), msg: e.render(text) })?;
    Ok((plan, metas))
}

/// Where a computed array goes, by one rule for `eval`, `transform` and `reduce`: an output path
/// ending in `.npy`, `.csv`/`.txt` or `.raw`/`.bin`/`.dat` is that file; any other path is a Zarr
/// array; `--format` alone prints on standard output (or names the format of an extension-less
/// file).
#[derive(Clone, Copy, Debug)]
pub enum Dest<'a> {
    Zarr(&'a Path),
    File(&'a Path, Format),
    Stdout(Format),
}

impl<'a> Dest<'a> {
    /// The destination of `out` and `--format`; `None` when neither is given.
    pub fn of(out: Option<&'a Path>, format: Option<Format>) -> Result<Option<Dest<'a>>> {
        Ok(match (out, format) {
            (None, None) => None,
            (None, Some(f)) => Some(Dest::Stdout(f)),
            (Some(p), f) => match (export::file_format(p), f) {
                (Some(e), Some(f)) if e != f => {
                    return Err(Error::usage(
                        "--format",
                        format!(
                            "{f:?} does not match the extension of {} — drop --format or rename the file",
                            p.display()
                        )
                        .to_lowercase(),
                    ))
                }
                (Some(e), _) => Some(Dest::File(p, e)),
                (None, Some(f)) => Some(Dest::File(p, f)),
                (None, None) => Some(Dest::Zarr(p)),
            },
        })
    }
}

/// Compute `plan` to `dest`: a Zarr array directly; a file or standard output through an
/// uncompressed array in the work directory, streamed out in bounded memory.
pub fn compute_to(plan: Plan, dest: Dest<'_>, o: OutputOpts<'_>, run: &RunArgs, stage_name: &str) -> Result<()> {
    let (out, format) = match dest {
        Dest::Zarr(p) => return compute_to_zarr(plan, &OutputOpts { out: p, ..o }, run, stage_name),
        Dest::File(p, f) => (Some(p), f),
        Dest::Stdout(f) => (None, f),
    };
    if let Some(p) = out {
        // refuse before computing, not after
        crate::store::output::check_dest(p, OutKind::File, o.overwrite)?;
    }
    let root = plan.root().clone();
    let work = WorkDir::create(run.work_dir.as_deref())?;
    let tmp = work.path().join("result.zarr");
    let raw = CodecSpec::parse(o.codec.unwrap_or("none"))?;
    let inner = OutputOpts { out: &tmp, codec: None, default_codec: Some(raw), overwrite: false, ..o };
    if run.explain {
        return compute_to_zarr(plan, &inner, run, stage_name);
    }
    work.check_free(root.shape.iter().product::<u64>() * root.dtype.size() as u64)?;
    // the intermediate array is an implementation detail: no summary line for it
    let quiet = RunArgs { quiet: true, ..run.clone() };
    compute_to_zarr(plan, &inner, &quiet, stage_name)?;
    let arr = store::ZArray::open(&tmp)?;
    let sel: Vec<AxisSel> = arr.shape().iter().map(|&n| AxisSel::full(n)).collect();
    export::stream(&arr, &sel, format, out, o.overwrite, &run.options()?)
}

/// Where and how to write the result.
#[derive(Clone)]
pub struct OutputOpts<'a> {
    pub out: &'a Path,
    pub dtype: Option<&'a str>,
    pub chunks: Option<&'a str>,
    pub shard: Option<&'a str>,
    pub codec: Option<&'a str>,
    pub overwrite: bool,
    /// Defaults taken from an input: (chunks, shard), codec, dimension names.
    pub default_chunks: Option<(Vec<u64>, Option<Vec<u64>>)>,
    pub default_codec: Option<CodecSpec>,
    pub dimension_names: Option<Vec<String>>,
    /// Group output chunks by shared source chunks as far as --memory allows and compute a group's
    /// chunks in parallel (rechunking: each source chunk is decoded once).
    pub band_groups: bool,
}

/// A plan whose reductions and scans have been computed: what the final stage reads.
pub struct Prepared {
    pub plan: Plan,
    pub temps: Vec<TempData>,
    pub work: Option<WorkDir>,
    /// With `--explain`: the description of the stages run so far (nothing was computed).
    pub explain: String,
}

fn has_boundaries(plan: &Plan) -> bool {
    plan.nodes.iter().any(|n| matches!(n.kind, NodeKind::Reduce { .. } | NodeKind::Scan { .. }))
}

/// Run the stage boundaries (reductions, scans) of `plan`, innermost first.
pub fn prepare(plan: Plan, run: &RunArgs, sink: &dyn crate::exec::EventSink) -> Result<Prepared> {
    let opts = run.options()?;
    let needs_work = has_boundaries(&plan) || run.scheduler == Scheduler::Processes;
    let mut work = if needs_work { Some(WorkDir::create(run.work_dir.as_deref())?) } else { None };
    if let (Some(w), true) = (work.as_mut(), run.keep_work_dir) {
        w.keep();
        eprintln!("dsk: keeping the work directory {}", w.path().display());
    }
    if !has_boundaries(&plan) {
        return Ok(Prepared { plan, temps: vec![], work, explain: String::new() });
    }
    let Some(w) = work.as_ref() else { return Err(crate::Error::Internal("no work dir".into())) };
    let mut ctx = StageCtx {
        opts,
        scheduler: run.scheduler,
        sink,
        work: w,
        split_every: run.split_every,
        explain: if run.explain { Some(String::new()) } else { None },
    };
    let (plan, temps) = materialize(plan, &mut ctx)?;
    let explain = ctx.explain.take().unwrap_or_default();
    Ok(Prepared { plan, temps, work, explain })
}

/// Compute `plan` into the Zarr array `o.out`.
pub fn compute_to_zarr(plan: Plan, o: &OutputOpts<'_>, run: &RunArgs, stage_name: &str) -> Result<()> {
    let opts = run.options()?;
    if let Some(0) = run.split_every {
        return Err(Error::usage("--split-every", "must be at least 2"));
    }
    if !run.explain {
        // refuse before computing, not after
        crate::store::output::check_dest(o.out, OutKind::ZarrDir, o.overwrite)?;
    }
    let sink = report::sink(run.progress, run.quiet);
    let Prepared { plan, temps, work, explain: stages_text } = prepare(plan, run, sink.as_ref())?;
    let root = plan.root().clone();
    let dtype = match o.dtype {
        Some(t) => DType::parse(t)
            .ok_or_else(|| Error::usage("--dtype", format!("unknown dtype {t:?}; use one of {}", DType::accepted())))?,
        None => root.dtype,
    };
    let codec = match o.codec {
        Some(t) => CodecSpec::parse(t)?,
        None => o.default_codec.clone().unwrap_or_default(),
    };
    let default = o.default_chunks.clone().or_else(|| Some((root.chunks.clone(), None)));
    let (chunks, shard, _auto) = super::chunking(o.chunks, o.shard, &root.shape, dtype, default)?;
    let grid = Grid::new(root.shape.clone(), shard.clone().unwrap_or_else(|| chunks.clone()));
    let layout = OutputLayout {
        grid: grid.clone(),
        itemsize: dtype.size() as u64,
        codec_scratch: codec.scratch_bytes(grid.chunk_len() * dtype.size() as u64),
    };
    let tasks = if o.band_groups {
        lower::tasks(&plan, &layout, usize::MAX, Some(opts.memory), opts.workers)
    } else {
        lower::tasks(&plan, &layout, MAX_GROUP, None, 1)
    };
    let stage = Stage {
        name: stage_name.to_string(),
        tasks: tasks.groups.len() as u64,
        task_bytes: tasks.task_bytes,
        total_bytes: root.shape.iter().product::<u64>() * dtype.size() as u64,
    };
    let unit = if shard.is_some() { "shard" } else { "chunk" };
    let parallel = exec::admissible(&stage, &opts, |mem| {
        let fit = crate::grid::scaled_chunks(&grid.chunks, 0.9 * mem as f64 / stage.task_bytes as f64);
        format!(
            "a task holds the source chunks it reads and its output {unit}: try --chunks {} for the output, rechunk the inputs smaller, or raise --memory",
            crate::grid::chunks_arg(&fit)
        )
    })?;
    if run.explain {
        let mut text = lower::explain(&plan, &layout, &tasks, parallel, opts.memory, &o.out.display().to_string());
        if !stages_text.is_empty() {
            // the boundary stages run first: list them before the final stage
            let at = text.find("stage 1 compute").unwrap_or(text.len());
            let n_before = stages_text.matches("\nstage ").count() + usize::from(stages_text.starts_with("stage "));
            let last = text.split_off(at).replacen("stage 1 compute", &format!("stage {} compute", n_before + 1), 1);
            text.push_str(&stages_text);
            text.push_str(&last);
        }
        return crate::write_stdout(text.as_bytes());
    }
    let names = o.dimension_names.clone().filter(|n| n.len() == root.shape.len());
    let spec = CreateSpec {
        shape: root.shape.clone(),
        chunks,
        shard,
        dtype,
        fill: zero(dtype),
        codec,
        dimension_names: names,
    };
    let staged = Staged::new(o.out, OutKind::ZarrDir, o.overwrite)?;
    drop(store::create(staged.path(), &spec)?);
    let job = Job {
        stage: stage_name.to_string(),
        plan,
        out: OutJob { path: staged.path().to_path_buf(), grid: grid.clone(), dtype },
        tasks,
        inner: if o.band_groups { opts.workers } else { 1 },
    };
    let wd = work.as_ref().map(|w| w.path().to_path_buf()).unwrap_or_default();
    let stats = job::run(&job, &temps, run.scheduler, parallel, &opts, &wd, sink.as_ref())?;
    staged.commit()?;
    drop(work);

    let secs = stats.elapsed.as_secs_f64();
    let logical = stage.total_bytes;
    let projected = stage.task_bytes * stats.parallel as u64;
    let text = format!(
        "dsk: wrote {} — {} {dtype}, {unit}s {}, {} tasks, {} in {:.2} s ({}/s), {}",
        o.out.display(),
        tuple(&root.shape),
        tuple(&grid.chunks),
        stage.tasks,
        human(logical),
        secs,
        human((logical as f64 / secs.max(1e-9)) as u64),
        exec::describe_peak(projected),
    );
    report::summary(
        run.progress,
        run.quiet,
        &text,
        json!({"command": stage_name, "path": o.out, "shape": root.shape, "chunks": grid.chunks, "dtype": dtype.name(),
               "tasks": stage.tasks, "nbytes": logical, "elapsed_s": secs, "peak_rss": exec::peak_rss(),
               "projected_peak": projected, "scheduler": format!("{:?}", run.scheduler).to_lowercase()}),
    );
    Ok(())
}

fn zero(d: DType) -> Scalar {
    if d.is_bool() {
        Scalar::Bool(false)
    } else {
        Scalar::Int(0)
    }
}
