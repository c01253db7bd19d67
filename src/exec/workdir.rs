//! The work directory (`--work-dir`, default: the system temporary directory): each run makes its
//! own subdirectory there for the files it needs while running (the job file of the processes
//! scheduler; spilled intermediates later), removes it when done, and checks free space first.

use std::path::{Path, PathBuf};

use crate::error::{human, Error, Result};

/// A run's private directory under the work dir; removed on drop unless kept.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Create `base/dsk-<pid>-<n>` (`base` defaults to the system temporary directory).
    pub fn create(base: Option<&Path>) -> Result<WorkDir> {
        // name where the directory came from: the option, or the environment (TMPDIR)
        let (from, base) = match base {
            Some(b) => ("--work-dir", b.to_path_buf()),
            None if std::env::var_os("TMPDIR").is_some_and(|t| !t.is_empty()) => {
                ("TMPDIR (the default --work-dir)", std::env::temp_dir())
            }
            None => ("the system temporary directory (the default --work-dir)", std::env::temp_dir()),
        };
        if !base.is_dir() {
            return Err(Error::usage(
                from,
                format!(
                    "{} is not a directory — create it, or pass --work-dir with a directory you can write to",
                    base.display()
                ),
            ));
        }
        let dir = tempfile::Builder::new().prefix(&format!("dsk-{}-", std::process::id())).tempdir_in(&base).map_err(
            |e| Error::output(&base, format!("cannot create a work directory here ({from}): {e} — pass --work-dir with a directory you can write to")),
        )?;
        Ok(WorkDir { path: dir.keep(), keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep the directory after the run (to inspect it).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Refuse to start when the work dir's file system has less than `needed` bytes free.
    pub fn check_free(&self, needed: u64) -> Result<()> {
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

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
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
