//! `--executor slurm`: each stage of the plan is one Slurm job array (`sbatch --parsable
//! --array=0-N`), each index running `dsk worker` on a range of the stage's tasks; stages are
//! chained with `--dependency=afterok` and `--kill-on-invalid-dep=yes`, so the whole plan is in
//! the queue at once and the driver may exit (`--detach`).
//!
//! The driver polls `squeue` (never `sbatch --wait`: a driver killed or detached must not
//! matter), reports progress from the completion records, and when an index fails (its state,
//! or a job gone from the queue without its tasks recorded) it waits for the rest of the stage,
//! cancels the arrays queued after it, submits the failed indices again (`--retries`) and the
//! later stages after them. With no retries left the run fails naming the stage, the task, the
//! array index and its log file. A running job cancelled by the user stops the run (a pending one
//! leaves no record in `squeue` and counts as failed). On failure or Ctrl-C every job of the run is
//! cancelled and waited for, so nothing writes into an output that is being removed.
//!
//! Slurm forgets finished jobs after `MinJobAge` (300 s by default) and clusters without
//! accounting have no `sacct`: the completion records, not Slurm, say which tasks are done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{failed_task, peak_of, sh_quote, ClusterOpts, Launch, Outcome, Progress, StageJob, State, POLL};
use crate::error::{Error, Result};
use crate::plan::physical::PhysicalPlan;

/// The `sbatch` arguments that submit `indices` of `job` (`--array` spec), after `dep`.
fn sbatch_args(
    opts: &ClusterOpts,
    job: &StageJob,
    indices: &str,
    dep: Option<&str>,
    log_dir: &Path,
    cwd: &Path,
    wrap: &str,
) -> Vec<String> {
    let throttle = opts.max_running.map(|m| format!("%{m}")).unwrap_or_default();
    let mut a = vec![
        "--parsable".to_string(),
        format!("--array={indices}{throttle}"),
        format!("--job-name=dsk-{}", job.name),
        format!("--mem={}M", job.mem_bytes.div_ceil(1 << 20)),
        "--ntasks=1".to_string(),
        "--cpus-per-task=1".to_string(),
        // a % in the path would be a Slurm filename pattern
        format!("--output={}/{}-%A_%a.out", log_dir.display().to_string().replace('%', "%%"), job.name),
        format!("--chdir={}", cwd.display()),
    ];
    for (flag, v) in [("--partition", &opts.partition), ("--account", &opts.account), ("--time", &opts.time)] {
        if let Some(v) = v {
            a.push(format!("{flag}={v}"));
        }
    }
    if let Some(d) = dep {
        a.push(format!("--dependency=afterok:{d}"));
        a.push("--kill-on-invalid-dep=yes".to_string());
    }
    a.extend(opts.sbatch_args.iter().cloned());
    a.push(format!("--wrap={wrap}"));
    a
}

/// The command one array index runs.
fn wrap(dsk: &Path, plan_file: &Path, job: &StageJob, records: &Path) -> String {
    format!(
        "exec {} worker {} --stage {} --first $((SLURM_ARRAY_TASK_ID*{})) --count {} --skip-done --records {} --io {}",
        sh_quote(&dsk.to_string_lossy()),
        sh_quote(&plan_file.to_string_lossy()),
        job.stage,
        job.per,
        job.per,
        sh_quote(&records.to_string_lossy()),
        if crate::store::fs::direct_writes() { "direct" } else { "buffered" },
    )
}

