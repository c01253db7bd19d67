//! The work directory (`--work-dir`, default: the system temporary directory): each run makes its
//! own subdirectory there, `dsk-PID-XXXXXX`, for what it needs while running (the plan file of the
//! processes scheduler, intermediate arrays, spilled partials), removes it when done, and checks
//! free space first.
//!
//! A run holds a lock (`flock`) on the directory's `.dsk-lock` for as long as it lives, so the
//! directories of runs that are gone (killed, crashed) are recognised: the next run in the same
//! work dir removes them, unless they belong to a partial output that `--resume` can continue
//! (`.dsk-owner` names it, and its marker names the directory back) or were kept on purpose
//! (`--keep-work-dir`).
//!
//! `--work-dir s3://BUCKET/PREFIX` puts the run's intermediate arrays under
//! `PREFIX/HOST-dsk-PID-XXXXXX/` on object storage (deleted at the end of the run like the local
//! ones); the small files (lock, plan) stay in a local directory in the system temporary directory.
//! A run killed outright leaves its remote prefix behind: dsk cannot tell from the bucket whether
//! its run is gone, so it never deletes it (a lifecycle rule on the bucket can).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{human, Error, Result};

const LOCK: &str = ".dsk-lock";
/// The staging directory of the output the run writes (for `--resume`).
const OWNER: &str = ".dsk-owner";
/// Kept with `--keep-work-dir`: never reclaimed.
const KEEP: &str = ".dsk-keep";
/// The location of the run's intermediate arrays when it is not the directory itself (object
/// storage): read by worker processes.
const ARRAYS: &str = ".dsk-arrays";

/// A run's private directory under the work dir; removed on drop unless kept.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
    _lock: File,
    /// Taken over from a run that is gone (`--resume`).
    adopted: bool,
    /// Where the intermediate arrays go when not in `path` (`--work-dir s3://…`).
    remote: Option<PathBuf>,
}

/// Where work directories go: `--work-dir`, else `$TMPDIR`, else /tmp; and where that came from,
/// for messages.
fn base_dir(base: Option<&Path>) -> Result<(PathBuf, &'static str)> {
    // with --work-dir on object storage, the local part goes to the default place
    let base = base.filter(|b| !crate::store::remote::is_url(b));
    let (from, dir) = match base {
        Some(b) => ("--work-dir", b.to_path_buf()),
        None if std::env::var_os("TMPDIR").is_some_and(|t| !t.is_empty()) => {
            ("TMPDIR (the default --work-dir)", std::env::temp_dir())
        }
        None => ("the system temporary directory (the default --work-dir)", std::env::temp_dir()),
    };
    if !dir.is_dir() {
        return Err(Error::usage(
            from,
            format!(
                "{} is not a directory — create it, or pass --work-dir with a directory you can write to",
                dir.display()
            ),
        ));
    }
    Ok((dir, from))
}

impl WorkDir {
    /// Create `base/dsk-<pid>-<n>` (`base` defaults to the system temporary directory), first
    /// removing the directories that runs which are gone left there.
    pub fn create(base: Option<&Path>) -> Result<WorkDir> {
        let remote_base = match base.and_then(crate::store::remote::parse) {
            Some(Ok(u)) if u.writable() => Some(u),
            Some(Ok(_)) => {
                return Err(Error::usage(
                    "--work-dir",
                    "http(s):// is read-only — pass s3://BUCKET/PREFIX or a local directory",
                ))
            }
            Some(Err(m)) => return Err(Error::usage("--work-dir", m)),
            None => None,
        };
        let (base, from) = base_dir(base)?;
        reclaim(&base);
        let dir = tempfile::Builder::new().prefix(&format!("dsk-{}-", std::process::id())).tempdir_in(&base).map_err(
            |e| Error::output(&base, format!("cannot create a work directory here ({from}): {e} — pass --work-dir with a directory you can write to")),
        )?;
        let path = dir.keep();
        let lock = lock_new(&path).inspect_err(|_| {
            remove(&path);
        })?;
        let mut w = WorkDir { path, keep: false, _lock: lock, adopted: false, remote: None };
        if let Some(u) = remote_base {
            let name = w.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let root = u.join(&format!("{}-{name}", crate::store::output::hostname())).to_path();
            let f = w.path.join(ARRAYS);
            fs::write(&f, root.as_os_str().as_encoded_bytes()).map_err(|e| Error::io(&f, "write", e))?;
            w.remote = Some(root);
        }
        Ok(w)
    }

