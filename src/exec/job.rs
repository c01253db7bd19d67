//! A job: a plan, its output and its tasks, run by one of the schedulers.
//!
//! - `sync`: one thread, tasks in order (for debugging; results are identical).
//! - `threads`: the worker pool of [`super::run_stage`] with admission control.
//! - `processes`: the job is serialised to JSON in the work directory and `--workers` child
//!   processes (`dsk worker`) each run a contiguous range of its tasks, reporting every finished
//!   task on stdout; a child that fails or dies is reported with the task it was running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use std::collections::HashMap;

use super::evaluate::{into_elems, load_chunk, Evaluator, TempData};
use super::{run_stage, Event, EventSink, RunOptions, Stage, StageStats, TaskCtx};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::grid::Grid;
use crate::kernels::buf::Buf;
use crate::plan::lower::Tasks;
use crate::plan::lower::{footprint, leaf_grid};
use crate::plan::Plan;
use crate::store::ZArray;
use crate::with_dtype;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Scheduler {
    /// One thread, tasks in order.
    Sync,
    /// A pool of --workers threads (default).
    Threads,
    /// --workers child processes, each running a range of the tasks.
    Processes,
}

/// Where the result goes: a Zarr array being written (its staging directory).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OutJob {
    pub path: PathBuf,
    pub grid: Grid,
    pub dtype: DType,
}

/// What a `dsk worker` process is asked to run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum WorkerJob {
    /// Compute output chunks and write them.
    Write(Job),
    /// Compute reduction partials into the spill store.
    Partials(super::stages::PartialJob),
}

