//! `dsk status DIR [--wait]`: how cluster runs are going — tasks done per stage (from the
//! completion records) and what the cluster says of their jobs. DIR is a run's work directory or
//! the `--work-dir` that holds runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::exec::cluster::{slurm, Executor, State, STATE_FILE};
use crate::exec::journal::Done;
use crate::plan::physical::PhysicalPlan;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  dsk transform x.zarr y.zarr --expr 'cos(x)**2' --executor slurm --work-dir scratch --detach\n  dsk status scratch\n  dsk status scratch --wait\n  dsk transform x.zarr y.zarr --expr 'cos(x)**2' --executor slurm --work-dir scratch --resume"
)]
pub struct StatusArgs {
    /// A run's work directory (dsk-PID-XXXXXX, printed when it started), or the --work-dir that
    /// holds runs (each is shown).
    pub dir: PathBuf,
    /// Wait until no job of the runs is queued or running; then exit 0 if every task is done,
    /// else 1.
    #[arg(long)]
    pub wait: bool,
}

/// The runs under `dir`: itself, or its `dsk-*` subdirectories with a state file.
fn runs(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::input(
            dir,
            "is not a directory — give the --work-dir of a cluster run, or the run's directory it printed (dsk-PID-XXXXXX)",
        ));
    }
    if dir.join(STATE_FILE).is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, "list", e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dsk-")) && p.join(STATE_FILE).is_file()
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(Error::input(
            dir,
            format!("holds no cluster run ({STATE_FILE}) — runs with --executor slurm or dask keep one in their work directory while they are not finished"),
        ));
    }
    Ok(out)
}

/// One run's report; and (every task done, some job still queued or running).
fn report(dir: &Path) -> Result<(String, bool, bool)> {
    let st = State::read(dir)?.ok_or_else(|| Error::input(dir, format!("has no {STATE_FILE}")))?;
    let text = crate::exec::cluster::read_plan_file(&dir.join("plan.json"))?;
    let plan: PhysicalPlan = serde_json::from_slice(&text)
        .map_err(|e| Error::input(dir.join("plan.json"), format!("not a dsk plan file: {e}")))?;
    // whether anything still runs, before the records are read: a job that ends in between has
    // written its records by then
    let busy = !crate::exec::cluster::busy(&st).map_err(|m| Error::Worker { msg: m })?.is_empty();
    let done = Done::load(&st.records, &plan.task_counts())?;
    let mut out =
        format!("{}: {} ({} executor)\n", dir.display(), st.command, st.executor.map(|e| e.name()).unwrap_or("?"));
    let mut all = true;
    for (k, job) in st.jobs.iter().enumerate() {
        let n = done.count(job.stage);
        all &= n >= job.tasks;
        let jobs = match st.executor {
            Some(Executor::Slurm) => {
                let ids = st.slurm_ids.get(k).cloned().unwrap_or_default();
                format!(" — Slurm array job {}: {}", ids.join(", "), slurm::describe_jobs(&ids))
            }
            _ => String::new(),
        };
        out.push_str(&format!("  stage {} ({}): {n} of {} tasks done{jobs}\n", job.stage + 1, job.name, job.tasks));
    }
    if let Some(l) = st.log_dir.as_ref().filter(|l| l.is_dir()) {
        out.push_str(&format!("  logs: {}\n", l.display()));
    }
    out.push_str(if all {
        "  every task is done: run the same command with --resume to write the output\n"
    } else if busy {
        "  running\n"
    } else {
        "  stopped before the end: run the same command with --resume to finish it\n"
    });
    Ok((out, all, busy))
}

pub fn run(a: &StatusArgs) -> Result<()> {
    let dirs = runs(&a.dir)?;
    loop {
        let mut text = String::new();
        let (mut all_done, mut any_busy) = (true, false);
        for d in &dirs {
            match report(d) {
                Ok((t, done, busy)) => {
                    text.push_str(&t);
                    all_done &= done;
                    any_busy |= busy;
                }
                // one broken run does not hide the others
                Err(e) if dirs.len() > 1 => {
                    text.push_str(&format!("{}: cannot tell: {e}\n", d.display()));
                    all_done = false;
                }
                Err(e) => return Err(e),
            }
        }
        if !a.wait || !any_busy {
            crate::write_stdout(text.as_bytes())?;
            if a.wait && !all_done {
                return Err(Error::Worker {
                    msg: "the jobs ended before every task was done — run the same command with --resume to finish it"
                        .into(),
                });
            }
            return Ok(());
        }
        if crate::exec::interrupted() {
            return Err(Error::Interrupted);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
