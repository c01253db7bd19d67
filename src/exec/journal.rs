//! Completion records for `--resume`: every process that runs tasks of a plan appends one line
//! per finished task (`STAGE TASK`) to its own file in the staging directory's `.dsk-done/`,
//! after the task's chunks are written. A task is recorded only once its writes returned, so a
//! record never claims work that is not on disk (a line cut short by a kill is ignored); a task
//! that finished but was not recorded is simply done again.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::store::output::DONE_DIR;

/// This process's record file.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Open `partial/.dsk-done/TAG-PID.log` for appending.
    pub fn open(partial: &Path, tag: &str) -> Result<Journal> {
        let dir = partial.join(DONE_DIR);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
        let path = dir.join(format!("{tag}-{}.log", std::process::id()));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "create the task records", e))?;
        Ok(Journal { path, file: Mutex::new(file) })
    }

    /// Record that task `task` of stage `stage` is done (its writes have returned).
    pub fn record(&self, stage: usize, task: u64) -> Result<()> {
        let line = format!("{stage} {task}\n");
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, "record a finished task", e))
    }
}

/// Which tasks are done, per stage, as bit sets.
#[derive(Clone, Debug, Default)]
pub struct Done {
    stages: Vec<Vec<u64>>,
}

impl Done {
    /// Read every record file under `partial/.dsk-done/` for a plan whose stages have `tasks`
    /// tasks; records outside the plan are an error (they belong to another plan).
    pub fn load(partial: &Path, tasks: &[u64]) -> Result<Done> {
        let mut d = Done { stages: tasks.iter().map(|&n| vec![0u64; n.div_ceil(64) as usize]).collect() };
        let dir = partial.join(DONE_DIR);
        let Ok(rd) = fs::read_dir(&dir) else { return Ok(d) };
        for e in rd.flatten() {
            let p = e.path();
            let text = fs::read(&p).map_err(|e| Error::io(&p, "read the task records", e))?;
            // only whole lines: the last one may have been cut by a kill
            let whole = match text.iter().rposition(|&b| b == b'\n') {
                Some(i) => &text[..=i],
                None => &[][..],
            };
            for line in whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let bad = || Error::input(&p, format!("not a dsk task record: {:?}", String::from_utf8_lossy(line)));
                let s = std::str::from_utf8(line).map_err(|_| bad())?;
                let (a, b) = s.split_once(' ').ok_or_else(bad)?;
                let (stage, task): (usize, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if stage >= tasks.len() || task >= tasks[stage] {
                    return Err(bad());
                }
                d.stages[stage][(task / 64) as usize] |= 1 << (task % 64);
            }
        }
        Ok(d)
    }

    pub fn is_done(&self, stage: usize, task: u64) -> bool {
        self.stages.get(stage).and_then(|b| b.get((task / 64) as usize)).is_some_and(|w| w >> (task % 64) & 1 == 1)
    }

    /// Tasks of `stage` done.
    pub fn count(&self, stage: usize) -> u64 {
        self.stages.get(stage).map(|b| b.iter().map(|w| w.count_ones() as u64).sum()).unwrap_or(0)
    }

    /// Forget the records of `stage` (its results are gone: it runs again).
    pub fn clear(&mut self, stage: usize) {
        if let Some(b) = self.stages.get_mut(stage) {
            b.iter_mut().for_each(|w| *w = 0);
        }
    }
}