/// `--executor slurm --explain`: the submissions as a shell script.
pub fn explain(plan: &PhysicalPlan, opts: &ClusterOpts, jobs: &[StageJob]) -> Result<String> {
    let dsk = opts.dsk_path()?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let work = PathBuf::from("$WORKDIR");
    let logs = match &opts.log_dir {
        Some(d) => d.join("RUN"),
        None => PathBuf::from("$WORKDIR.logs"),
    };
    let partial = super::super::run::local_partial(&plan.with_absolute_paths());
    let records = super::super::journal::records_dir(partial.as_deref(), &work);
    let mut out = String::from(
        "# --executor slurm: one job array per stage, chained with afterok; WORKDIR is the run's work\n# directory (made under --work-dir when the run starts, with plan.json in it; the logs go to WORKDIR.logs)\n",
    );
    let mut prev: Option<String> = None;
    for (k, job) in jobs.iter().enumerate() {
        out.push_str(&format!(
            "# stage {} ({}): {} task{} in {} array ind{} of {} task{}, --mem for one task of {}\n",
            job.stage + 1,
            job.name,
            job.tasks,
            if job.tasks == 1 { "" } else { "s" },
            job.indices,
            if job.indices == 1 { "ex" } else { "ices" },
            job.per,
            if job.per == 1 { "" } else { "s" },
            crate::error::human(job.mem_bytes)
        ));
        let args = sbatch_args(
            opts,
            job,
            &format!("0-{}", job.indices - 1),
            prev.as_deref(),
            &logs,
            &cwd,
            &wrap(&dsk, &work.join("plan.json"), job, &records),
        );
        let quoted: Vec<String> = args.iter().map(|a| explain_quote(a)).collect();
        out.push_str(&format!("JOB_{k}=$(sbatch {})\n", quoted.join(" ")));
        prev = Some(format!("$JOB_{k}"));
    }
    Ok(out)
}

/// Quote an argument of the `--explain` script: `$WORKDIR` and `$JOB_k` expand when the script
/// runs, `$((SLURM_ARRAY_TASK_ID*N))` when the job does.
fn explain_quote(a: &str) -> String {
    if !a.contains('$') {
        return sh_quote(a);
    }
    let escaped = a.replace('\\', "\\\\").replace('"', "\\\"").replace('`', "\\`").replace("$((", "\\$((");
    format!("\"{escaped}\"")
}

/// Run a command of Slurm's client; its stdout, or a one-line error.
fn slurm(cmd: &str, args: &[String]) -> std::result::Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{cmd} is not installed here — --executor slurm runs where Slurm's commands work (a login node), or use --executor local"
            )
        } else {
            format!("cannot run {cmd}: {e}")
        }
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        // the lines that say what is wrong, not the "Try --help" that may follow them
        let lines: Vec<&str> =
            err.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("Try \"")).take(3).collect();
        let text = if lines.is_empty() { "no message".to_string() } else { lines.join("; ") };
        Err(format!("{cmd} failed ({}): {text}", out.status))
    }
}

/// The cluster's `MaxArraySize` (`scontrol show config`), when Slurm answers.
pub fn max_array_size() -> Option<u64> {
    let out = slurm("scontrol", &["show".to_string(), "config".to_string()]).ok()?;
    out.lines()
        .find(|l| l.trim_start().starts_with("MaxArraySize"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().parse().ok())
}

/// Submit; the array job's id.
fn submit(args: &[String], job: &StageJob) -> Result<String> {
    let out = slurm("sbatch", args)
        .map_err(|m| Error::Worker { msg: format!("cannot submit stage {} to Slurm: {m}", job.name) })?;
    let id = out.trim().split(';').next().unwrap_or("").trim().to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Worker {
            msg: format!("sbatch printed {out:?} instead of a job id for stage {}", job.name),
        });
    }
    Ok(id)
}

fn scancel(ids: &[String]) {
    if !ids.is_empty() {
        let _ = slurm("scancel", ids);
    }
}

/// Cancel the jobs `ids` and wait until none of them runs any more (a cancelled job gets
/// SIGTERM, finishes its current task and exits; Slurm kills it after `KillWait`): the run's
/// partial output is removed or kept only once nothing writes into it.
fn scancel_and_wait(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    scancel(ids);
    let start = Instant::now();
    let mut said = false;
    while start.elapsed().as_secs() < 300 {
        let running = ids.iter().any(|id| match query(id) {
            Ok(Some(m)) => m.values().any(|s| active(&s.state)),
            Ok(None) => false,
            Err(_) => true,
        });
        if !running {
            return;
        }
        if !said && start.elapsed().as_secs() >= 2 {
            eprintln!("dsk: waiting for the cancelled Slurm jobs {} to stop", ids.join(", "));
            said = true;
        }
        std::thread::sleep(POLL);
    }
    eprintln!("dsk: warning: the Slurm jobs {} have not stopped after 5 minutes", ids.join(", "));
}

