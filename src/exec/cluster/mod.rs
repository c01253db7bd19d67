//! Cluster executors: the stages of a physical plan run on a cluster engine the user already has
//! — Slurm job arrays ([`slurm`]) or a Dask distributed cluster ([`dask`]) — instead of this
//! machine's threads or processes. dsk manages no cluster of its own.
//!
//! The plan is planned as for `--scheduler processes` (partials and intermediates on disk, every
//! task independent within its stage) and written to the work directory with absolute paths. A
//! stage's tasks are cut into contiguous ranges ([`StageJob`]), each run by `dsk worker` on some
//! node: a Slurm array index, or a Dask task that starts `dsk worker` as a subprocess. Workers
//! append completion records ([`super::journal`]) as tasks finish; the driver follows progress
//! from them, so a retried range, a resumed run or `dsk status` skip or count exactly the tasks
//! whose writes returned. Tasks are idempotent (a task rewrites the same chunks), so a range run
//! twice — a retry, Dask's work stealing — writes the same bytes.
//!
//! `cluster.json` in the work directory says what was submitted (for `dsk status`, and so that a
//! `--resume` does not start a second copy of a run whose jobs are still queued).

pub mod dask;
pub mod slurm;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::journal::Done;
use super::{Event, EventSink};
use crate::error::{Error, Result};
use crate::plan::physical::PhysicalPlan;

/// `--executor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// This machine (--scheduler sync, threads or processes).
    #[default]
    Local,
    /// Each stage a Slurm job array, chained with --dependency=afterok.
    Slurm,
    /// Ranges of tasks as tasks of a Dask distributed cluster (--scheduler-address).
    Dask,
}

impl Executor {
    pub fn name(self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Slurm => "slurm",
            Executor::Dask => "dask",
        }
    }
}

/// Extra memory a `dsk worker` process needs besides its task's projected bytes (the binary, the
/// plan, the allocator's slack; measured: 40 MB peak for a task of 4 MB): asked of Slurm and Dask
/// on top of the task.
pub const WORKER_BYTES: u64 = 64 << 20;

/// About how long one array index or Dask task should run: long enough that the ~1 s a
/// scheduler needs per job is small next to it, short enough that a lost job costs little.
pub const TARGET_JOB_SECS: f64 = 120.0;

/// The rate at which one core is taken to process a task's bytes, to cut stages into jobs of
/// about [`TARGET_JOB_SECS`]. Measured here on one core: (cos(x)**2).mean(axis=1) of zstd-coded
/// random normals 570 MB/s, generating and encoding random normals ~150 MB/s; at 300 MB/s both
/// make jobs of 1–5 minutes.
pub const CORE_BYTES_PER_SEC: f64 = 300e6;

/// The most array indices one stage is cut into when Slurm does not say its `MaxArraySize`
/// (1001 by default: indices 0..=1000).
pub const MAX_INDICES: u64 = 1000;

/// The most Dask tasks one stage is cut into (the scheduler's cost per task, ~1 ms, stays small
/// next to the tasks' minutes).
pub const MAX_DASK_TASKS: u64 = 100_000;

/// The cluster options of a run: flags over the config file.
#[derive(Clone, Debug, Default)]
pub struct ClusterOpts {
    pub executor: Executor,
    pub scheduler_address: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub time: Option<String>,
    pub sbatch_args: Vec<String>,
    pub tasks_per_job: Option<u64>,
    pub max_running: Option<u64>,
    pub retries: u32,
    pub detach: bool,
    /// The dsk executable on the cluster's nodes (default: this one).
    pub dsk: Option<PathBuf>,
    /// The Python interpreter that has `dsk_dask` (default `python3`, or $DSK_PYTHON).
    pub python: Option<String>,
    /// Where Slurm writes the jobs' logs (default: beside the work directory).
    pub log_dir: Option<PathBuf>,
    /// The most jobs a stage is cut into (Slurm's `MaxArraySize` − 1, or [`MAX_DASK_TASKS`]).
    pub max_indices: u64,
}