    /// Where the run's intermediate arrays go: this directory, or a prefix on object storage.
    pub fn arrays_root(&self) -> &Path {
        self.remote.as_deref().unwrap_or(&self.path)
    }

    /// [`WorkDir::arrays_root`] of the work directory `dir`, from a worker process.
    pub fn arrays_root_of(dir: &Path) -> PathBuf {
        match fs::read(dir.join(ARRAYS)) {
            Ok(b) => PathBuf::from(String::from_utf8_lossy(&b).into_owned()),
            Err(_) => dir.to_path_buf(),
        }
    }

    /// Take over the work directory of a run that is gone, to resume it; `None` when it is not
    /// there any more (or another run holds it).
    pub fn adopt(path: &Path) -> Option<WorkDir> {
        let f = fs::OpenOptions::new().read(true).write(true).open(path.join(LOCK)).ok()?;
        f.try_lock().ok()?;
        let remote = fs::read(path.join(ARRAYS)).ok().map(|b| PathBuf::from(String::from_utf8_lossy(&b).into_owned()));
        Some(WorkDir { path: path.to_path_buf(), keep: false, _lock: f, adopted: true, remote })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Keep the directory after the run (to inspect it, `--keep-work-dir`): never reclaimed.
    pub fn keep(&mut self) {
        self.keep = true;
        let _ = fs::write(self.path.join(KEEP), b"kept by --keep-work-dir\n");
    }

    /// Keep the directory for `--resume` of this run's partial output at `partial`.
    pub fn keep_for_resume(&mut self) {
        self.keep = true;
    }

    /// Record which partial output this directory's intermediates belong to.
    pub fn set_owner(&self, partial: &Path) -> Result<()> {
        let abs = std::path::absolute(partial).unwrap_or_else(|_| partial.to_path_buf());
        let f = self.path.join(OWNER);
        fs::write(&f, abs.as_os_str().as_encoded_bytes()).map_err(|e| Error::io(&f, "write", e))
    }

    /// Refuse to start when the work dir's file system has less than `needed` bytes free.
    pub fn check_free(&self, needed: u64) -> Result<()> {
        if self.remote.is_some() {
            return Ok(()); // object storage does not say how much room it has
        }
        match free_bytes(&self.path) {
            Some(free) if free < needed => Err(Error::Output {
                path: self.path.clone(),
                msg: format!(
                    "this run needs {} of scratch space but only {} is free — free some space or pass --work-dir on a larger disk",
                    human(needed),
                    human(free)
                ),
            }),
            _ => Ok(()),
        }
    }
}

fn lock_new(dir: &Path) -> Result<File> {
    let p = dir.join(LOCK);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| Error::io(&p, "create the work directory's lock", e))?;
    f.lock().map_err(|e| Error::io(&p, "lock", e))?;
    Ok(f)
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            // (not when the server stopped answering: that would wait through the retries again)
            if let Some(root) = self.remote.as_ref().filter(|_| !crate::store::remote::server_unreachable()) {
                let gone = crate::store::remote::parse(root)
                    .and_then(|u| u.ok())
                    .ok_or_else(|| "not a URL".to_string())
                    .and_then(|u| crate::store::remote::Remote::new(&u, None))
                    .and_then(|r| r.delete_under(""));
                if let Err(m) = gone {
                    eprintln!("dsk: warning: could not remove the work directory {}: {m}", root.display());
                }
            }
            remove(&self.path);
        }
    }
}

/// Remove a work directory with its lock file last: a run killed while removing it leaves a
/// directory that still has its lock (free once the run is gone), which the next run reclaims —
/// never a directory without a lock but with files, which nobody could tell from another's.
fn remove(dir: &Path) -> bool {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name() == LOCK {
                continue;
            }
            let p = e.path();
            let _ = if e.file_type().is_ok_and(|t| t.is_dir()) { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
        }
    }
    let _ = fs::remove_file(dir.join(LOCK));
    fs::remove_dir(dir).is_ok()
}