/// An index's state in Slurm.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    state: String,
    reason: String,
}

/// The indices of array job `id` that Slurm still knows: `None` when it knows none of them.
fn query(id: &str) -> std::result::Result<Option<HashMap<u64, Seen>>, String> {
    let args: Vec<String> =
        ["-h", "-t", "all", "-r", "-j", id, "-o", "%K|%T|%r"].iter().map(|s| s.to_string()).collect();
    match slurm("squeue", &args) {
        Ok(text) => {
            let mut m = HashMap::new();
            for line in text.lines() {
                let mut parts = line.trim().splitn(3, '|');
                let (Some(k), Some(st), r) = (parts.next(), parts.next(), parts.next()) else { continue };
                if let Ok(k) = k.parse::<u64>() {
                    m.insert(k, Seen { state: st.to_string(), reason: r.unwrap_or("").to_string() });
                }
            }
            Ok(if m.is_empty() { None } else { Some(m) })
        }
        Err(m) if m.contains("Invalid job id") => Ok(None),
        Err(m) => Err(m),
    }
}

/// States of a job that has not ended.
fn active(state: &str) -> bool {
    matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "REQUEUE_HOLD"
            | "REQUEUE_FED"
            | "RESIZING"
            | "SIGNALING"
            | "STAGE_OUT"
            | "STOPPED"
            | "RESV_DEL_HOLD"
    )
}

/// The array jobs of a run that are still queued or running (for another run of its output and
/// `dsk status`); an error when Slurm cannot be asked.
pub fn active_jobs(state: &State) -> std::result::Result<Vec<String>, String> {
    let mut out = vec![];
    for id in state.slurm_ids.iter().flatten() {
        if let Some(m) = query(id)? {
            if m.values().any(|s| active(&s.state) && s.reason != "DependencyNeverSatisfied") {
                out.push(id.clone());
            }
        }
    }
    Ok(out)
}

/// Counts of index states of the array jobs `ids`, for `dsk status` (`RUNNING 2, PENDING 1`).
pub fn describe_jobs(ids: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = vec![];
    let mut gone = 0;
    for id in ids {
        match query(id) {
            Ok(Some(m)) => {
                for s in m.values() {
                    match counts.iter_mut().find(|(k, _)| *k == s.state) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((s.state.clone(), 1)),
                    }
                }
            }
            Ok(None) => gone += 1,
            Err(m) => return m,
        }
    }
    counts.sort();
    let mut parts: Vec<String> = counts.into_iter().map(|(s, n)| format!("{n} {}", s.to_lowercase())).collect();
    if gone > 0 {
        parts.push(format!("{gone} array job(s) no longer in the queue"));
    }
    if parts.is_empty() {
        "nothing in the queue".into()
    } else {
        parts.join(", ")
    }
}

/// A submission: an array job covering some indices of a stage.
#[derive(Clone, Debug)]
struct Sub {
    id: String,
    indices: Vec<u64>,
    at: Instant,
    /// Indices Slurm has listed at least once.
    listed: std::collections::HashSet<u64>,
}

/// What became of an index.
#[derive(Clone, Debug, PartialEq)]
enum Fate {
    Done,
    Active,
    /// Waiting on a dependency that failed (cancelled or about to be).
    Blocked,
    Failed {
        job: String,
        how: String,
    },
    Cancelled {
        job: String,
    },
}