/// The `sbatch` options dsk sets for every job: refused in `--sbatch-arg` and `sbatch_args`.
pub const OWN_SBATCH_ARGS: &[&str] = &[
    "--array",
    "-a",
    "--wrap",
    "--output",
    "-o",
    "--error",
    "-e",
    "--parsable",
    "--dependency",
    "-d",
    "--kill-on-invalid-dep",
    "--chdir",
    "-D",
    "--wait",
    "-W",
];

/// The option of dsk's own that `arg` sets, as sbatch reads it: a long option or an unambiguous
/// abbreviation of one (`--arr=0`), or a short option, alone or with its value attached (`-a0`).
pub fn own_sbatch_arg(arg: &str) -> Option<&'static str> {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        if name.is_empty() {
            return None;
        }
        return OWN_SBATCH_ARGS
            .iter()
            .find(|o| o.starts_with("--") && o[2..].starts_with(name) && (name.len() >= 3 || o[2..] == *name))
            .copied();
    }
    let short = arg.strip_prefix('-')?;
    let c = short.chars().next()?;
    OWN_SBATCH_ARGS.iter().find(|o| o.len() == 2 && o.ends_with(c)).copied()
}

/// Default `--retries`.
pub const DEFAULT_RETRIES: u32 = 1;

impl ClusterOpts {
    /// The options of the command line, completed from the config file (`--cluster-config`,
    /// `$DSK_CLUSTER_CONFIG`, `~/.config/dsk/cluster.ini`).
    pub fn resolve(a: &crate::cli::ClusterArgs) -> Result<ClusterOpts> {
        let mut o = ClusterOpts {
            executor: a.executor,
            scheduler_address: a.scheduler_address.clone(),
            partition: a.partition.clone(),
            account: a.account.clone(),
            time: a.time.clone(),
            sbatch_args: a.sbatch_arg.clone(),
            tasks_per_job: a.tasks_per_job,
            max_running: a.max_running,
            retries: a.retries.unwrap_or(DEFAULT_RETRIES),
            detach: a.detach,
            dsk: None,
            python: std::env::var("DSK_PYTHON").ok().filter(|p| !p.is_empty()),
            log_dir: None,
            max_indices: match a.executor {
                Executor::Slurm => slurm::max_array_size().map(|m| m.saturating_sub(1).max(1)).unwrap_or(MAX_INDICES),
                _ => MAX_DASK_TASKS,
            },
        };
        let (file, given) = match (&a.cluster_config, std::env::var_os("DSK_CLUSTER_CONFIG")) {
            (Some(f), _) => (Some(f.clone()), Some("--cluster-config")),
            (None, Some(f)) if !f.is_empty() => (Some(PathBuf::from(f)), Some("DSK_CLUSTER_CONFIG")),
            _ => (std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/dsk/cluster.ini")), None),
        };
        // read only for a cluster run: a local command never depends on it
        if let (Some(f), true) = (file, a.executor != Executor::Local) {
            if given.is_some() || f.is_file() {
                o.read_config(&f, a)?;
            }
        }
        if a.executor == Executor::Local {
            let set = [
                ("--scheduler-address", a.scheduler_address.is_some()),
                ("--partition", a.partition.is_some()),
                ("--account", a.account.is_some()),
                ("--time", a.time.is_some()),
                ("--sbatch-arg", !a.sbatch_arg.is_empty()),
                ("--tasks-per-job", a.tasks_per_job.is_some()),
                ("--max-running", a.max_running.is_some()),
                ("--retries", a.retries.is_some()),
                ("--detach", a.detach),
            ];
            if let Some((arg, _)) = set.iter().find(|(_, s)| *s) {
                return Err(Error::usage(
                    *arg,
                    "applies to a cluster run — add --executor slurm or --executor dask, or drop it",
                ));
            }
        }
        for arg in &a.sbatch_arg {
            if let Some(name) = own_sbatch_arg(arg) {
                return Err(Error::usage(
                    "--sbatch-arg",
                    format!("{arg}: dsk sets {name} for every job (it is how dsk follows them) — drop it"),
                ));
            }
        }
        if o.tasks_per_job == Some(0) {
            return Err(Error::usage("--tasks-per-job", "must be at least 1"));
        }
        if o.max_running == Some(0) {
            return Err(Error::usage("--max-running", "must be at least 1"));
        }
        match o.executor {
            Executor::Dask if o.scheduler_address.is_none() => {
                return Err(Error::usage(
                    "--scheduler-address",
                    "--executor dask needs the address of your Dask scheduler, e.g. --scheduler-address tcp://10.0.0.5:8786 (or scheduler_address in the [dask] section of the cluster config)",
                ))
            }
            Executor::Dask if o.detach => {
                return Err(Error::usage(
                    "--detach",
                    "applies to --executor slurm (a Dask cluster forgets tasks whose client is gone)",
                ))
            }
            _ => {}
        }
        Ok(o)
    }

    /// Fill what the flags left unset from the INI file `f` (section `[slurm]` or `[dask]`,
    /// and keys common to both in `[cluster]`).
    fn read_config(&mut self, f: &Path, a: &crate::cli::ClusterArgs) -> Result<()> {
        let ini = ini::Ini::load_from_file_noescape(f)
            .map_err(|e| Error::input(f, format!("cannot read the cluster config: {e}")))?;
        let known: &[(&str, &[&str])] = &[
            ("cluster", &["dsk", "retries", "tasks_per_job"]),
            (
                "slurm",
                &[
                    "partition",
                    "account",
                    "time",
                    "sbatch_args",
                    "tasks_per_job",
                    "max_running",
                    "retries",
                    "dsk",
                    "log_dir",
                ],
            ),
            ("dask", &["scheduler_address", "python", "tasks_per_job", "retries", "dsk"]),
        ];
        for (sec, props) in ini.iter() {
            let Some(sec) = sec else {
                if let Some((k, _)) = props.iter().next() {
                    return Err(Error::input(f, format!("{k} is outside a section — put it under [slurm] or [dask]")));
                }
                continue;
            };
            let Some((_, keys)) = known.iter().find(|(s, _)| *s == sec) else {
                return Err(Error::input(
                    f,
                    format!("unknown section [{sec}] — the sections are [cluster], [slurm] and [dask]"),
                ));
            };
            for (k, _) in props.iter() {
                if !keys.contains(&k) {
                    return Err(Error::input(f, format!("[{sec}] has no key {k} — it takes {}", keys.join(", "))));
                }
            }
        }
        let section = match self.executor {
            Executor::Slurm => "slurm",
            Executor::Dask => "dask",
            Executor::Local => return Ok(()),
        };
        let get = |k: &str| -> Option<String> {
            ini.section(Some(section))
                .and_then(|s| s.get(k))
                .or_else(|| ini.section(Some("cluster")).and_then(|s| s.get(k)))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let number = |k: &str| -> Result<Option<u64>> {
            get(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| Error::input(f, format!("[{section}] {k} = {v:?} is not a whole number")))
                })
                .transpose()
        };
        if self.scheduler_address.is_none() {
            self.scheduler_address = get("scheduler_address");
        }
        if self.partition.is_none() {
            self.partition = get("partition");
        }
        if self.account.is_none() {
            self.account = get("account");
        }
        if self.time.is_none() {
            self.time = get("time");
        }
        if a.sbatch_arg.is_empty() {
            if let Some(v) = get("sbatch_args") {
                self.sbatch_args = shlex::split(&v).ok_or_else(|| {
                    Error::input(f, format!("sbatch_args = {v}: a quote is not closed — quote as a shell does"))
                })?;
            }
        }
        if self.tasks_per_job.is_none() {
            self.tasks_per_job = number("tasks_per_job")?;
        }
        if self.max_running.is_none() {
            self.max_running = number("max_running")?;
        }
        if a.retries.is_none() {
            if let Some(r) = number("retries")? {
                self.retries = u32::try_from(r).map_err(|_| Error::input(f, "retries is too large"))?;
            }
        }
        if let Some(d) = get("dsk") {
            self.dsk = Some(PathBuf::from(d));
        }
        if self.python.is_none() {
            self.python = get("python");
        }
        if let Some(d) = get("log_dir") {
            self.log_dir = Some(PathBuf::from(d));
        }
        // flags dsk gives sbatch itself: another value would break how the run is followed
        for arg in &self.sbatch_args {
            if let Some(name) = own_sbatch_arg(arg) {
                return Err(Error::input(f, format!("sbatch_args: {arg}: dsk sets {name} for every job — drop it")));
            }
        }
        Ok(())
    }

