//! `dsk worker JOB --first F --count N` (hidden): a child of `--scheduler processes`.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The job file written by the parent process.
    pub job: PathBuf,
    #[arg(long)]
    pub first: usize,
    #[arg(long)]
    pub count: usize,
}

pub fn run(a: &WorkerArgs) -> Result<()> {
    crate::exec::job::worker(&a.job, a.first, a.count)
}
