//! Running a physical plan: the output is staged, the work directory made, every declared array
//! created, then the stages run in order under one memory budget for the whole run — on this
//! process's threads (`sync`, `threads`) or in `dsk worker` children that receive the plan as a
//! file and run ranges of a stage's tasks (`processes`). At the end the output is renamed into
//! place, a 0-d result printed, and the work directory removed (also on failure).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::journal::{Done, Journal};
use super::tasks::{open_stage, run_task, MemPartials, Shared};
use super::workdir::WorkDir;
use super::{run_stage, Budget, Event, EventSink, Reservation, RunOptions, Stage as ExecStage, TaskCtx};
use crate::error::{Error, Result};
use crate::plan::physical::{ExportSource, PartialStore, PhysicalPlan, Place, StageOp};
use crate::store::output::{check_dest, Kind as OutKind, Staged};
use crate::store::{self, ZArray};
use crate::with_buf;

/// How to run a plan: the options of the command line.
pub struct RunCtx<'a> {
    pub opts: RunOptions,
    pub scheduler: super::Scheduler,
    pub sink: &'a dyn EventSink,
    pub work_base: Option<PathBuf>,
    pub keep_work_dir: bool,
    /// Replace an existing output (only a Zarr array, or a file for file outputs).
    pub overwrite: bool,
    /// Continue the partial output a run that is gone left (`--resume`), and keep this run's
    /// partial output when it fails or is interrupted.
    pub resume: bool,
    /// Where the tasks run (`--executor`, with its options).
    pub cluster: super::cluster::ClusterOpts,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub elapsed: Duration,
    pub tasks: u64,
    pub stages: usize,
    /// The most tasks that ran at once in any stage.
    pub parallel: usize,
    /// Peak resident set of this process, and the largest of any `dsk worker` child.
    pub peak_rss: Option<u64>,
    pub children_peak: Option<u64>,
    /// The largest sum of the peaks of the worker children of one stage (they run at once).
    pub children_peak_sum: Option<u64>,
    /// The largest number of worker children alive at once.
    pub children: usize,
    /// Jobs submitted to a cluster (array indices or Dask tasks), when the run used one.
    pub cluster_jobs: Option<usize>,
    /// Requests this process sent to object storage, and bytes moved (not counting worker
    /// children's).
    pub storage: crate::store::remote::Traffic,
    /// Submitted to the cluster and left running (`--detach`): nothing is committed.
    pub detached: bool,
}

/// The paths of a plan's arrays: outputs in their staging directory, the rest in the work dir.
pub fn array_paths(plan: &PhysicalPlan, work: Option<&Path>) -> Result<Vec<PathBuf>> {
    plan.arrays
        .iter()
        .map(|a| match &a.place {
            Place::Output(p) => Ok(crate::plan::physical::staging_path(p)),
            Place::Work(rel) => work
                .map(|w| w.join(rel))
                .ok_or_else(|| Error::Internal("an intermediate array without a work directory".into())),
        })
        .collect()
}

fn open_inputs(plan: &PhysicalPlan) -> Result<Vec<ZArray>> {
    plan.inputs.iter().map(|i| ZArray::open(&i.path)).collect()
}

/// `p` with its symbolic links and `..` resolved, also when it does not exist yet (its parent
/// resolved, then its name); `None` when even the parent cannot be resolved.
fn resolved(p: &Path) -> Option<PathBuf> {
    if let Some(url) = crate::store::remote::parse(p) {
        return url.ok().map(|u| u.to_path());
    }
    if let Ok(c) = std::fs::canonicalize(p) {
        return Some(c);
    }
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
}

/// `p` absolute, without `.` and `..`, through the symbolic links of its longest existing prefix:
/// what does not exist yet compares by its components.
fn lexical(p: &Path) -> Option<PathBuf> {
    if crate::store::remote::is_url(p) {
        return resolved(p);
    }
    let abs = std::path::absolute(p).ok()?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    let mut base = out;
    let mut rest = vec![];
    while std::fs::symlink_metadata(&base).is_err() {
        rest.push(base.file_name()?.to_os_string());
        base = base.parent()?.to_path_buf();
    }
    let mut r = std::fs::canonicalize(&base).ok()?;
    r.extend(rest.iter().rev());
    Some(r)
}