    /// The dsk executable the jobs run.
    pub fn dsk_path(&self) -> Result<PathBuf> {
        match &self.dsk {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe().map_err(|e| Error::io("dsk", "find the dsk executable", e)),
        }
    }
}

/// One stage as the cluster runs it: `indices` ranges of `per` tasks (the last one shorter).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageJob {
    /// The stage's index in the plan.
    pub stage: usize,
    pub name: String,
    pub tasks: u64,
    pub per: u64,
    pub indices: u64,
    /// Memory one job asks for: the task's projected peak and [`WORKER_BYTES`].
    pub mem_bytes: u64,
}

impl StageJob {
    /// Cut stage `s` of `plan` into ranges: `per` tasks each when given, else about
    /// [`TARGET_JOB_SECS`] of work each at [`CORE_BYTES_PER_SEC`], and never more than
    /// `max_indices` ranges.
    pub fn new(plan: &PhysicalPlan, s: usize, per: Option<u64>, max_indices: u64) -> StageJob {
        let st = &plan.stages[s];
        StageJob::cut(s, &st.name, st.tasks, st.read_bytes + st.write_bytes, st.task_bytes, per, max_indices)
    }

    /// Cut `tasks` tasks that process `bytes` in all into ranges (see [`StageJob::new`]).
    pub fn cut(
        stage: usize,
        name: &str,
        tasks: u64,
        bytes: u64,
        task_bytes: u64,
        per: Option<u64>,
        max_indices: u64,
    ) -> StageJob {
        let n = tasks.max(1);
        let per = per.unwrap_or_else(|| {
            let secs = (bytes as f64 / n as f64 / CORE_BYTES_PER_SEC).max(1e-3);
            ((TARGET_JOB_SECS / secs).floor() as u64).max(1)
        });
        let per = per.clamp(1, n).max(n.div_ceil(max_indices.max(1)));
        StageJob {
            stage,
            name: name.to_string(),
            tasks,
            per,
            indices: tasks.div_ceil(per).max(1),
            mem_bytes: task_bytes + WORKER_BYTES,
        }
    }

