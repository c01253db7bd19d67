//! `dsk worker PLAN --stage S --first F --count N` (hidden): a child of `--scheduler processes`,
//! running tasks F..F+N of stage S of the physical plan in the file PLAN.

use std::path::PathBuf;

use clap::Args;

use crate::error::Result;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The plan file written by the parent process (in its work directory).
    pub plan: PathBuf,
    #[arg(long)]
    pub stage: usize,
    #[arg(long)]
    pub first: u64,
    #[arg(long)]
    pub count: u64,
    /// Skip the tasks recorded done in the output's staging directory (a resumed run).
    #[arg(long)]
    pub skip_done: bool,
}

pub fn run(a: &WorkerArgs) -> Result<()> {
    crate::exec::run::worker(&a.plan, a.stage, a.first, a.count, a.skip_done)
}