impl WorkerJob {
    fn ntasks(&self) -> usize {
        match self {
            WorkerJob::Write(j) => j.tasks.groups.len(),
            WorkerJob::Partials(p) => p.tasks.len(),
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub stage: String,
    pub plan: Plan,
    pub out: OutJob,
    pub tasks: Tasks,
    /// Output chunks of one task computed at once (their source chunks decoded in parallel first).
    #[serde(default)]
    pub inner: usize,
}

/// The opened inputs of a plan.
pub fn open_sources(plan: &Plan) -> Result<Vec<ZArray>> {
    plan.inputs.iter().map(|i| ZArray::open(&i.path)).collect()
}

/// The intermediates of a plan that live in the work dir, opened (a child process cannot see the
/// parent's in-memory ones; plans run by processes keep all of theirs on disk).
pub fn open_temps(plan: &Plan) -> Result<Vec<TempData>> {
    plan.temps
        .iter()
        .map(|t| match &t.path {
            Some(p) => ZArray::open(p).map(|z| TempData::Zarr(Box::new(z))),
            None => Err(Error::Internal("an in-memory intermediate in a job file".into())),
        })
        .collect()
}

/// Run task `t` of `job`: evaluate each output chunk of its group and write it. With `job.inner`
/// above 1 and several chunks in the group, the group's source chunks are decoded in parallel first
/// and its output chunks computed in parallel (the band of a rechunk).
pub fn run_task(
    job: &Job,
    sources: &[ZArray],
    temps: &[TempData],
    out: &ZArray,
    t: usize,
    codec_threads: usize,
) -> Result<u64> {
    let grid = &job.out.grid;
    let item = job.out.dtype.size() as u64;
    let group = &job.tasks.groups[t];
    let one = |ev: &mut Evaluator<'_>, c: u64, threads: usize| -> Result<u64> {
        let idx = grid.chunk_index(c);
        let region = grid.chunk_region(&idx);
        let b = ev.root_region(&region)?;
        with_dtype!(job.out.dtype, T => {
            let v = into_elems::<T>(b)?;
            out.write_chunk(&idx, &v, threads)?;
        });
        Ok(region.len() * item)
    };
    if job.inner > 1 && group.len() > 1 {
        use rayon::prelude::*;
        let mut keys: Vec<(usize, u64)> = vec![];
        let mut seen = std::collections::HashSet::new();
        for &c in group {
            for k in footprint(&job.plan, &grid.chunk_region(&grid.chunk_index(c))) {
                if seen.insert(k) {
                    keys.push(k);
                }
            }
        }
        let decoded: Vec<((usize, u64), Buf)> = keys
            .par_iter()
            .map(|&(leaf, lin)| {
                let g =
                    leaf_grid(&job.plan, leaf).ok_or_else(|| Error::Internal("source chunk without a grid".into()))?;
                Ok(((leaf, lin), load_chunk(&job.plan, sources, temps, leaf, &g, lin, 1)?))
            })
            .collect::<Result<_>>()?;
        let cache: HashMap<(usize, u64), Buf> = decoded.into_iter().collect();
        return group
            .par_iter()
            .map(|&c| {
                let mut ev = Evaluator::with_chunks(&job.plan, sources, temps, 1, cache.clone());
                one(&mut ev, c, 1)
            })
            .try_reduce(|| 0, |a, b| Ok(a + b));
    }
    let mut ev = Evaluator::new(&job.plan, sources, temps, codec_threads);
    let mut bytes = 0;
    for &c in group {
        bytes += one(&mut ev, c, codec_threads)?;
    }
    Ok(bytes)
}

/// Run the whole job with `scheduler`.
pub fn run(
    job: &Job,
    temps: &[TempData],
    scheduler: Scheduler,
    parallel: usize,
    opts: &RunOptions,
    work_dir: &Path,
    sink: &dyn EventSink,
) -> Result<StageStats> {
    let stage = Stage {
        name: job.stage.clone(),
        tasks: job.tasks.groups.len() as u64,
        task_bytes: job.tasks.task_bytes,
        total_bytes: job.out.grid.shape.iter().product::<u64>() * job.out.dtype.size() as u64,
    };
    match scheduler {
        Scheduler::Sync | Scheduler::Threads => {
            let sources = open_sources(&job.plan)?;
            let out = ZArray::open(&job.out.path)?;
            let parallel = if scheduler == Scheduler::Sync { 1 } else { parallel };
            let o = RunOptions {
                workers: if scheduler == Scheduler::Sync { 1 } else { opts.workers },
                memory: opts.memory,
            };
            run_stage(&stage, parallel, &o, sink, |ctx: TaskCtx| {
                run_task(job, &sources, temps, &out, ctx.index as usize, ctx.codec_threads)
            })
        }
        Scheduler::Processes => run_processes(&WorkerJob::Write(job.clone()), &stage, parallel, work_dir, sink),
    }
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

/// Run the tasks of `job` in `parallel` child processes (`dsk worker`), each a contiguous range.
pub fn run_processes(
    job: &WorkerJob,
    stage: &Stage,
    parallel: usize,
    work_dir: &Path,
    sink: &dyn EventSink,
) -> Result<StageStats> {
    let start = Instant::now();
    let n = job.ntasks();
    let nproc = parallel.clamp(1, n.max(1));
    let job_file = work_dir.join(format!("{}.job.json", stage.name));
    let text = serde_json::to_vec(job).map_err(|e| Error::Internal(format!("serialise the job: {e}")))?;
    std::fs::write(&job_file, text).map_err(|e| Error::io(&job_file, "write the job file", e))?;
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
        let child = Command::new(&exe)
            .arg("worker")
            .arg(&job_file)
            .args(["--first", &first.to_string(), "--count", &count.to_string()])
            // the children write chunk files the way the parent was asked to (--io)
            .args(["--io", if crate::store::fs::direct_writes() { "auto" } else { "buffered" }])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(&exe, "start a worker process", e))?;
        children.0.push(child);
    }
    let done = AtomicU64::new(0);
    let bytes_done = AtomicU64::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(vec![]);
    let outputs: Vec<_> = children.0.iter_mut().map(|c| (c.stdout.take(), c.stderr.take())).collect();
    std::thread::scope(|s| {
        for (k, (stdout, stderr)) in outputs.into_iter().enumerate() {
            let (first, count) = ranges[k];
            let (done, bytes_done, failures) = (&done, &bytes_done, &failures);
            let stderr_text = s.spawn(move || {
                let mut text = String::new();
                if let Some(e) = stderr {
                    for line in BufReader::new(e).lines().map_while(|l| l.ok()) {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
                text
            });
            s.spawn(move || {
                let mut running: Option<u64> = None;
                let mut finished = 0;
                if let Some(out) = stdout {
                    for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                        if let Some(t) = v.get("start").and_then(|x| x.as_u64()) {
                            running = Some(t);
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
                    let at = running.map(|t| format!(" while running task {t}")).unwrap_or_default();
                    let why = err_text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").to_string();
                    let why = why.trim_start_matches("dsk: error: ").to_string();
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("worker process {k} (tasks {first}..{}) stopped{at}: {why}", first + count));
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
        if !st.success() && !failures.iter().any(|f| f.starts_with(&format!("worker process {k} "))) {
            failures.push(format!("worker process {k} exited with {st}"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = st.signal() {
                for f in failures.iter_mut().filter(|f| f.starts_with(&format!("worker process {k} "))) {
                    f.push_str(&format!(
                        " (killed by signal {sig}{})",
                        if sig == 9 { ", perhaps out of memory: lower --memory or --workers" } else { "" }
                    ));
                }
            }
        }
    }
    if let Some(f) = failures.first() {
        return Err(Error::Worker { msg: f.clone() });
    }
    let elapsed = start.elapsed();
    let bytes = bytes_done.load(Ordering::Relaxed);
    sink.event(&Event::StageEnd { stage: &stage.name, tasks: stage.tasks, bytes, elapsed });
    Ok(StageStats { tasks: stage.tasks, bytes, elapsed, parallel: nproc })
}

/// The body of `dsk worker JOB --first F --count N`: run tasks F..F+N, one line of JSON per task
/// on stdout (`{"start": t}`, then `{"done": t, "bytes": b}`).
pub fn worker(job_file: &Path, first: usize, count: usize) -> Result<()> {
    let text = std::fs::read(job_file).map_err(|e| Error::io(job_file, "read the job file", e))?;
    let job: WorkerJob =
        serde_json::from_slice(&text).map_err(|e| Error::input(job_file, format!("not a dsk job file: {e}")))?;
    let job = match job {
        WorkerJob::Partials(p) => return super::stages::partial_worker(&p, first, count),
        WorkerJob::Write(j) => j,
    };
    let sources = open_sources(&job.plan)?;
    let temps = open_temps(&job.plan)?;
    let out = ZArray::open(&job.out.path)?;
    let end = (first + count).min(job.tasks.groups.len());
    worker_range(first, end, |t| run_task(&job, &sources, &temps, &out, t, 1))
}

/// Run tasks `first..end` in a worker process, reporting `{"start": t}` and `{"done": t, "bytes":
/// b}` lines on stdout for the parent, and stopping on an interrupt.
pub fn worker_range(first: usize, end: usize, mut task: impl FnMut(usize) -> Result<u64>) -> Result<()> {
    // test hook: make this worker die at a given task, to exercise the parent's failure report
    let fail_at: Option<usize> = std::env::var("DSK_TEST_WORKER_ABORT_AT").ok().and_then(|v| v.parse().ok());
    for t in first..end {
        if super::interrupted() {
            return Err(Error::Interrupted);
        }
        crate::write_stdout(format!("{{\"start\": {t}}}\n").as_bytes())?;
        if fail_at == Some(t) {
            std::process::abort();
        }
        let b = task(t)?;
        crate::write_stdout(format!("{{\"done\": {t}, \"bytes\": {b}}}\n").as_bytes())?;
    }
    Ok(())
}