    /// The tasks of range `i`: (first, count).
    pub fn range(&self, i: u64) -> (u64, u64) {
        let first = i * self.per;
        (first, self.per.min(self.tasks.saturating_sub(first)))
    }
}

/// What a cluster run needs from the run that drives it.
pub struct Launch<'a> {
    pub opts: &'a ClusterOpts,
    pub plan: &'a PhysicalPlan,
    /// The plan file the workers read (a path every node sees, or a URL).
    pub plan_file: PathBuf,
    /// The run's local work directory (cluster.json, logs).
    pub work: PathBuf,
    /// Where the completion records go.
    pub records: PathBuf,
    /// Stages that run (those with tasks left), in order, each after the previous one.
    pub jobs: Vec<StageJob>,
    /// The working directory of the jobs (this process's).
    pub cwd: PathBuf,
    pub sink: &'a dyn EventSink,
}

/// What a finished cluster segment reports.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Submitted and left running (`--detach`).
    pub detached: bool,
    /// The largest peak RSS of a worker, when the workers reported it.
    pub worker_peak: Option<u64>,
    pub jobs: usize,
}

/// The file a cluster run keeps in its work directory.
pub const STATE_FILE: &str = "cluster.json";

/// What was submitted, for `dsk status` and `--resume`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub executor: Option<Executor>,
    pub command: String,
    pub plan_file: PathBuf,
    pub records: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub jobs: Vec<StageJob>,
    /// Slurm: the array jobs submitted for each stage, in order (retries add ids).
    pub slurm_ids: Vec<Vec<String>>,
    pub scheduler_address: Option<String>,
    /// Seconds since the epoch at submission.
    pub submitted: u64,
    /// Processes that drive the run and stop its tasks before they exit (Dask: dsk and its
    /// `dsk_dask`): (host, pid, start time in seconds since the epoch).
    #[serde(default)]
    pub drivers: Vec<(String, u32, u64)>,
}

