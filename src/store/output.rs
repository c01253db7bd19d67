//! Staged outputs: a result is written under a temporary name next to its destination and renamed
//! into place only when complete, so an interrupted or failed run never leaves something that looks
//! finished. Existing outputs are replaced only with `--overwrite`, and then only if they are what
//! dsk would write there (a Zarr array for array outputs, a regular file for file outputs): dsk
//! never deletes anything it did not create.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::meta::is_zarr_array;

/// Marker file inside a staging directory: proves the directory was made by dsk.
const MARKER: &str = ".dsk-partial";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Zarr array directory.
    ZarrDir,
    /// A single file (.npy, .csv, raw).
    File,
}

/// An output being written. Dropping it without [`Staged::commit`] removes the partial output.
#[derive(Debug)]
pub struct Staged {
    kind: Kind,
    dest: PathBuf,
    partial: PathBuf,
    committed: bool,
}

fn file_name(p: &Path) -> Result<OsString> {
    p.file_name()
        .map(OsStr::to_os_string)
        .ok_or_else(|| Error::output(p, "is not a file name — give the output a name, like out.zarr"))
}

/// A file name made of `parts` (names are OS strings: any bytes but `/` and NUL).
fn named(parts: &[&OsStr]) -> OsString {
    parts.iter().fold(OsString::new(), |mut n, p| {
        n.push(p);
        n
    })
}

/// The directory holding `p` (`""` for a bare name: joined paths then stay relative and short).
fn parent_of(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Check that `dest` may be written as `kind` (and replaced, with `overwrite`), before any work
/// is done for it.
pub fn check_dest(dest: &Path, kind: Kind, overwrite: bool) -> Result<()> {
    file_name(dest)?;
    if kind == Kind::File && dest.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::output(dest, "ends with '/', which names a directory — give a file name"));
    }
    let parent = parent_of(dest);
    if fs::symlink_metadata(dest).is_ok() {
        if !overwrite {
            return Err(Error::output(dest, "already exists — pass --overwrite to replace it, or choose another path"));
        }
        let replaceable = match kind {
            Kind::ZarrDir => is_zarr_array(dest) && !dest.is_symlink() && zarr_entries_only(dest),
            Kind::File => dest.is_file() && !dest.is_symlink(),
        };
        if !replaceable {
            let what = match kind {
                Kind::ZarrDir => "exists and is not a Zarr array (or holds files that are not part of one); --overwrite only replaces Zarr arrays",
                Kind::File => "exists and is not a regular file; --overwrite only replaces files",
            };
            return Err(Error::output(dest, format!("{what} — move it away yourself or choose another path")));
        }
    }
    if !parent.as_os_str().is_empty() && !parent.is_dir() {
        return Err(Error::output(
            dest,
            format!(
                "the parent directory {} does not exist — create it first (mkdir -p {})",
                parent.display(),
                parent.display()
            ),
        ));
    }
    if !writable(&parent) {
        return Err(Error::output(
            dest,
            format!(
                "cannot write in {} — choose a location you can write to",
                if parent.as_os_str().is_empty() {
                    "the current directory".into()
                } else {
                    parent.display().to_string()
                }
            ),
        ));
    }
    Ok(())
}

/// Whether this process may create files in `dir` (`""`: the current directory).
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let d = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(c) = std::ffi::CString::new(d.as_os_str().as_bytes()) else { return false };
    // SAFETY: a valid NUL-terminated path; access only reads it
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Entries a Zarr array directory holds: metadata, chunk keys (v3 `c/…`, v2 `0.1` or `0/1`), and
/// dsk's own marker. `--overwrite` refuses a directory with anything else in it.
fn zarr_entries_only(dir: &Path) -> bool {
    let Ok(rd) = fs::read_dir(dir) else { return false };
    rd.flatten().all(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        matches!(name.as_str(), "zarr.json" | ".zarray" | ".zattrs" | "c" | MARKER)
            || name.chars().all(|c| c.is_ascii_digit() || c == '.')
            || (e.path().is_dir() && name.chars().all(|c| c.is_ascii_digit()))
    })
}

impl Staged {
    /// Check that `dest` may be written (and replaced, with `overwrite`) and create the staging
    /// location next to it.
    pub fn new(dest: &Path, kind: Kind, overwrite: bool) -> Result<Staged> {
        check_dest(dest, kind, overwrite)?;
        let name = file_name(dest)?;
        let parent = parent_of(dest);
        let partial = match kind {
            Kind::ZarrDir => parent.join(named(&[&name, OsStr::new(".partial")])),
            // a file cannot carry a marker: a per-process name never collides with anything
            Kind::File => {
                parent.join(named(&[OsStr::new("."), &name, OsStr::new(&format!(".{}.partial", std::process::id()))]))
            }
        };
        if fs::symlink_metadata(&partial).is_ok() {
            // Left over from an interrupted dsk run? Only then is it ours to remove.
            let ours = match kind {
                Kind::ZarrDir => partial.join(MARKER).is_file(),
                Kind::File => false,
            };
            if !ours {
                return Err(Error::output(
                    &partial,
                    "exists and was not made by dsk — move it away, dsk uses this name while writing",
                ));
            }
            fs::remove_dir_all(&partial).map_err(|e| Error::io(&partial, "remove a stale partial output", e))?;
        }
        match kind {
            Kind::ZarrDir => {
                fs::create_dir(&partial).map_err(|e| Error::io(&partial, "create the output directory", e))?;
                fs::write(partial.join(MARKER), b"written by dsk; removed when the output is complete\n")
                    .map_err(|e| Error::io(&partial, "write into the output directory", e))?;
            }
            Kind::File => {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&partial)
                    .map_err(|e| Error::io(&partial, "create the output file", e))?;
            }
        }
        Ok(Staged { kind, dest: dest.to_path_buf(), partial, committed: false })
    }

    /// Where to write: the staging directory or file.
    pub fn path(&self) -> &Path {
        &self.partial
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Move the finished output into place, replacing the old one (already checked in `new`).
    pub fn commit(mut self) -> Result<()> {
        if self.kind == Kind::ZarrDir {
            let marker = self.partial.join(MARKER);
            fs::remove_file(&marker).map_err(|e| Error::io(&marker, "remove", e))?;
        }
        let exists = fs::symlink_metadata(&self.dest).is_ok();
        if exists {
            let old = parent_of(&self.dest).join(named(&[
                OsStr::new("."),
                &file_name(&self.dest)?,
                OsStr::new(&format!(".dsk-old-{}", std::process::id())),
            ]));
            fs::rename(&self.dest, &old).map_err(|e| Error::io(&self.dest, "move the old output aside", e))?;
            if let Err(e) = fs::rename(&self.partial, &self.dest) {
                let _ = fs::rename(&old, &self.dest);
                return Err(Error::io(&self.dest, "move the new output into place", e));
            }
            self.committed = true;
            let removed = match self.kind {
                Kind::ZarrDir => fs::remove_dir_all(&old),
                Kind::File => fs::remove_file(&old),
            };
            removed.map_err(|e| Error::io(&old, "remove the replaced output", e))?;
        } else {
            fs::rename(&self.partial, &self.dest)
                .map_err(|e| Error::io(&self.dest, "move the output into place", e))?;
            self.committed = true;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = match self.kind {
                Kind::ZarrDir => fs::remove_dir_all(&self.partial),
                Kind::File => fs::remove_file(&self.partial),
            };
        }
    }
}
