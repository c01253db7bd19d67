//! Completion records for `--resume` and for following a cluster run: every process that runs
//! tasks of a plan appends one line per finished task (`STAGE TASK`) to its own file (named by
//! host and PID) in the staging directory's `.dsk-done/` ([`records_dir`]), after the task's
//! chunks are written. A task is recorded only once its writes returned, so a
//! record never claims work that is not on disk (a line cut short by a kill is ignored); a task
//! that finished but was not recorded is simply done again.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::store::output::DONE_DIR;
use crate::store::remote::Remote;

/// Where the records of a plan's run go: `partial/.dsk-done` for a local output (so that
/// `--resume` finds them), else `.dsk-done` in the run's intermediate arrays' root (the work
/// directory, or its prefix on object storage).
pub fn records_dir(partial: Option<&Path>, arrays_root: &Path) -> PathBuf {
    match partial {
        Some(p) => p.join(DONE_DIR),
        None => arrays_root.join(DONE_DIR),
    }
}

/// How often a record file on object storage is rewritten at most (every record there is a
/// whole-object PUT, so they are gathered).
const REMOTE_FLUSH: Duration = Duration::from_secs(1);

/// This process's record file.
pub struct Journal {
    path: PathBuf,
    to: Target,
}

enum Target {
    File(Mutex<File>),
    /// An object rewritten whole with every record so far, at most every [`REMOTE_FLUSH`].
    Remote {
        store: Box<Remote>,
        key: String,
        lines: Mutex<(String, Option<Instant>, bool)>,
    },
}

/// The name of this process's record file: unique across the nodes of a cluster sharing `dir`.
fn file_name(tag: &str) -> String {
    format!("{tag}-{}-{}.log", crate::store::output::hostname(), std::process::id())
}

impl Journal {
    /// Open a record file of this process in `dir` (a directory, or a prefix on object storage).
    pub fn open(dir: &Path, tag: &str) -> Result<Journal> {
        if let Some(url) = crate::store::remote::parse(dir) {
            let url = url.map_err(|m| Error::output(dir, m))?;
            let store = Remote::new(&url, None).map_err(|m| Error::output(dir, m))?;
            let key = file_name(tag);
            return Ok(Journal {
                path: url.join(&key).to_path(),
                to: Target::Remote { store: Box::new(store), key, lines: Mutex::new((String::new(), None, false)) },
            });
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create", e))?;
        let path = dir.join(file_name(tag));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, "create the task records", e))?;
        Ok(Journal { path, to: Target::File(Mutex::new(file)) })
    }

    /// Record that task `task` of stage `stage` is done (its writes have returned).
    pub fn record(&self, stage: usize, task: u64) -> Result<()> {
        let line = format!("{stage} {task}\n");
        match &self.to {
            Target::File(f) => {
                let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
                f.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, "record a finished task", e))
            }
            Target::Remote { lines, .. } => {
                let due = {
                    let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
                    l.0.push_str(&line);
                    l.2 = true;
                    l.1.is_none_or(|t| t.elapsed() >= REMOTE_FLUSH)
                };
                if due {
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Write the records gathered for object storage (a no-op for a file, written line by line).
    pub fn flush(&self) -> Result<()> {
        let Target::Remote { store, key, lines } = &self.to else { return Ok(()) };
        let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
        if !l.2 {
            return Ok(());
        }
        store
            .put(key, zarrs::storage::Bytes::from(l.0.clone().into_bytes()))
            .map_err(|m| Error::output(&self.path, m))?;
        l.1 = Some(Instant::now());
        l.2 = false;
        Ok(())
    }
}

/// Which tasks are done, per stage, as bit sets.
#[derive(Clone, Debug, Default)]
pub struct Done {
    stages: Vec<Vec<u64>>,
}

impl Done {
    /// Read every record file in `dir` (a directory, or a prefix on object storage) for a plan
    /// whose stages have `tasks` tasks; records outside the plan are an error (they belong to
    /// another plan).
    pub fn load(dir: &Path, tasks: &[u64]) -> Result<Done> {
        let mut d = Done { stages: tasks.iter().map(|&n| vec![0u64; n.div_ceil(64) as usize]).collect() };
        let mut files: Vec<(PathBuf, Vec<u8>)> = vec![];
        if let Some(url) = crate::store::remote::parse(dir) {
            let url = url.map_err(|m| Error::input(dir, m))?;
            let store = Remote::new(&url, None).map_err(|m| Error::input(dir, m))?;
            for (key, _) in store.list_sizes("").map_err(|m| Error::input(dir, m))? {
                if let Some(b) = store.read_bytes(&key).map_err(|m| Error::input(dir, m))? {
                    files.push((url.join(&key).to_path(), b.to_vec()));
                }
            }
        } else {
            let Ok(rd) = fs::read_dir(dir) else { return Ok(d) };
            for e in rd.flatten() {
                let p = e.path();
                let text = fs::read(&p).map_err(|e| Error::io(&p, "read the task records", e))?;
                files.push((p, text));
            }
        }
        for (p, text) in files {
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