/// What may still write for the run of `st`: its Slurm array jobs still queued or running, or
/// its driving processes still alive (`host:pid`); an error when that cannot be told (Slurm
/// does not answer, or the run was driven from another host).
pub fn busy(st: &State) -> std::result::Result<Vec<String>, String> {
    let mut out = match st.executor {
        Some(Executor::Slurm) => slurm::active_jobs(st).map_err(|m| {
            format!(
                "Slurm cannot be asked whether its jobs {} still run ({m}); run where squeue works",
                st.slurm_ids.iter().flatten().cloned().collect::<Vec<_>>().join(", ")
            )
        })?,
        _ => vec![],
    };
    let here = crate::store::output::hostname();
    for (host, pid, started) in &st.drivers {
        if *host != here {
            return Err(format!("the run was driven from {host}; ask there whether process {pid} still runs"));
        }
        if crate::store::output::owner_alive(*pid as i32, *started) {
            out.push(format!("process {pid}"));
        }
    }
    Ok(out)
}

/// This process as a driver of a run (for [`State::drivers`]).
pub fn me_as_driver() -> (String, u32, u64) {
    let pid = std::process::id();
    (crate::store::output::hostname(), pid, crate::store::output::process_started(pid as i32).unwrap_or_else(now_secs))
}

impl State {
    /// The state of the run `l` is about to start on `executor`.
    pub fn of(l: &Launch<'_>, executor: Executor) -> State {
        State {
            executor: Some(executor),
            command: format!("{} {}", l.plan.command, l.plan.text),
            plan_file: l.plan_file.clone(),
            records: l.records.clone(),
            log_dir: None,
            jobs: l.jobs.clone(),
            slurm_ids: vec![],
            scheduler_address: None,
            submitted: now_secs(),
            drivers: vec![],
        }
    }

    pub fn write(&self, work: &Path) -> Result<()> {
        let f = work.join(STATE_FILE);
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(format!("serialise {STATE_FILE}: {e}")))?;
        let tmp = work.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, "write", e))?;
        std::fs::rename(&tmp, &f).map_err(|e| Error::io(&f, "write", e))
    }

    pub fn read(work: &Path) -> Result<Option<State>> {
        let f = work.join(STATE_FILE);
        match std::fs::read(&f) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::input(&f, format!("not a dsk cluster state file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&f, "read", e)),
        }
    }
}

/// Read a plan file: a local path, or an object on object storage.
pub fn read_plan_file(f: &Path) -> Result<Vec<u8>> {
    match crate::store::remote::parse(f) {
        Some(url) => {
            let url = url.map_err(|m| Error::input(f, m))?;
            let (parent, name) = match url.key.rsplit_once('/') {
                Some((p, n)) => (crate::store::remote::Url { key: p.to_string(), ..url.clone() }, n.to_string()),
                None => (crate::store::remote::Url { key: String::new(), ..url.clone() }, url.key.clone()),
            };
            let store = crate::store::remote::Remote::new(&parent, None).map_err(|m| Error::input(f, m))?;
            store
                .read_bytes(&name)
                .map_err(|m| Error::input(f, m))?
                .map(|b| b.to_vec())
                .ok_or_else(|| Error::input(f, "the plan file does not exist (the run that wrote it is gone?)"))
        }
        None => std::fs::read(f).map_err(|e| Error::io(f, "read the plan", e)),
    }
}