/// Whether `dir` is a work directory whose run is gone: the process named in it (`dsk-PID-…`) is
/// not running, and its lock is free (or, killed before it took it, the directory is empty). A
/// run that is alive is never judged gone, also in the instant between making its directory and
/// locking it (another run's reclaim once removed a directory there).
fn abandoned(dir: &Path) -> bool {
    if dir.join(KEEP).exists() {
        return false;
    }
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let pid = name.strip_prefix("dsk-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<i32>().ok());
    let own = std::process::id() as i32;
    if matches!(pid, Some(p) if p != own && crate::store::output::pid_alive(p)) {
        return false;
    }
    match fs::OpenOptions::new().read(true).write(true).open(dir.join(LOCK)) {
        Ok(f) => f.try_lock().is_ok(),
        Err(_) => {
            // killed between making it and locking it: only an empty directory (nothing in it
            // can be anybody's)
            let empty = fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
            empty && pid.is_some_and(|p| p != own)
        }
    }
}

/// Whether the partial output named in `dir/.dsk-owner` still exists and names `dir` as its work
/// directory: then `--resume` may need it.
fn wanted_for_resume(dir: &Path) -> bool {
    let Ok(owner) = fs::read(dir.join(OWNER)) else { return false };
    let partial = PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(owner));
    let Ok(text) = fs::read_to_string(partial.join(crate::store::output::MARKER)) else { return false };
    let Ok(o) = serde_json::from_str::<crate::store::output::Owner>(&text) else { return false };
    // the same directory however --work-dir was spelled (`..`, symbolic links)
    let real = |p: &Path| fs::canonicalize(p).ok().or_else(|| std::path::absolute(p).ok());
    o.work_dir.as_deref().is_some_and(|a| real(a) == real(dir))
}

/// Whether the cluster jobs of the run that made `dir` may still be queued or running (or
/// Slurm cannot be asked): its directory holds their plan and stays.
fn jobs_may_run(dir: &Path) -> bool {
    match super::cluster::State::read(dir) {
        Ok(Some(st)) => super::cluster::busy(&st).map(|b| !b.is_empty()).unwrap_or(true),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Remove the work directories of runs that are gone from `base` (not those a partial output
/// may still be resumed from).
fn reclaim(base: &Path) {
    let Ok(rd) = fs::read_dir(base) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        // exactly the names WorkDir::create makes: dsk-PID-XXXXXX
        let Some(rest) = n.strip_prefix("dsk-") else { continue };
        let Some((pid, tag)) = rest.split_once('-') else { continue };
        if pid.is_empty()
            || !pid.bytes().all(|b| b.is_ascii_digit())
            || tag.len() != 6
            || !tag.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            continue;
        }
        let dir = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) || !abandoned(&dir) || wanted_for_resume(&dir) || jobs_may_run(&dir)
        {
            continue;
        }
        let size = dir_size(&dir);
        if remove(&dir) {
            eprintln!("dsk: removed {} ({}), the work directory of a run that stopped", dir.display(), human(size));
            // and the logs of its Slurm jobs beside it (exec::cluster::slurm::logs_of)
            let _ = fs::remove_dir_all(base.join(format!("{n}.logs")));
        }
    }
}

/// Remove the work directories of runs that are gone from the work dir (`--work-dir`, else
/// TMPDIR), if it exists: every run does, whether or not it needs one itself.
pub fn reclaim_in(base: Option<&Path>) {
    if let Ok((b, _)) = base_dir(base) {
        reclaim(&b);
    }
}

/// Remove the work directory `dir` of a partial output that is being discarded, if its run is gone.
pub fn remove_if_abandoned(dir: &Path) {
    if dir.is_dir() && abandoned(dir) {
        remove(dir);
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes available to this user on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory whose run is alive is kept even when its lock is not taken yet (the instant
    /// between making the directory and locking it); once that process is gone it is reclaimed.
    #[test]
    fn a_live_run_between_mkdir_and_lock_is_not_reclaimed() {
        let base = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let dir = base.path().join(format!("dsk-{}-abcdef", child.id()));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(LOCK), b"").unwrap();
        fs::write(dir.join("plan.json"), b"{}").unwrap();
        reclaim(base.path());
        assert!(dir.join("plan.json").exists(), "the live run's directory was removed");
        child.kill().unwrap();
        child.wait().unwrap();
        reclaim(base.path());
        assert!(!dir.exists(), "the directory of a run that is gone stays");
    }
}
