//! `dsk status WORKDIR`: how a cluster run is going — tasks done per stage (from the completion
//! records) and what the cluster says of its jobs.

use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::exec::cluster::{slurm, Executor, State, STATE_FILE};
use crate::exec::journal::Done;
use crate::plan::physical::PhysicalPlan;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  dsk transform x.zarr y.zarr --expr 'cos(x)**2' --executor slurm --work-dir /scratch/me --detach\n  dsk status /scratch/me/dsk-4242-a1b2c3\n  dsk transform x.zarr y.zarr --expr 'cos(x)**2' --executor slurm --work-dir /scratch/me --resume"
)]
pub struct StatusArgs {
    /// The run's work directory (printed when the run started, e.g. /scratch/me/dsk-4242-a1b2c3).
    pub workdir: PathBuf,
}

pub fn run(a: &StatusArgs) -> Result<()> {
    let dir = &a.workdir;
    if !dir.is_dir() {
        return Err(Error::input(
            dir,
            "is not a directory — give the work directory a cluster run printed (dsk-PID-XXXXXX)",
        ));
    }
    let st = State::read(dir)?.ok_or_else(|| {
        Error::input(
            dir,
            format!("has no {STATE_FILE} — not the work directory of a run with --executor slurm or dask"),
        )
    })?;
    let text = crate::exec::cluster::read_plan_file(&dir.join("plan.json"))?;
    let plan: PhysicalPlan = serde_json::from_slice(&text)
        .map_err(|e| Error::input(dir.join("plan.json"), format!("not a dsk plan file: {e}")))?;
    let done = Done::load(&st.records, &plan.task_counts())?;
    let mut out = format!("{} ({} executor)\n", st.command, st.executor.map(|e| e.name()).unwrap_or("?"));
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
        out.push_str(&format!("stage {} ({}): {n} of {} tasks done{jobs}\n", job.stage, job.name, job.tasks));
    }
    if let Some(l) = &st.log_dir {
        out.push_str(&format!("logs: {}\n", l.display()));
    }
    out.push_str(if all {
        "every task is done: run the same command with --resume to write the output\n"
    } else {
        "not finished\n"
    });
    crate::write_stdout(out.as_bytes())
}