/// Collapse indices into an `--array` spec: `0-3,7,9-10`.
fn array_spec(indices: &[u64]) -> String {
    let mut parts = vec![];
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

/// Run the stages `l.jobs` as chained job arrays and follow them to the end.
pub fn run(l: &Launch<'_>) -> Result<Outcome> {
    let dsk = l.opts.dsk_path()?;
    // from the first submission on, Ctrl-C goes through cancelling the jobs
    let _jobs = super::super::stopping_jobs();
    let (log_dir, ours) = logs_of(l.opts, &l.work);
    std::fs::create_dir_all(&log_dir).map_err(|e| Error::io(&log_dir, "create the log directory", e))?;
    let n = l.jobs.len();
    let mut subs: Vec<Vec<Sub>> = vec![vec![]; n];
    let mut state =
        State { log_dir: Some(log_dir.clone()), slurm_ids: vec![vec![]; n], ..State::of(l, super::Executor::Slurm) };
    // submit stages from `from` on, the first after `dep`
    // the tasks done before (a resumed run): their ranges are not submitted again
    let before = super::super::journal::Done::load(&l.records, &l.plan.task_counts())?;
    let submit_chain = |from: usize,
                        first_indices: Option<Vec<u64>>,
                        mut dep: Option<String>,
                        subs: &mut Vec<Vec<Sub>>,
                        state: &mut State|
     -> Result<()> {
        for (p, job) in l.jobs.iter().enumerate().skip(from) {
            let indices: Vec<u64> = match (&first_indices, p == from) {
                (Some(ix), true) => ix.clone(),
                _ => (0..job.indices)
                    .filter(|&i| {
                        let (first, count) = job.range(i);
                        !(first..first + count).all(|t| before.is_done(job.stage, t))
                    })
                    .collect(),
            };
            if indices.is_empty() {
                continue;
            }
            let args = sbatch_args(
                l.opts,
                job,
                &array_spec(&indices),
                dep.as_deref(),
                &log_dir,
                &l.cwd,
                &wrap(&dsk, &l.plan_file, job, &l.records),
            );
            let id = submit(&args, job)?;
            subs[p].push(Sub { id: id.clone(), indices, at: Instant::now(), listed: Default::default() });
            state.slurm_ids[p].push(id.clone());
            state.write(&l.work)?;
            dep = Some(id);
        }
        Ok(())
    };
    let all_ids = |subs: &Vec<Vec<Sub>>| -> Vec<String> { subs.iter().flatten().map(|s| s.id.clone()).collect() };
    if let Err(e) = submit_chain(0, None, None, &mut subs, &mut state) {
        scancel(&all_ids(&subs));
        let _ = std::fs::remove_dir(&log_dir); // when no job wrote a log
        return Err(e);
    }
    let submitted: usize = l.jobs.iter().map(|j| j.indices as usize).sum();
    if l.opts.detach {
        return Ok(Outcome { detached: true, worker_peak: None, jobs: submitted });
    }
    let mut progress = Progress::new(l.plan, &l.records, l.sink);
    let mut retries_left = vec![l.opts.retries; n];
    let mut p = 0;
    let mut query_failing: Option<Instant> = None;
    let result = loop {
        if super::super::interrupted() {
            break Err(Error::Interrupted);
        }
        if p == n {
            break Ok(());
        }
        let job = &l.jobs[p];
        let done = match progress.load() {
            Ok(d) => d,
            Err(e) => break Err(e),
        };
        progress.update(l.plan, job, &done);
        // what Slurm says of each submission of this stage
        let mut seen: Vec<Option<HashMap<u64, Seen>>> = vec![];
        let mut failed_query = None;
        for sub in &subs[p] {
            match query(&sub.id) {
                Ok(m) => seen.push(m),
                Err(m) => {
                    failed_query = Some(m);
                    break;
                }
            }
        }
        if let Some(m) = failed_query {
            // the controller may be restarting: give it a few minutes
            let since = *query_failing.get_or_insert_with(Instant::now);
            if since.elapsed().as_secs() > 300 {
                break Err(Error::Worker { msg: format!("cannot follow the Slurm jobs of stage {}: {m}", job.name) });
            }
            std::thread::sleep(POLL);
            continue;
        }
        query_failing = None;
        for (sub, m) in subs[p].iter_mut().zip(&seen) {
            if let Some(m) = m {
                sub.listed.extend(m.keys().copied());
            }
        }
        let mut fates: Vec<Fate> = vec![];
        for i in 0..job.indices {
            let (first, count) = job.range(i);
            let recorded = (first..first + count).all(|t| done.is_done(job.stage, t));
            // the latest submission of this index (none: its tasks were done before this run)
            let Some(k) = subs[p].iter().rposition(|s| s.indices.contains(&i)) else {
                fates.push(if recorded {
                    Fate::Done
                } else {
                    Fate::Failed { job: "?".into(), how: "was never submitted".into() }
                });
                continue;
            };
            let sub = &subs[p][k];
            let jobname = format!("{}_{i}", sub.id);
            // a stage is over when its tasks are recorded and none of its jobs is left in the
            // queue (no job of this run may outlive it)
            let fate = match seen[k].as_ref().and_then(|m| m.get(&i)) {
                Some(s) if s.reason == "DependencyNeverSatisfied" => {
                    if recorded {
                        Fate::Done
                    } else {
                        Fate::Blocked
                    }
                }
                Some(s) if active(&s.state) => Fate::Active,
                _ if recorded => Fate::Done,
                Some(s) if s.state == "COMPLETED" => {
                    // the records are written before the worker exits: read them once more
                    Fate::Failed { job: jobname, how: "finished without recording all its tasks".into() }
                }
                Some(s) if s.state == "CANCELLED" => Fate::Cancelled { job: jobname },
                Some(s) => Fate::Failed { job: jobname, how: format!("ended {}", s.state) },
                None if !sub.listed.contains(&i) && sub.at.elapsed().as_secs() < 30 => Fate::Active,
                None => Fate::Failed { job: jobname, how: "left the Slurm queue without finishing its tasks".into() },
            };
            fates.push(fate);
        }
        // a job that completed between the records' read and the query: read the records again
        if fates.iter().any(|f| matches!(f, Fate::Failed { how, .. } if how.starts_with("finished without"))) {
            let again = match progress.load() {
                Ok(d) => d,
                Err(e) => break Err(e),
            };
            for (i, f) in fates.iter_mut().enumerate() {
                let (first, count) = job.range(i as u64);
                if (first..first + count).all(|t| again.is_done(job.stage, t)) {
                    *f = Fate::Done;
                }
            }
            progress.update(l.plan, job, &again);
        }
        if fates.iter().all(|f| *f == Fate::Done) {
            progress.end(l.plan, job.stage);
            p += 1;
            continue;
        }
        // a job cancelled by someone: the run stops at once (the rest is cancelled below)
        if let Some(Fate::Cancelled { job: j }) = fates.iter().find(|f| matches!(f, Fate::Cancelled { .. })) {
            break Err(Error::Worker { msg: format!("stage {}: Slurm job {j} was cancelled (scancel)", job.name) });
        }
        if fates.iter().any(|f| matches!(f, Fate::Active)) {
            std::thread::sleep(POLL);
            continue;
        }
        // nothing of the stage runs any more and some indices did not finish
        let later: Vec<String> = subs.iter().skip(p + 1).flatten().map(|s| s.id.clone()).collect();
        scancel(&later);
        let failed: Vec<u64> = fates
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f, Fate::Failed { .. } | Fate::Blocked))
            .map(|(i, _)| i as u64)
            .collect();
        if retries_left[p] > 0 && fates.iter().any(|f| matches!(f, Fate::Failed { .. })) {
            retries_left[p] -= 1;
            eprintln!(
                "dsk: stage {}: {} array index(es) failed; submitting them again ({} retr{} left)",
                job.name,
                failed.len(),
                retries_left[p],
                if retries_left[p] == 1 { "y" } else { "ies" }
            );
            for s in subs.iter_mut().skip(p + 1) {
                s.clear();
            }
            if let Err(e) = submit_chain(p, Some(failed), None, &mut subs, &mut state) {
                break Err(e);
            }
            continue;
        }
        // the first failure, with what its log says
        let (i, j, how) = fates
            .iter()
            .enumerate()
            .find_map(|(i, f)| match f {
                Fate::Failed { job, how } => Some((i as u64, job.clone(), how.clone())),
                _ => None,
            })
            .unwrap_or((failed.first().copied().unwrap_or(0), "?".into(), "was blocked".into()));
        let (first, count) = job.range(i);
        let log = log_path(&log_dir, job, &j, i);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let (task, why) = failed_task(&text);
        let task = task.map(|t| format!("task {t} ")).unwrap_or_default();
        let why = why.map(|w| format!(": {w}")).unwrap_or_default();
        let tried = l.opts.retries - retries_left[p];
        break Err(Error::Worker {
            msg: format!(
                "stage {}: {task}failed in Slurm job {j} (array index {i}, tasks {first}..{}) — it {how}{why}{} — log: {}",
                job.name,
                first + count,
                if tried > 0 { format!(" (after {tried} retr{})", if tried == 1 { "y" } else { "ies" }) } else { String::new() },
                log.display()
            ),
        });
    };
    if let Err(e) = &result {
        // the logs stay for the error message's file; not after an interrupt (no message names
        // one), nor when no job wrote one
        scancel_and_wait(&all_ids(&subs));
        if matches!(e, Error::Interrupted) && ours {
            let _ = std::fs::remove_dir_all(&log_dir);
        }
        let _ = std::fs::remove_dir(&log_dir);
    }
    result?;
    // the workers' peak memory, from their logs
    let mut peak = None;
    for (p, job) in l.jobs.iter().enumerate() {
        for sub in &subs[p] {
            for &i in &sub.indices {
                let f = log_path(&log_dir, job, &format!("{}_{i}", sub.id), i);
                if let Some(v) = std::fs::read_to_string(&f).ok().as_deref().and_then(peak_of) {
                    peak = peak.max(Some(v));
                }
            }
        }
    }
    Ok(Outcome { detached: false, worker_peak: peak, jobs: submitted })
}

