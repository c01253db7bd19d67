//! `--executor dask --scheduler-address tcp://HOST:PORT`: the ranges of each stage become tasks of
//! an existing Dask distributed cluster, through the Python package `dsk_dask` shipped in the
//! repository's `python/` directory (`python -m dsk_dask run -`, the run described as JSON on its
//! standard input). Each Dask task starts `dsk worker` on its worker as a subprocess, declares the
//! memory it will use as the resource `memory` (so Dask does not oversubscribe workers that
//! declare it), and depends on every task of the previous stage. Dask's retries and work stealing
//! are safe: tasks are idempotent, and a range run again skips the tasks already recorded.
//!
//! The driver follows progress from the completion records, and the package's JSON lines on
//! stdout say when a stage ends or a range fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use super::{sh_quote, ClusterOpts, Launch, Outcome, Progress, StageJob, POLL};
use crate::error::{Error, Result};
use crate::plan::physical::PhysicalPlan;

fn python(opts: &ClusterOpts) -> String {
    opts.python.clone().unwrap_or_else(|| "python3".into())
}

/// The run as `dsk_dask` takes it.
fn spec(l: &Launch<'_>) -> Result<serde_json::Value> {
    // unique to this driver: a resumed run must not meet the keys or the stop event of an
    // earlier driver of the same work directory still stopping
    let run = format!(
        "{}-{}",
        l.work.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    );
    Ok(serde_json::json!({
        "scheduler_address": l.opts.scheduler_address,
        "dsk": l.opts.dsk_path()?,
        "plan": l.plan_file,
        "records": l.records,
        "cwd": l.cwd,
        "retries": l.opts.retries,
        "run": run,
        "io": if crate::store::fs::direct_writes() { "direct" } else { "buffered" },
        "stages": l.jobs.iter().map(|j| serde_json::json!({
            "stage": j.stage, "name": j.name, "tasks": j.tasks, "per": j.per, "indices": j.indices,
            "memory": j.mem_bytes,
        })).collect::<Vec<_>>(),
    }))
}

/// `--executor dask --explain`: the Dask tasks each stage becomes.
pub fn explain(_plan: &PhysicalPlan, opts: &ClusterOpts, jobs: &[StageJob]) -> Result<String> {
    let mut out = format!(
        "# --executor dask: {} -m dsk_dask run - (scheduler {}); each stage's tasks wait for the previous stage's\n",
        sh_quote(&python(opts)),
        opts.scheduler_address.as_deref().unwrap_or("?")
    );
    for j in jobs {
        out.push_str(&format!(
            "# stage {} ({}): {} tasks in {} Dask tasks of {} (keys dsk-{}-RUN-FIRST), resources={{'memory': {}}}, retries={}\n",
            j.stage + 1, j.name, j.tasks, j.indices, j.per, j.name, j.mem_bytes, opts.retries
        ));
    }
    Ok(out)
}

/// One line of `dsk_dask`'s output.
enum Line {
    Json(serde_json::Value),
    Eof,
}