/// Refuse an output that is one of the inputs or lies inside one: it would be written into (or,
/// with --overwrite, would replace) an array while it is read.
fn check_outside_inputs(plan: &PhysicalPlan) -> Result<()> {
    let mut outs: Vec<&Path> = vec![];
    for o in plan.output.iter().chain(&plan.also) {
        if let Place::Output(p) = &plan.arrays[*o].place {
            outs.push(p);
        }
    }
    // two results of one run into one array, or one inside the other
    let keys: Vec<Option<PathBuf>> = outs.iter().map(|p| lexical(p)).collect();
    for (i, a) in outs.iter().enumerate() {
        for (j, b) in outs.iter().enumerate() {
            let (Some(ka), Some(kb)) = (&keys[i], &keys[j]) else { continue };
            if j < i && ka == kb {
                return Err(Error::output(
                    a,
                    format!("is given twice ({}): give every result a path of its own", b.display()),
                ));
            }
            if i != j && ka != kb && ka.starts_with(kb) {
                return Err(Error::output(
                    a,
                    format!(
                        "is inside {}, another result of this run: give every result a path of its own",
                        b.display()
                    ),
                ));
            }
        }
    }
    for st in &plan.stages {
        if let StageOp::Export { path: Some(p), .. } = &st.op {
            outs.push(p);
        }
    }
    for out in outs {
        let Some(o) = resolved(out) else { continue };
        for input in &plan.inputs {
            let Some(i) = resolved(&input.path) else { continue };
            if o == i {
                return Err(Error::output(
                    out,
                    format!(
                        "is the input {} — dsk would replace an array while reading it; write to another path",
                        input.path.display()
                    ),
                ));
            }
            if crate::store::remote::is_url(out) && i.starts_with(&o) {
                return Err(Error::output(
                    out,
                    format!(
                        "holds the input {} — on object storage an output is replaced in place, which would delete the input while it is read; write elsewhere",
                        input.path.display()
                    ),
                ));
            }
            if o.starts_with(&i) {
                return Err(Error::output(
                    out,
                    format!(
                        "is inside the input {} — dsk does not write into an array it reads; write outside it",
                        input.path.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Run `plan`. Prints a 0-d result on stdout; returns what happened.
pub fn run(plan: &PhysicalPlan, ctx: &RunCtx<'_>) -> Result<RunReport> {
    let mut staged = None;
    let mut work = None;
    let mut started = false;
    let r = run_staged(plan, ctx, &mut staged, &mut work, &mut started);
    if let (Ok(rep), Some(s), Some(w)) = (&r, staged.as_mut(), work.as_mut()) {
        if rep.detached {
            // the jobs write into the partial output; a --resume run commits it
            s.keep();
            w.keep_for_resume();
            eprintln!(
                "dsk: submitted; follow the run with: dsk status {}\ndsk: when it is done, run the same command with --resume to write {}",
                w.path().display(),
                s.dest().display()
            );
        }
    }
    // a refusal before any task ran (another computation's partial, too little memory) leaves the
    // partial output as it was, without a word
    match (r, staged.as_mut()) {
        (Err(e), Some(s)) if ctx.resume && s.resumed().is_some() && !started => {
            s.keep();
            // and the work directory it was taken over with
            if let Some(w) = work.as_mut().filter(|w| w.adopted()) {
                w.keep_for_resume();
            }
            Err(e)
        }
        (Err(e), Some(s)) if ctx.resume => {
            // keep what is done for the next --resume
            s.keep();
            if let Some(w) = work.as_mut() {
                w.keep_for_resume();
            }
            if matches!(e, Error::Interrupted) {
                return Err(Error::InterruptedKept(s.path().to_path_buf()));
            }
            eprintln!(
                "dsk: the finished tasks are kept in {} — run the same command with --resume to continue",
                s.path().display()
            );
            Err(e)
        }
        (r, _) => r,
    }
}

fn run_staged(
    plan: &PhysicalPlan,
    ctx: &RunCtx<'_>,
    staged: &mut Option<Staged>,
    work: &mut Option<WorkDir>,
    began: &mut bool,
) -> Result<RunReport> {
    let started = Instant::now();
    check_outside_inputs(plan)?;
    crate::store::fs::choose_direct_writes(plan.arrays.iter().map(|a| a.nbytes()).sum());
    // refuse before anything is created: the output and every exported file
    for st in &plan.stages {
        if let StageOp::Export { path: Some(p), .. } = &st.op {
            check_dest(p, OutKind::File, ctx.overwrite)?;
        }
    }
    // a partial output whose cluster jobs are still queued or running: they would write into
    // whatever this run makes of it (a resumed copy, or a new array)
    if let Some(Place::Output(p)) = plan.output.map(|o| &plan.arrays[o].place) {
        if let Some(w) = crate::store::output::partial_work_dir(p) {
            if let Some(st) = super::cluster::State::read(&w).ok().flatten() {
                let arg = if ctx.resume { "--resume" } else { "OUT" };
                let partial = crate::plan::physical::staging_path(p);
                let busy = super::cluster::busy(&st).map_err(|m| {
                    Error::usage(
                        arg,
                        format!(
                            "the run that left {} may still be writing into it: {m} — or scancel its jobs, then run again",
                            partial.display()
                        ),
                    )
                })?;
                if !busy.is_empty() {
                    return Err(Error::usage(
                        arg,
                        format!(
                            "the run that left {} is still queued or running ({}) — wait for it (dsk status {}) or scancel its jobs, then run again",
                            partial.display(),
                            busy.join(", "),
                            w.display()
                        ),
                    ));
                }
            }
        }
    }
    if !plan.also.is_empty() && ctx.resume {
        return Err(Error::usage(
            "--resume",
            "a run with several results cannot be resumed yet — run it again without --resume (it starts over)",
        ));
    }
    *staged = match plan.output.map(|o| &plan.arrays[o].place) {
        Some(Place::Output(p)) => Some(Staged::open(p, OutKind::ZarrDir, ctx.overwrite, ctx.resume)?),
        _ => None,
    };
    // the other results: staged and locked each (dropped on failure, which removes them)
    let mut also_staged = vec![];
    for &o in &plan.also {
        if let Place::Output(p) = &plan.arrays[o].place {
            also_staged.push(Staged::open(p, OutKind::ZarrDir, ctx.overwrite, false)?);
        }
    }
    // --resume: the plan the partial output was being written by (the same computation, checked),
    // run with this run's options
    let stored;
    let (plan, resumed) = match staged.as_ref().and_then(|s| s.resumed().map(|r| (s.path().to_path_buf(), r))) {
        Some((partial, r)) => {
            if r.owner.logical != plan.logical {
                return Err(Error::output(
                    &partial,
                    format!(
                        "was left by a different computation ({}) — run without --resume to start over, or run the command that made it",
                        r.owner.command
                    ),
                ));
            }
            let f = partial.join(crate::store::output::PLAN_FILE);
            let text = std::fs::read(&f).map_err(|e| Error::io(&f, "read the plan of the run to resume", e))?;
            stored = serde_json::from_slice::<PhysicalPlan>(&text).map_err(|e| {
                Error::input(&f, format!("not a dsk plan file: {e} — run without --resume to start over"))
            })?;
            if stored.logical != plan.logical {
                return Err(Error::input(&f, "does not match its marker — run without --resume to start over"));
            }
            if stored.memory > ctx.opts.memory {
                return Err(Error::usage(
                    "--memory",
                    format!(
                        "the run being resumed was planned for --memory {}: resume with at least that much",
                        crate::plan::planner::mem_arg(stored.memory)
                    ),
                ));
            }
            (&stored, Some(r.owner.work_dir.clone()))
        }
        None => (plan, None),
    };
    // `--codec auto`: each such array's codec, chosen from samples of what it will hold (a resumed
    // plan has its choices)
    let chosen;
    let plan = if super::autocodec::pending(plan) {
        chosen = super::autocodec::resolve(plan)?;
        &chosen
    } else {
        plan
    };
    // a resumed plan keeps the scheduler it was made for when the other would change where its
    // state lives (in this process or in files)
    let mut scheduler = ctx.scheduler;
    let on_cluster = ctx.cluster.executor != super::cluster::Executor::Local;
    if resumed.is_some() && on_cluster && plan.scheduler != "processes" {
        return Err(Error::usage(
            "--executor",
            format!(
                "the run being resumed was planned for --scheduler {} on one machine, whose partial results a cluster cannot share — resume it without --executor, or run without --resume to start over",
                plan.scheduler
            ),
        ));
    }
    if resumed.is_some() && !on_cluster && (plan.scheduler == "processes") != (scheduler == super::Scheduler::Processes)
    {
        scheduler = match plan.scheduler.as_str() {
            "processes" => super::Scheduler::Processes,
            "sync" => super::Scheduler::Sync,
            _ => super::Scheduler::Threads,
        };
        eprintln!("dsk: resuming with --scheduler {}, the scheduler the run was planned for", plan.scheduler);
    }
    let cluster = on_cluster;
    let processes = scheduler == super::Scheduler::Processes || cluster;
    if cluster && ctx.cluster.detach && !plan.also.is_empty() {
        return Err(Error::usage(
            "--detach",
            "a run with several results cannot be detached yet — run it without --detach",
        ));
    }
    if cluster
        && ctx.cluster.detach
        && !plan
            .output
            .is_some_and(|o| matches!(plan.arrays[o].place, Place::Output(ref p) if !crate::store::remote::is_url(p)))
    {
        return Err(Error::usage(
            "--detach",
            "needs a computation that writes a local Zarr array (a --resume run publishes it when the jobs are done)",
        ));
    }
    super::workdir::reclaim_in(ctx.work_base.as_deref());
    if plan.needs_work_dir() || processes {
        let adopted = resumed.as_ref().and_then(|w| w.as_deref()).and_then(super::workdir::WorkDir::adopt);
        let mut w = match adopted {
            Some(w) => w,
            None => WorkDir::create(ctx.work_base.as_deref())?,
        };
        if ctx.keep_work_dir {
            w.keep();
            if w.arrays_root() != w.path() {
                eprintln!(
                    "dsk: keeping the work directory {} and its arrays under {}",
                    w.path().display(),
                    w.arrays_root().display()
                );
            } else {
                eprintln!("dsk: keeping the work directory {}", w.path().display());
            }
        }
        if !w.adopted() {
            w.check_free(plan.scratch_bytes)?;
        }
        if let Some(s) = staged.as_ref() {
            w.set_owner(s.path())?;
        }
        *work = Some(w);
    }
    let work_adopted = work.as_ref().is_some_and(|w| w.adopted());
    // the work directory of the run being resumed, when this run does not take it over
    if let Some(Some(old)) = &resumed {
        if !work_adopted {
            super::workdir::remove_if_abandoned(old);
        }
    }
    // what a later --resume needs: the plan, the work directory, what is computed
    if let Some(s) = staged.as_mut().filter(|s| !s.is_remote()) {
        // (a run with several results is not resumable: no plan to resume from)
        if resumed.is_none() && plan.also.is_empty() {
            let f = s.path().join(crate::store::output::PLAN_FILE);
            // with absolute paths: a resume may run from another directory
            let text = serde_json::to_vec(&plan.with_absolute_paths())
                .map_err(|e| Error::Internal(format!("serialise the plan: {e}")))?;
            std::fs::write(&f, text).map_err(|e| Error::io(&f, "write the plan", e))?;
        }
        s.set_owner_info(work.as_ref().map(|w| w.path()), &plan.logical)?;
    }
    let paths = array_paths(plan, work.as_ref().map(|w| w.arrays_root()))?;
    let mut arrays = vec![];
    for (decl, path) in plan.arrays.iter().zip(&paths) {
        let keep = match decl.place {
            Place::Output(_) => resumed.is_some(),
            Place::Work(_) => work_adopted,
        };
        let mut z = if keep && crate::store::meta::is_zarr_array(path) {
            ZArray::open(path)?
        } else {
            let local = !crate::store::remote::is_url(path);
            if local && !matches!(decl.place, Place::Output(_)) {
                std::fs::create_dir_all(path).map_err(|e| Error::io(path, "create an intermediate array", e))?;
            }
            let mut z = store::create(path, &decl.spec)?;
            if matches!(decl.place, Place::Work(_)) {
                z.publish()?; // an intermediate on object storage: readable by worker processes
            }
            z
        };
        z.set_write_empty_chunks(decl.write_empty_chunks);
        arrays.push(z);
    }
    let inputs = open_inputs(plan)?;
    let versions = inputs.iter().map(ZArray::version).collect::<Result<Vec<_>>>()?;
    let plan_file = match (&work, processes) {
        (Some(w), true) if cluster => Some(super::cluster::write_plan_file(plan, w.path(), w.arrays_root())?),
        (Some(w), true) => {
            let f = w.path().join("plan.json");
            let text = serde_json::to_vec(plan).map_err(|e| Error::Internal(format!("serialise the plan: {e}")))?;
            std::fs::write(&f, text).map_err(|e| Error::io(&f, "write the plan", e))?;
            Some(f)
        }
        _ => None,
    };
    *began = true;
    // completion records: what a resumed run may skip, and this run's own
    let partial = staged.as_ref().filter(|s| !s.is_remote()).map(|s| s.path().to_path_buf());
    let journal = match &partial {
        Some(p) => Some(Journal::open(&p.join(crate::store::output::DONE_DIR), "run")?),
        None => None,
    };
    let skip = match (&partial, resumed.is_some()) {
        (Some(p), true) => {
            let done = Done::load(&p.join(crate::store::output::DONE_DIR), &plan.task_counts())?;
            resume_plan(plan, done, work_adopted)
        }
        _ => vec![Skip::None; plan.stages.len()],
    };
    if resumed.is_some() {
        let left: u64 =
            plan.stages.iter().zip(&skip).enumerate().map(|(s, (st, k))| st.tasks - k.skipped(s, st.tasks)).sum();
        eprintln!(
            "dsk: resuming {}: {} of {} tasks left",
            partial.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            left,
            plan.total_tasks()
        );
    }

    let budget = Budget::new(ctx.opts.memory);
    let mut mem_partials: HashMap<usize, MemPartials> = HashMap::new();
    let mut held: HashMap<usize, Reservation<'_>> = HashMap::new();
    let mut report = RunReport { stages: plan.stages.len(), ..Default::default() };
    // stages already run on the cluster with the ones before them
    let mut on_cluster_until = 0;
    for (s, st) in plan.stages.iter().enumerate() {
        if super::interrupted() {
            return Err(Error::Interrupted);
        }
        if matches!(skip[s], Skip::All) || s < on_cluster_until {
            report.tasks += st.tasks;
            continue;
        }
        if cluster && !st.local {
            // every stage up to the next one that runs here goes to the cluster at once
            let end = (s..plan.stages.len()).find(|&k| plan.stages[k].local).unwrap_or(plan.stages.len());
            let w = work.as_ref().ok_or_else(|| Error::Internal("a cluster run without a work directory".into()))?;
            if ctx.work_base.is_none() && ctx.cluster.executor == super::cluster::Executor::Slurm {
                eprintln!(
                    "dsk: note: the work directory {} is on this machine's temporary directory, which other nodes do not see — on a cluster of several nodes pass --work-dir on a shared file system (or s3://)",
                    w.path().display()
                );
            }
            let records = super::journal::records_dir(partial.as_deref(), w.arrays_root());
            let launch = super::cluster::Launch {
                opts: &ctx.cluster,
                plan,
                plan_file: plan_file
                    .as_deref()
                    .map(|f| {
                        if crate::store::remote::is_url(f) {
                            f.to_path_buf()
                        } else {
                            std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf())
                        }
                    })
                    .ok_or_else(|| Error::Internal("no plan file".into()))?,
                work: w.path().to_path_buf(),
                records: std::path::absolute(&records).unwrap_or(records),
                jobs: (s..end)
                    .filter(|&k| !matches!(skip[k], Skip::All) && plan.stages[k].tasks > 0)
                    .map(|k| {
                        let j =
                            super::cluster::StageJob::new(plan, k, ctx.cluster.tasks_per_job, ctx.cluster.max_indices);
                        if ctx.cluster.tasks_per_job.is_some_and(|t| t < j.per) {
                            eprintln!(
                                "dsk: note: stage {} runs {} tasks per job, not {}: its {} tasks in at most {} jobs",
                                j.name,
                                j.per,
                                ctx.cluster.tasks_per_job.unwrap_or(0),
                                j.tasks,
                                ctx.cluster.max_indices
                            );
                        }
                        j
                    })
                    .collect(),
                cwd: std::env::current_dir().map_err(|e| Error::io(".", "find the current directory", e))?,
                sink: ctx.sink,
            };
            let out = match ctx.cluster.executor {
                super::cluster::Executor::Slurm => super::cluster::slurm::run(&launch)?,
                _ => super::cluster::dask::run(&launch)?,
            };
            if out.detached {
                report.detached = true;
                return Ok(report);
            }
            report.cluster_jobs = Some(report.cluster_jobs.unwrap_or(0) + out.jobs);
            report.children_peak = report.children_peak.max(out.worker_peak);
            report.tasks += st.tasks;
            on_cluster_until = end;
            continue;
        }
        let done = match &skip[s] {
            Skip::Some(d) => Some(d),
            _ => None,
        };
        if let StageOp::Partials(p) = &st.op {
            if let PartialStore::Memory { bytes } = p.store {
                mem_partials.insert(s, MemPartials::default());
                held.insert(s, budget.reserve(bytes));
            }
        }
        let meta =
            ExecStage { name: st.name.clone(), tasks: st.tasks, task_bytes: st.task_bytes, total_bytes: st.read_bytes };
        let sync = scheduler == super::Scheduler::Sync;
        let o = RunOptions { workers: if sync { 1 } else { ctx.opts.workers }, memory: ctx.opts.memory };
        let parallel = if sync { 1 } else { st.parallel.max(1) };
        match &st.op {
            StageOp::Export { array, sel, format, path, block_bytes, decoders } => {
                let arr = match array {
                    ExportSource::Input(i) => &inputs[*i],
                    ExportSource::Array(a) => &arrays[*a],
                };
                super::export::stream(
                    arr,
                    sel,
                    *format,
                    path.as_deref(),
                    ctx.overwrite,
                    *block_bytes,
                    &RunOptions { workers: (*decoders).clamp(1, o.workers), ..o },
                    ctx.sink,
                    &st.name,
                )?;
                report.parallel = report.parallel.max(1);
            }
            _ if processes && !st.local => {
                let f = plan_file.as_deref().ok_or_else(|| Error::Internal("no plan file".into()))?;
                let stats = run_processes(f, s, &meta, parallel, done.is_some(), ctx.sink)?;
                report.children = report.children.max(stats.0);
                report.children_peak = report.children_peak.max(stats.1);
                report.children_peak_sum = report.children_peak_sum.max(stats.2);
                report.parallel = report.parallel.max(stats.0);
            }
            _ => {
                let opened = open_stage(&st.op, &arrays)?;
                let shared = Shared { inputs: &inputs, arrays: &arrays, partials: &mem_partials };
                let stats = run_stage(&meta, parallel, &o, ctx.sink, &budget, |tc: TaskCtx| {
                    if done.is_some_and(|d| d.is_done(s, tc.index)) {
                        return Ok(0);
                    }
                    let b = run_task(plan, s, tc.index, &shared, &opened, tc.codec_threads)?;
                    if let Some(j) = &journal {
                        j.record(s, tc.index)?;
                    }
                    Ok(b)
                })?;
                report.parallel = report.parallel.max(stats.parallel);
            }
        }
        report.tasks += st.tasks;
        // a merged reduction's in-memory partials are released
        if let StageOp::Finalize(f) = &st.op {
            mem_partials.remove(&f.partials);
            held.remove(&f.partials);
        }
    }
    drop(held);
    // an input replaced or rewritten meanwhile (e.g. by an --overwrite) would give a result that
    // mixes two arrays, or reads deleted chunks as the fill value: no result then
    for (z, v) in inputs.iter().zip(&versions) {
        if z.version()? != *v {
            return Err(Error::input(
                z.path(),
                "was replaced or rewritten by another program while dsk read it — the result would mix two versions of the array, so none is written; run again",
            ));
        }
    }
    let mut printed = None;
    let mut json = vec![];
    for p in &plan.print {
        let text = scalar_text(&arrays[p.array], p.dtype)?;
        if p.json {
            let value = match text.trim_end() {
                "nan" => "\"NaN\"",
                "inf" => "\"Infinity\"",
                "-inf" => "\"-Infinity\"",
                "True" => "true",
                "False" => "false",
                v => v,
            };
            let dtype = p.dtype.unwrap_or(arrays[p.array].dtype());
            let label = serde_json::to_string(p.label.as_deref().unwrap_or("value"))
                .map_err(|e| Error::Internal(e.to_string()))?;
            json.push(format!("{label}: {{\"shape\": [], \"dtype\": \"{}\", \"value\": {value}}}", dtype.name()));
            continue;
        }
        let line = match &p.label {
            Some(l) => format!("{l} {text}"),
            None => text,
        };
        printed.get_or_insert_with(String::new).push_str(&line);
    }
    if !json.is_empty() {
        printed.get_or_insert_with(String::new).push_str(&format!("{{{}}}\n", json.join(", ")));
    }
    // an output on object storage gets its metadata last, now that every chunk is written
    if let Some(s) = staged.as_ref() {
        s.verify()?;
    }
    for s in &also_staged {
        s.verify()?;
    }
    for z in arrays.iter_mut() {
        z.publish()?;
    }
    drop(arrays);
    drop(journal);
    // every result can go into place before any does
    for s in staged.iter().chain(&also_staged) {
        s.check_commit()?;
    }
    if let Some(s) = staged.take() {
        if let Some(w) = s.commit()? {
            eprintln!("dsk: warning: {w}");
        }
    }
    for s in also_staged {
        if let Some(w) = s.commit()? {
            eprintln!("dsk: warning: {w}");
        }
    }
    if let Some(w) = work.take() {
        // the jobs' logs of a cluster run that succeeded
        if ctx.cluster.executor == super::cluster::Executor::Slurm {
            if let (logs, true) = super::cluster::slurm::logs_of(&ctx.cluster, w.path()) {
                let _ = std::fs::remove_dir_all(logs);
            }
        }
    }
    // the work dirs of killed runs of this output are not wanted any more
    super::workdir::reclaim_in(ctx.work_base.as_deref());
    if let Some(text) = printed {
        crate::write_stdout(text.as_bytes())?;
    }
    report.elapsed = started.elapsed();
    report.peak_rss = super::peak_rss();
    report.storage = crate::store::remote::traffic();
    Ok(report)
}

/// What a resumed run skips of a stage.
#[derive(Clone, Debug)]
enum Skip {
    /// Run every task.
    None,
    /// Skip the tasks recorded done (the records of the whole plan, shared by its stages).
    Some(std::sync::Arc<Done>),
    /// Skip the stage: its results are not needed any more.
    All,
}

impl Skip {
    fn skipped(&self, stage: usize, tasks: u64) -> u64 {
        match self {
            Skip::None => 0,
            Skip::All => tasks,
            Skip::Some(d) => d.count(stage),
        }
    }
}

/// Which tasks of `plan` a resumed run skips, from the records `done`. A stage's records count
/// when its results are on disk: in the output array, or in the work directory when it was taken
/// over (`work_adopted`). A stage whose results are gone (in memory, or in a lost work directory)
/// runs again in full, and only if a later stage still has tasks to run.
fn resume_plan(plan: &PhysicalPlan, done: Done, work_adopted: bool) -> Vec<Skip> {
    let n = plan.stages.len();
    let durable = |st: &crate::plan::physical::Stage| -> bool {
        let writes: Vec<usize> = match &st.op {
            StageOp::Compute { out, .. } | StageOp::Import { out, .. } | StageOp::ScanApply { out, .. } => vec![*out],
            StageOp::ScanTotals { totals, .. } => vec![*totals],
            StageOp::ScanCarries { carries, .. } => vec![*carries],
            StageOp::Finalize(f) => f.outs.iter().map(|o| o.out).collect(),
            StageOp::Partials(p) => match &p.store {
                PartialStore::Memory { .. } => return false,
                PartialStore::Disk { arrays } => arrays.clone(),
            },
            StageOp::Export { .. } => return false,
        };
        writes.iter().all(|&a| matches!(plan.arrays[a].place, Place::Output(_)) || work_adopted)
    };
    let done = std::sync::Arc::new(done);
    let mut skip = vec![Skip::None; n];
    let mut later_left = false;
    for s in (0..n).rev() {
        let st = &plan.stages[s];
        let left = if durable(st) {
            let c = done.count(s);
            skip[s] = if c == st.tasks { Skip::All } else { Skip::Some(done.clone()) };
            c < st.tasks
        } else if later_left {
            skip[s] = Skip::None;
            true
        } else {
            skip[s] = Skip::All;
            false
        };
        later_left |= left;
    }
    skip
}

/// The value of a 0-d array as the text dsk prints (read back exactly), with a newline; a complex
/// one as Python prints it, `(1+2j)`.
fn scalar_text(arr: &ZArray, dtype: Option<crate::dtype::DType>) -> Result<String> {
    use crate::dtype::Elem;
    let shape: Vec<usize> = arr.shape().iter().map(|&n| n as usize).collect();
    let b = crate::with_dtype!(arr.dtype(), T => {
        let v: Vec<T> = arr.read_region::<T>(&crate::grid::Region::full(arr.shape()), 1)?;
        crate::kernels::buf::Buf::from_vec(&shape, v)
    });
    let b = match dtype {
        Some(d) => b.cast(d),
        None => b,
    };
    let mut text = String::new();
    with_buf!(&b, T, a => {
        let mut it = a.iter().copied();
        let v: T = it.next().ok_or_else(|| Error::Internal("an empty 0-d result".into()))?;
        match (arr.meta().complex, it.next()) {
            (true, Some(im)) => crate::dtype::write_complex(v, im, &mut text),
            (true, None) => return Err(Error::Internal("a complex result without its imaginary part".into())),
            _ => v.write_text(&mut text),
        }
    });
    text.push('\n');
    Ok(text)
}

/// Kills the children still running when dropped (on error paths).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run the tasks of stage `s` in `parallel` child processes (`dsk worker`), each a contiguous
/// range. Returns (children started, their largest peak RSS, the sum of their peaks).
fn run_processes(
    plan_file: &Path,
    s: usize,
    stage: &ExecStage,
    parallel: usize,
    skip_done: bool,
    sink: &dyn EventSink,
) -> Result<(usize, Option<u64>, Option<u64>)> {
    let start = Instant::now();
    let n = stage.tasks as usize;
    let nproc = parallel.clamp(1, n.max(1));
    let exe = std::env::current_exe().map_err(|e| Error::io("dsk", "find the dsk executable", e))?;
    sink.event(&Event::StageStart { stage: &stage.name, tasks: stage.tasks, bytes: stage.total_bytes });
    let mut ranges = vec![];
    let per = n.div_ceil(nproc);
    let mut first = 0;
    while first < n {
        ranges.push((first, per.min(n - first)));
        first += per;
    }
    let mut children = Children(vec![]);
    for &(first, count) in &ranges {
        let mut cmd = Command::new(&exe);
        // a worker dies with its parent (kill -9 included): nothing writes after the run is gone
        // SAFETY: prctl is async-signal-safe and touches only the child
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .arg("worker")
            .arg(plan_file)
            .args(["--stage", &s.to_string(), "--first", &first.to_string(), "--count", &count.to_string()])
            // the children write chunk files the way the parent was asked to (--io)
            .args(["--io", if crate::store::fs::direct_writes() { "direct" } else { "buffered" }])
            .args(if skip_done { &["--skip-done"][..] } else { &[] })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(&exe, "start a worker process", e))?;
        children.0.push(child);
    }
    let done = AtomicU64::new(0);
    let bytes_done = AtomicU64::new(0);
    let peak = AtomicU64::new(0);
    let peak_sum = AtomicU64::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(vec![]);
    let outputs: Vec<_> = children.0.iter_mut().map(|c| (c.stdout.take(), c.stderr.take())).collect();
    let pids: Vec<u32> = children.0.iter().map(|c| c.id()).collect();
    let readers_done = std::sync::atomic::AtomicUsize::new(0);
    let n_readers = outputs.len();
    // one worker failing stops the others: their work would be thrown away
    let one_failed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        // pass an interrupt on to the children: they stop before their next task
        let (readers_done, pids, one_failed) = (&readers_done, &pids, &one_failed);
        sc.spawn(move || {
            while readers_done.load(Ordering::Relaxed) < n_readers {
                if super::interrupted() || one_failed.load(Ordering::Relaxed) {
                    for &p in pids {
                        // SAFETY: kill only sends a signal to our own child process
                        unsafe { libc::kill(p as libc::pid_t, libc::SIGTERM) };
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        for (k, (stdout, stderr)) in outputs.into_iter().enumerate() {
            let (first, count) = ranges[k];
            let (done, bytes_done, failures, peak, peak_sum) = (&done, &bytes_done, &failures, &peak, &peak_sum);
            let stderr_text = sc.spawn(move || {
                let mut text = String::new();
                if let Some(e) = stderr {
                    for line in BufReader::new(e).lines().map_while(|l| l.ok()) {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
                text
            });
            sc.spawn(move || {
                let mut running: Option<u64> = None;
                let mut finished = 0;
                if let Some(out) = stdout {
                    for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                        if let Some(p) = v.get("peak_rss").and_then(|x| x.as_u64()) {
                            peak.fetch_max(p, Ordering::Relaxed);
                            peak_sum.fetch_add(p, Ordering::Relaxed);
                        }
                        if let Some(t) = v.get("start").and_then(|x| x.as_u64()) {
                            running = Some(t);
                            sink.event(&Event::TaskStart { stage: &stage.name, task: t, lane: k });
                        }
                        if let Some(t) = v.get("done").and_then(|x| x.as_u64()) {
                            running = None;
                            finished += 1;
                            let b = v.get("bytes").and_then(|x| x.as_u64()).unwrap_or(0);
                            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                            let bd = bytes_done.fetch_add(b, Ordering::Relaxed) + b;
                            sink.event(&Event::TaskDone {
                                stage: &stage.name,
                                task: t,
                                lane: k,
                                done: d,
                                tasks: stage.tasks,
                                bytes_done: bd,
                                bytes: stage.total_bytes,
                                elapsed: start.elapsed(),
                            });
                        }
                    }
                }
                let err_text = stderr_text.join().unwrap_or_default();
                if finished < count {
                    one_failed.store(true, Ordering::Relaxed);
                }
                readers_done.fetch_add(1, Ordering::Relaxed);
                if finished < count {
                    let at = running.map(|t| format!(" while running task {t}")).unwrap_or_default();
                    let why = err_text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").to_string();
                    let why = why.trim_start_matches("dsk: error: ").to_string();
                    failures.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                        "worker process {k} of stage {} (tasks {first}..{}) stopped{at}: {why}",
                        stage.name,
                        first + count
                    ));
                }
            });
        }
    });
    if super::interrupted() {
        return Err(Error::Interrupted);
    }
    // collect exit statuses (a child killed by a signal has no message of its own)
    let mut statuses = vec![];
    for c in &mut children.0 {
        statuses.push(c.wait().map_err(|e| Error::io("worker", "wait for a worker process", e))?);
    }
    children.0.clear();
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    for (k, st) in statuses.iter().enumerate() {
        let tag = format!("worker process {k} ");
        if !st.success() && !failures.iter().any(|f| f.starts_with(&tag)) {
            failures.push(format!("worker process {k} of stage {} exited with {st}", stage.name));
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = st.signal() {
                for f in failures.iter_mut().filter(|f| f.starts_with(&tag)) {
                    f.push_str(&format!(
                        " (killed by signal {sig}{})",
                        if sig == 9 { ", perhaps out of memory: lower --memory or --workers" } else { "" }
                    ));
                }
            }
        }
    }
    // the worker that failed first, not the ones stopped because of it
    if let Some(f) = failures.iter().find(|f| !f.contains("interrupted")).or(failures.first()) {
        return Err(Error::Worker { msg: f.clone() });
    }
    let elapsed = start.elapsed();
    let bytes = bytes_done.load(Ordering::Relaxed);
    sink.event(&Event::StageEnd { stage: &stage.name, tasks: stage.tasks, bytes, elapsed });
    let p = peak.load(Ordering::Relaxed);
    let ps = peak_sum.load(Ordering::Relaxed);
    Ok((nproc, (p > 0).then_some(p), (ps > 0).then_some(ps)))
}

/// Whether the partial output whose marker is `marker` still belongs to the run whose plan file
/// is `plan_file` (its work directory is the plan's directory). A plan on object storage cannot
/// be compared: there only the marker's presence counts.
fn still_ours(marker: &Path, plan_file: &Path) -> bool {
    let Ok(text) = std::fs::read(marker) else { return false };
    if crate::store::remote::is_url(plan_file) {
        return true;
    }
    let Ok(owner) = serde_json::from_slice::<crate::store::output::Owner>(&text) else { return true };
    let real = |p: &Path| std::fs::canonicalize(p).ok();
    match (owner.work_dir, plan_file.parent()) {
        (Some(w), Some(d)) => real(&w).is_none_or(|w| Some(w) == real(d)),
        _ => true,
    }
}

/// The staging directory of the plan's output when it is a local array (where `--resume` looks
/// for completion records).
pub fn local_partial(plan: &PhysicalPlan) -> Option<PathBuf> {
    plan.output.and_then(|o| match &plan.arrays[o].place {
        Place::Output(p) if crate::store::remote::is_url(p) => None,
        Place::Output(p) => Some(crate::plan::physical::staging_path(p)),
        Place::Work(_) => None,
    })
}

/// The body of `dsk worker PLAN --stage S --first F --count N`: run tasks F..F+N of stage S, one
/// line of JSON per task on stdout (`{"start": t}`, then `{"done": t, "bytes": b}`), and the
/// process's peak RSS last (`{"peak_rss": n}`).
pub fn worker(
    plan_file: &Path,
    stage: usize,
    first: u64,
    count: u64,
    skip_done: bool,
    records: Option<&Path>,
) -> Result<()> {
    let text = super::cluster::read_plan_file(plan_file)?;
    let plan: PhysicalPlan =
        serde_json::from_slice(&text).map_err(|e| Error::input(plan_file, format!("not a dsk plan file: {e}")))?;
    let st = plan.stages.get(stage).ok_or_else(|| Error::input(plan_file, format!("the plan has no stage {stage}")))?;
    let work = super::workdir::WorkDir::arrays_root_of(plan_file.parent().unwrap_or(Path::new(".")));
    let paths = array_paths(&plan, Some(&work))?;
    let mut arrays = vec![];
    for (decl, p) in plan.arrays.iter().zip(&paths) {
        // an output on object storage has no metadata until the run ends: made from the plan
        let remote_out = matches!(decl.place, Place::Output(_)) && crate::store::remote::is_url(p);
        let mut z = if remote_out { store::create(p, &decl.spec)? } else { ZArray::open(p)? };
        z.set_write_empty_chunks(decl.write_empty_chunks);
        arrays.push(z);
    }
    let inputs = open_inputs(&plan)?;
    let opened = open_stage(&st.op, &arrays)?;
    // completion records go where the parent says, by default into the output's staging
    // directory
    let dir = match records {
        Some(r) => Some(r.to_path_buf()),
        None => local_partial(&plan).map(|p| p.join(crate::store::output::DONE_DIR)),
    };
    let journal = match &dir {
        Some(d) => Some(Journal::open(d, "worker")?),
        None => None,
    };
    let done = match (&dir, skip_done) {
        (Some(d), true) => Some(Done::load(d, &plan.task_counts())?),
        _ => None,
    };
    let partials = HashMap::new();
    let shared = Shared { inputs: &inputs, arrays: &arrays, partials: &partials };
    // test hook: make this worker die at a given task, to exercise the parent's failure report
    let fail_at: Option<u64> = std::env::var("DSK_TEST_WORKER_ABORT_AT").ok().and_then(|v| v.parse().ok());
    // and slow tasks down, to act on a run while it goes on (as under the threads scheduler)
    let delay =
        std::env::var("DSK_TEST_TASK_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()).map(Duration::from_millis);
    let end = first.saturating_add(count).min(st.tasks);
    let marker = local_partial(&plan).map(|p| p.join(crate::store::output::MARKER));
    for t in first..end {
        if super::interrupted() {
            return Err(Error::Interrupted);
        }
        // the run stopped and removed its partial output, or another run has made it its own
        // (a job or Dask task that outlived its run): write nothing more
        if let Some(m) = &marker {
            if !still_ours(m, plan_file) {
                return Err(Error::output(
                    m.parent().unwrap_or(m),
                    "is gone or belongs to another run: the run this worker belongs to has stopped — nothing more is written",
                ));
            }
        }
        crate::write_stdout(format!("{{\"start\": {t}}}\n").as_bytes())?;
        if fail_at == Some(t) {
            std::process::abort();
        }
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let b = if done.as_ref().is_some_and(|d| d.is_done(stage, t)) {
            0
        } else {
            let b = run_task(&plan, stage, t, &shared, &opened, 1)?;
            if let Some(j) = &journal {
                j.record(stage, t)?;
            }
            b
        };
        crate::write_stdout(format!("{{\"done\": {t}, \"bytes\": {b}}}\n").as_bytes())?;
    }
    if let Some(j) = &journal {
        j.flush()?;
    }
    if let Some(p) = super::peak_rss() {
        crate::write_stdout(format!("{{\"peak_rss\": {p}}}\n").as_bytes())?;
    }
    Ok(())
}