/// Write the plan the workers read: `plan.json` in the local work directory and, when the run's
/// arrays are on object storage, next to them (nodes of a cluster may not see this machine's
/// temporary directory). Returns the location to hand the workers.
pub fn write_plan_file(plan: &PhysicalPlan, work: &Path, arrays_root: &Path) -> Result<PathBuf> {
    let text = serde_json::to_vec(&plan.with_absolute_paths())
        .map_err(|e| Error::Internal(format!("serialise the plan: {e}")))?;
    let f = work.join("plan.json");
    std::fs::write(&f, &text).map_err(|e| Error::io(&f, "write the plan", e))?;
    if let Some(url) = crate::store::remote::parse(arrays_root) {
        let url = url.map_err(|m| Error::output(arrays_root, m))?;
        let store = crate::store::remote::Remote::new(&url, None).map_err(|m| Error::output(arrays_root, m))?;
        store.put("plan.json", zarrs::storage::Bytes::from(text)).map_err(|m| Error::output(arrays_root, m))?;
        return Ok(url.join("plan.json").to_path());
    }
    Ok(f)
}

/// Quote `s` for a POSIX shell.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+%@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Follows the completion records of a run and reports the tasks that finished as events.
pub struct Progress<'a> {
    records: &'a Path,
    counts: Vec<u64>,
    seen: Done,
    started: Vec<bool>,
    ended: Vec<bool>,
    start: std::time::Instant,
    sink: &'a dyn EventSink,
}

impl<'a> Progress<'a> {
    pub fn new(plan: &PhysicalPlan, records: &'a Path, sink: &'a dyn EventSink) -> Progress<'a> {
        let counts = plan.task_counts();
        let n = counts.len();
        Progress {
            records,
            seen: Done::default(),
            counts,
            started: vec![false; n],
            ended: vec![false; n],
            start: std::time::Instant::now(),
            sink,
        }
    }

    /// The records now.
    pub fn load(&self) -> Result<Done> {
        Done::load(self.records, &self.counts)
    }

    /// Read the records and report the tasks of `job` done since the last call; returns the
    /// number done.
    pub fn update(&mut self, plan: &PhysicalPlan, job: &StageJob, done: &Done) -> u64 {
        let s = job.stage;
        let st = &plan.stages[s];
        if !self.started[s] {
            self.started[s] = true;
            self.sink.event(&Event::StageStart { stage: &st.name, tasks: st.tasks, bytes: st.read_bytes });
        }
        let per_task = st.read_bytes / st.tasks.max(1);
        let mut n = 0;
        for t in 0..st.tasks {
            if !done.is_done(s, t) {
                continue;
            }
            n += 1;
            if !self.seen.is_done(s, t) {
                let lane = (t / job.per) as usize;
                self.sink.event(&Event::TaskStart { stage: &st.name, task: t, lane });
                self.sink.event(&Event::TaskDone {
                    stage: &st.name,
                    task: t,
                    lane,
                    done: n,
                    tasks: st.tasks,
                    bytes_done: n * per_task,
                    bytes: st.read_bytes,
                    elapsed: self.start.elapsed(),
                });
            }
        }
        self.seen = done.clone();
        n
    }

    /// Report stage `s` finished.
    pub fn end(&mut self, plan: &PhysicalPlan, s: usize) {
        if !self.ended[s] {
            self.ended[s] = true;
            let st = &plan.stages[s];
            self.sink.event(&Event::StageEnd {
                stage: &st.name,
                tasks: st.tasks,
                bytes: st.read_bytes,
                elapsed: self.start.elapsed(),
            });
        }
    }
}

/// Check that every task of `job` is recorded done (the cluster said the stage succeeded).
pub fn check_complete(job: &StageJob, done: &Done, records: &Path) -> Result<()> {
    let n = done.count(job.stage);
    if n < job.tasks {
        return Err(Error::Worker {
            msg: format!(
                "stage {}: the cluster reports every job finished but only {n} of {} tasks are recorded in {}",
                job.name,
                job.tasks,
                records.display()
            ),
        });
    }
    Ok(())
}

