//! `dsk worker PLAN --stage S --first F --count N` (hidden): a child of `--scheduler processes`,
//! and of the cluster executors (a Slurm array index, a Dask task), running tasks F..F+N of stage S
//! of the physical plan in the file PLAN (a path, or a URL on object storage).

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The plan file written by the parent process (in its work directory, or on object storage).
    pub plan: PathBuf,
    #[arg(long)]
    pub stage: usize,
    #[arg(long)]
    pub first: u64,
    #[arg(long)]
    pub count: u64,
    /// Skip the tasks recorded done (a resumed run, a retried range).
    #[arg(long)]
    pub skip_done: bool,
    /// Where the completion records go (a directory or a prefix on object storage; default:
    /// the output's staging directory).
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// How chunk files are written, as the parent was asked (--io).
    #[arg(long, value_enum, default_value = "auto")]
    pub io: super::IoMode,
}

pub fn run(a: &WorkerArgs) -> Result<()> {
    crate::exec::run::worker(&a.plan, a.stage, a.first, a.count, a.skip_done, a.records.as_deref())
}