/// Run the stages `l.jobs` on the Dask cluster and follow them to the end.
pub fn run(l: &Launch<'_>) -> Result<Outcome> {
    let py = python(l.opts);
    let spec = serde_json::to_vec(&spec(l)?).map_err(|e| Error::Internal(format!("serialise the Dask run: {e}")))?;
    let mut cmd = Command::new(&py);
    // when this process dies, dsk_dask stops the run's ranges (a TERM it handles like Ctrl-C)
    // SAFETY: prctl is async-signal-safe and touches only the child
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd
        .args(["-m", "dsk_dask", "run", "-"])
        .current_dir(&l.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::usage(
                "--executor dask",
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!("{py} is not installed here — set DSK_PYTHON (or python in the [dask] section of the cluster config) to the Python that has dask.distributed and dsk_dask")
                } else {
                    format!("cannot start {py}: {e}")
                },
            )
        })?;
    // for dsk status, and so that no other run takes the output while this one (or its
    // dsk_dask, stopping the ranges) is alive
    let pid = child.id();
    let started = crate::store::output::process_started(pid as i32).unwrap_or_else(super::now_secs);
    super::State {
        scheduler_address: l.opts.scheduler_address.clone(),
        drivers: vec![super::me_as_driver(), (crate::store::output::hostname(), pid, started)],
        ..super::State::of(l, super::Executor::Dask)
    }
    .write(&l.work)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&spec).map_err(|e| Error::io(&py, "send the run to dsk_dask", e))?;
    }
    let (tx, rx) = mpsc::channel::<Line>();
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(Line::Json(v));
                }
            }
        }
        let _ = tx.send(Line::Eof);
    });
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let mut progress = Progress::new(l.plan, &l.records, l.sink);
    let mut p = 0;
    let mut failure: Option<String> = None;
    let mut peak: Option<u64> = None;
    let mut interrupted = false;
    // a second Ctrl-C waits for dsk_dask to stop the ranges
    let _stopping = super::super::stopping_jobs();
    loop {
        if super::super::interrupted() && !interrupted {
            interrupted = true;
            // dsk_dask cancels its futures on SIGINT
            // SAFETY: kill only sends a signal to our own child process
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        }
        let msg = rx.recv_timeout(POLL);
        if p < l.jobs.len() {
            let done = progress.load()?;
            progress.update(l.plan, &l.jobs[p], &done);
        }
        match msg {
            Ok(Line::Json(v)) => {
                if let Some(s) = v.get("stage_done").and_then(|x| x.as_u64()) {
                    if let Some(k) = l.jobs.iter().position(|j| j.stage as u64 == s) {
                        let done = progress.load()?;
                        progress.update(l.plan, &l.jobs[k], &done);
                        super::check_complete(&l.jobs[k], &done, &l.records)?;
                        progress.end(l.plan, l.jobs[k].stage);
                        p = k + 1;
                    }
                }
                if let Some(e) = v.get("error").and_then(|x| x.as_str()) {
                    failure.get_or_insert_with(|| e.to_string());
                }
                if let Some(w) = v.get("warning").and_then(|x| x.as_str()) {
                    eprintln!("dsk: warning: {w}");
                }
                if let Some(r) = v.get("peak_rss").and_then(|x| x.as_u64()) {
                    peak = peak.max(Some(r));
                }
            }
            Ok(Line::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    let _ = reader.join();
    let status = child.wait().map_err(|e| Error::io(&py, "wait for dsk_dask", e))?;
    let err_text = err_reader.join().unwrap_or_default();
    if interrupted {
        return Err(Error::Interrupted);
    }
    if let Some(f) = failure {
        return Err(Error::Worker { msg: f });
    }
    if !status.success() {
        let last = err_text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
        let last = last.strip_prefix("dsk: error: ").unwrap_or(last).to_string();
        let msg = if err_text.contains("No module named dsk_dask") || err_text.contains("No module named 'dsk_dask'") {
            format!(
                "the Python package dsk_dask is not installed for {py} — pip install it from dsk's python/ directory (pip install ./python), or point DSK_PYTHON at the Python that has it"
            )
        } else if err_text.contains("No module named 'distributed'") || err_text.contains("No module named 'dask'") {
            format!("{py} has no dask.distributed — pip install 'dask[distributed]' there, or point DSK_PYTHON at the Python of your Dask cluster")
        } else if last.starts_with("--scheduler-address") {
            last
        } else {
            format!("dsk_dask ({py}) failed ({status}): {last}")
        };
        return Err(Error::Worker { msg });
    }
    if p < l.jobs.len() {
        return Err(Error::Worker { msg: format!("dsk_dask ended before stage {} was reported done", l.jobs[p].name) });
    }
    Ok(Outcome { detached: false, worker_peak: peak, jobs: l.jobs.iter().map(|j| j.indices as usize).sum() })
}