/// The task a worker was running when it stopped, from its output (`{"start": t}` lines without
/// their `{"done": t}`), and its last error line.
pub fn failed_task(log: &str) -> (Option<u64>, Option<String>) {
    let mut running = None;
    let mut why = None;
    for line in log.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(t) = v.get("start").and_then(|x| x.as_u64()) {
                running = Some(t);
            }
            if v.get("done").is_some() {
                running = None;
            }
        } else if let Some(m) = line.strip_prefix("dsk: error: ") {
            why = Some(m.to_string());
        } else if !line.trim().is_empty() && why.is_none() && !line.contains("pmix") {
            why = Some(line.trim().to_string());
        }
    }
    (running, why)
}

/// The largest `{"peak_rss": n}` in a worker's output.
pub fn peak_of(log: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("peak_rss").and_then(|x| x.as_u64()))
        .max()
}

/// How long the drivers wait between two looks at the cluster.
pub const POLL: Duration = Duration::from_millis(500);

/// The text of `--explain` for a cluster executor: how the plan would be submitted.
pub fn explain(plan: &PhysicalPlan, opts: &ClusterOpts) -> Result<String> {
    let jobs: Vec<StageJob> = plan
        .stages
        .iter()
        .enumerate()
        .filter(|(_, st)| !st.local)
        .map(|(s, _)| StageJob::new(plan, s, opts.tasks_per_job, opts.max_indices))
        .collect();
    match opts.executor {
        Executor::Slurm => slurm::explain(plan, opts, &jobs),
        Executor::Dask => dask::explain(plan, opts, &jobs),
        Executor::Local => Ok(String::new()),
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_cut_into_ranges_that_cover_every_task_once() {
        for (tasks, per, max) in [(70, Some(20), 1000), (1, None, 1000), (5000, Some(1), 1000), (9, Some(100), 3)] {
            let j = StageJob::cut(0, "s", tasks, tasks * 8_000_000, 1 << 20, per, max);
            assert!(j.indices <= max.max(1), "{j:?}");
            let mut next = 0;
            for i in 0..j.indices {
                let (first, count) = j.range(i);
                assert_eq!(first, next);
                assert!(count >= 1);
                next = first + count;
            }
            assert_eq!(next, tasks);
        }
    }

    #[test]
    fn jobs_last_about_two_minutes_at_the_assumed_rate() {
        // 8 MB tasks at 300 MB/s: 4500 tasks make 120 s
        let j = StageJob::cut(0, "s", 1_000_000, 1_000_000 * 8_000_000, 0, None, 100_000);
        assert_eq!(j.per, 4500);
        // a small stage is one job
        assert_eq!(StageJob::cut(0, "s", 800, 800 * 8_000_000, 0, None, 1000).indices, 1);
    }

    #[test]
    fn worker_output_names_the_task_that_failed() {
        let log =
            "{\"start\": 3}\n{\"done\": 3, \"bytes\": 8}\n{\"start\": 4}\ndsk: error: x.zarr: chunk (1, 0): bad\n";
        assert_eq!(failed_task(log), (Some(4), Some("x.zarr: chunk (1, 0): bad".into())));
        assert_eq!(peak_of("{\"peak_rss\": 5}\n{\"peak_rss\": 9}\n"), Some(9));
    }

    #[test]
    fn sbatch_options_of_dsk_are_found_however_spelled() {
        for a in [
            "--array=0",
            "--arr=0",
            "-a0",
            "-a",
            "--wra=x",
            "-o/x",
            "--out=f",
            "--dep=afterok:1",
            "-dsingleton",
            "--chd=/",
            "-D/",
            "--par",
            "--kill-on=no",
            "-e/x",
            "--wai",
        ] {
            assert!(own_sbatch_arg(a).is_some(), "{a}");
        }
        for a in ["--qos=short", "--comment=x", "--constraint=a", "-N2", "--mem=1G", "--export=ALL", "-p", "--ac=x"] {
            assert_eq!(own_sbatch_arg(a), None, "{a}");
        }
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/a/b.zarr"), "/a/b.zarr");
        assert_eq!(sh_quote("it's here"), "'it'\\''s here'");
        assert_eq!(sh_quote(""), "''");
    }
}