/// Where the jobs' logs go: `LOG_DIR/RUN/` with `log_dir` in the cluster config (kept), else
/// next to the work directory, `RUN.logs` (removed when the run succeeds, kept when it fails so
/// that the error can name a log; the work directory itself is removed either way). Also
/// whether dsk removes it.
pub fn logs_of(opts: &ClusterOpts, work: &Path) -> (PathBuf, bool) {
    let name = work.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "dsk".into());
    match &opts.log_dir {
        Some(d) => (d.join(&name), false),
        None => (work.with_file_name(format!("{name}.logs")), true),
    }
}

/// The log of array index `i` of the job `j` (`ID_i`).
fn log_path(dir: &Path, job: &StageJob, j: &str, i: u64) -> PathBuf {
    let id = j.split('_').next().unwrap_or(j);
    dir.join(format!("{}-{id}_{i}.out", job.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_collapse_runs() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[2, 5, 6, 9]), "2,5-6,9");
        assert_eq!(array_spec(&[7]), "7");
    }

    #[test]
    fn wrapped_command_quotes_paths() {
        let job = StageJob { stage: 1, name: "compute".into(), tasks: 10, per: 4, indices: 3, mem_bytes: 1 };
        let w =
            wrap(Path::new("/opt/my dsk/dsk"), Path::new("/w/plan.json"), &job, Path::new("/o.zarr.partial/.dsk-done"));
        assert!(
            w.starts_with(
                "exec '/opt/my dsk/dsk' worker /w/plan.json --stage 1 --first $((SLURM_ARRAY_TASK_ID*4)) --count 4"
            ),
            "{w}"
        );
    }
}
