//! Staged outputs: a result is written under a temporary name next to its destination and renamed
//! into place only when complete, so an interrupted or failed run never leaves something that looks
//! finished. Existing outputs are replaced only with `--overwrite`, and then only if they are what
//! dsk would write there (a Zarr array for array outputs, a regular file for file outputs): dsk
//! never deletes anything it did not create.
//!
//! One writer per output: an array is staged in `OUT.partial/`, whose marker file
//! (`.dsk-partial`) holds the owner (pid, host, start time, command) and is locked (`flock`) for
//! the whole run. A second run finds the lock held and is refused, naming the owner. A partial
//! whose lock nobody holds was left by a run that is gone (the kernel drops the lock of a killed
//! process): it is removed, or continued with `--resume`. A file output is staged as
//! `.NAME.PID.partial`, locked the same way, and a later run removes those whose lock is free.
//! Replacing an array swaps the two directories atomically (`renameat2(RENAME_EXCHANGE)`), so the
//! old array is never missing; the swapped-out copy is marked `.dsk-replaced` and removed.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::meta::is_zarr_array;

/// Marker file inside a staging directory: proves the directory was made by dsk, holds the owner,
/// and is the lock.
pub const MARKER: &str = ".dsk-partial";
/// The plan a staging directory is being written by (for `--resume`).
pub const PLAN_FILE: &str = ".dsk-plan.json";
/// Completion records of the tasks that wrote into a staging directory (for `--resume`).
pub const DONE_DIR: &str = ".dsk-done";
/// Marks a replaced array swapped out of the way, to be removed.
const REPLACED: &str = ".dsk-replaced";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Zarr array directory.
    ZarrDir,
    /// A single file (.npy, .csv, raw).
    File,
}

/// Who writes a staging directory, as its marker says.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub pid: u32,
    pub host: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub command: String,
    /// The run's work directory (its intermediates, kept for `--resume`).
    #[serde(default, with = "crate::serial::os_path::option")]
    pub work_dir: Option<PathBuf>,
    /// What the run computes ([`crate::plan::physical::PhysicalPlan::logical`]).
    #[serde(default)]
    pub logical: String,
}

impl Owner {
    fn me() -> Owner {
        let started =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        Owner {
            pid: std::process::id(),
            host: hostname(),
            started,
            command: std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "),
            work_dir: None,
            logical: String::new(),
        }
    }

    /// "pid 123 on host h, started 2026-12-03 06:13:52 UTC (dsk create …)"
    pub fn describe(&self) -> String {
        format!("pid {} on {}, started {} ({})", self.pid, self.host, utc(self.started), self.command)
    }
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let s = secs % 86400;
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

/// A partial output left by a run that is gone, taken over by `--resume`.
#[derive(Debug)]
pub struct Resumed {
    pub owner: Owner,
}

/// An output being written. Dropping it without [`Staged::commit`] removes the partial output
/// (unless [`Staged::keep`] was called).
#[derive(Debug)]
pub struct Staged {
    kind: Kind,
    dest: PathBuf,
    partial: PathBuf,
    committed: bool,
    kept: bool,
    /// The locked marker (arrays) or the locked partial file itself (files).
    lock: Option<File>,
    owner: Owner,
    resumed: Option<Resumed>,
    /// An array output on object storage, written in place (see [`super::remote_output`]).
    remote: Option<super::remote_output::RemoteOut>,
    /// The groups created to hold the output (`store.zarr/var`), outermost first: removed again
    /// when the run fails and they are still empty.
    groups_made: Vec<PathBuf>,
    /// `--overwrite`: checked again when the output is committed (a path that appeared meanwhile
    /// is not the run's to replace without it).
    overwrite: bool,
}

fn file_name(p: &Path) -> Result<OsString> {
    p.file_name()
        .map(OsStr::to_os_string)
        .ok_or_else(|| Error::output(p, "is not a file name — give the output a name, like out.zarr"))
}

/// `prefix + name + suffix` as a file name (any bytes the OS accepts).
fn named(prefix: &str, name: &OsStr, suffix: &str) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(name);
    s.push(suffix);
    s
}

/// The directory holding `p` (`""` for a bare name: joined paths then stay relative and short).
fn parent_of(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Where an array output `out` is staged while it is written: `OUT.partial` next to it.
pub fn staging_path(out: &Path) -> PathBuf {
    if super::remote::is_url(out) {
        return out.to_path_buf(); // written in place (see super::remote_output)
    }
    let name = out.file_name().unwrap_or_default();
    parent_of(out).join(named("", name, ".partial"))
}

/// Check that `dest` may be written as `kind` (and replaced, with `overwrite`), before any work
/// is done for it.
pub fn check_dest(dest: &Path, kind: Kind, overwrite: bool) -> Result<()> {
    if let Some(url) = super::remote::parse(dest) {
        let url = url.map_err(|m| Error::usage(dest.display().to_string(), m))?;
        return match kind {
            Kind::File => Err(Error::output(
                dest,
                "files (.npy, .csv, raw, pictures, reports) are written to local paths only — write it locally and copy it (e.g. aws s3 cp)",
            )),
            Kind::ZarrDir if !url.writable() => {
                Err(Error::output(dest, "arrays on http(s):// are read-only — write to s3:// or a local path"))
            }
            Kind::ZarrDir => Ok(()),
        };
    }
    file_name(dest)?;
    if kind == Kind::File && dest.as_os_str().as_bytes().ends_with(b"/") {
        return Err(Error::output(dest, "ends with '/', which names a directory — give a file name"));
    }
    let parent = parent_of(dest);
    if fs::symlink_metadata(dest).is_ok() {
        if kind == Kind::ZarrDir && matches!(super::group::node_type(dest), super::group::NodeType::Group(_)) {
            return Err(Error::output(
                dest,
                "is a Zarr group — name an array inside it (e.g. GROUP/NAME), or choose another path; dsk never replaces a group",
            ));
        }
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
    // an array may go into a Zarr group, whose missing groups are created (see super::group)
    let mut parent = parent;
    if kind == Kind::ZarrDir {
        if let Some(first) = super::group::placement(dest)?.missing.first() {
            parent = parent_of(first);
        }
    } else if !parent.as_os_str().is_empty() && !parent.is_dir() {
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
    let d = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let Ok(c) = std::ffi::CString::new(d.as_os_str().as_bytes()) else { return false };
    // SAFETY: a valid NUL-terminated path; access only reads it
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Entries a Zarr array directory holds: metadata, chunk keys (v3 `c/…`, v2 `0.1` or `0/1`), and
/// dsk's own files. `--overwrite` refuses a directory with anything else in it.
fn zarr_entries_only(dir: &Path) -> bool {
    let Ok(rd) = fs::read_dir(dir) else { return false };
    rd.flatten().all(|e| {
        let name = e.file_name();
        let name = name.as_bytes();
        matches!(name, b"zarr.json" | b".zarray" | b".zattrs" | b"c")
            || name == MARKER.as_bytes()
            || name == REPLACED.as_bytes()
            || name.iter().all(|c| c.is_ascii_digit() || *c == b'.')
            || (e.path().is_dir() && name.iter().all(u8::is_ascii_digit))
    })
}

/// `rename(from, to)` that fails if `to` exists (`renameat2(RENAME_NOREPLACE)`; where the file
/// system cannot, a check then `rename`).
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    renameat2(from, to, libc::RENAME_NOREPLACE).or_else(|e| match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                Err(std::io::Error::from_raw_os_error(libc::EEXIST))
            } else {
                fs::rename(from, to)
            }
        }
        _ => Err(e),
    })
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    let f = std::ffi::CString::new(from.as_os_str().as_bytes())?;
    let t = std::ffi::CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: valid NUL-terminated paths relative to the current directory
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Try to take the lock of `f` without waiting: `Ok(true)` taken, `Ok(false)` held by another.
fn try_lock(f: &File) -> std::io::Result<bool> {
    match f.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Whether `path` still names the file open as `f` (not removed or replaced since it was opened).
fn same_file(f: &File, path: &Path) -> bool {
    match (f.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn read_owner(f: &mut File) -> Option<Owner> {
    let mut text = String::new();
    f.rewind().ok()?;
    f.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_owner(f: &mut File, o: &Owner) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(o).map_err(std::io::Error::other)?;
    f.set_len(0)?;
    f.rewind()?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// Remove `dir`, a directory dsk owns, by moving it to a unique hidden name first (so a half
/// removed directory never looks like anything).
fn remove_owned_dir(dir: &Path) -> std::io::Result<()> {
    let name = dir.file_name().unwrap_or_default();
    let aside = parent_of(dir).join(named(".", name, &format!(".dsk-removing-{}", std::process::id())));
    fs::rename(dir, &aside)?;
    fs::remove_dir_all(&aside)
}

/// What a run that stopped left in a staging directory: its owner (if the marker says).
enum Found {
    /// Nothing there.
    Free,
    /// Locked by a live run.
    Busy(Option<Owner>),
    /// Left by a run that is gone; we now hold its lock.
    Stale(File, Option<Owner>),
    /// The swapped-out copy of an array that a run replaced and did not finish removing.
    Replaced,
}

/// The work directory that the run which left `dest`'s staging directory recorded in its marker
/// (read without taking the lock: to look for that run's cluster jobs).
pub fn partial_work_dir(dest: &Path) -> Option<PathBuf> {
    let text = fs::read(staging_path(dest).join(MARKER)).ok()?;
    serde_json::from_slice::<Owner>(&text).ok()?.work_dir
}

fn inspect(partial: &Path) -> Result<Found> {
    match fs::symlink_metadata(partial) {
        Err(_) => return Ok(Found::Free),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(Error::output(
                partial,
                "is a symbolic link — dsk stages an output in a directory of its own under this name; remove the link",
            ))
        }
        Ok(_) => {}
    }
    let marker = partial.join(MARKER);
    let mut f = match fs::OpenOptions::new().read(true).write(true).open(&marker) {
        Ok(f) => f,
        Err(_) if partial.is_dir() && !partial.is_symlink() && partial.join(REPLACED).is_file() => {
            return Ok(Found::Replaced)
        }
        Err(_) => {
            return Err(Error::output(
                partial,
                "exists and was not made by dsk — move it away, dsk uses this name while writing",
            ))
        }
    };
    if !try_lock(&f).map_err(|e| Error::io(&marker, "lock", e))? {
        return Ok(Found::Busy(read_owner(&mut f)));
    }
    if !same_file(&f, &marker) {
        // removed or replaced between open and lock: look again
        return inspect(partial);
    }
    let owner = read_owner(&mut f);
    Ok(Found::Stale(f, owner))
}

impl Staged {
    /// Check that `dest` may be written (and replaced, with `overwrite`) and create the staging
    /// location next to it, locked for this run. With `resume`, a partial array left by a run
    /// that is gone is taken over instead of removed.
    pub fn new(dest: &Path, kind: Kind, overwrite: bool) -> Result<Staged> {
        Staged::open(dest, kind, overwrite, false)
    }

    pub fn open(dest: &Path, kind: Kind, overwrite: bool, resume: bool) -> Result<Staged> {
        check_dest(dest, kind, overwrite)?;
        if let (Some(Ok(url)), Kind::ZarrDir) = (super::remote::parse(dest), kind) {
            if resume {
                return Err(Error::usage(
                    "--resume",
                    format!("{} is on object storage, where dsk cannot resume a run yet — run without --resume (the run starts over)", dest.display()),
                ));
            }
            let me = Owner::me();
            let out = super::remote_output::claim(dest, &url, overwrite, &me)?;
            return Ok(Staged {
                kind,
                dest: dest.to_path_buf(),
                partial: dest.to_path_buf(),
                committed: false,
                kept: false,
                lock: None,
                owner: me,
                resumed: None,
                remote: Some(out),
                groups_made: vec![],
                overwrite,
            });
        }
        let staged = match kind {
            Kind::ZarrDir => Staged::open_dir(dest, resume),
            Kind::File => Staged::open_file(dest),
        };
        staged.map(|mut s| {
            s.overwrite = overwrite;
            s
        })
    }

    fn open_dir(dest: &Path, resume: bool) -> Result<Staged> {
        let placement = super::group::placement(dest)?;
        let made = super::group::create_missing(&placement)?;
        let staged = Staged::open_dir_in_place(dest, resume);
        match staged {
            Ok(mut s) => {
                s.groups_made = made;
                Ok(s)
            }
            Err(e) => {
                super::group::remove_if_empty(&made);
                Err(e)
            }
        }
    }

    fn open_dir_in_place(dest: &Path, resume: bool) -> Result<Staged> {
        let name = file_name(dest)?;
        let parent = parent_of(dest);
        let partial = staging_path(dest);
        let me = Owner::me();
        recover_old_copy(dest)?;
        sweep_hidden(&parent, &named("", &name, ".partial"));
        let mut waited = 0;
        for _ in 0..200 {
            match inspect(&partial)? {
                Found::Busy(owner) => {
                    // the owner is gone but a process it was starting still holds the lock for
                    // an instant (between fork and exec): wait for it
                    let gone = owner.as_ref().is_some_and(|o| o.host == me.host && !pid_alive(o.pid as i32));
                    if gone && waited < 50 {
                        waited += 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                    let who = owner.map(|o| o.describe()).unwrap_or_else(|| "another dsk process".into());
                    return Err(Error::output(
                        dest,
                        format!(
                            "is being written by another run: {who} — wait for it to finish or stop it; two runs never write one output"
                        ),
                    ));
                }
                Found::Replaced => {
                    remove_owned_dir(&partial).or_else(ignore_missing).map_err(|e| {
                        Error::io(&partial, "remove the replaced copy of an array left by an earlier run", e)
                    })?;
                }
                Found::Stale(mut lock, owner) => {
                    // a run killed while committing has removed its plan first: not resumable
                    let resumable =
                        owner.as_ref().is_some_and(|o| !o.logical.is_empty()) && partial.join(PLAN_FILE).is_file();
                    if resume && resumable {
                        let owner = owner.unwrap_or_default();
                        let mut o = me.clone();
                        o.work_dir = owner.work_dir.clone();
                        o.logical = owner.logical.clone();
                        write_owner(&mut lock, &o).map_err(|e| Error::io(&partial, "write into", e))?;
                        return Ok(Staged::locked(Kind::ZarrDir, dest, partial, lock, o, Some(Resumed { owner })));
                    }
                    let who = owner.as_ref().map(|o| format!(" ({})", o.describe())).unwrap_or_default();
                    if resume {
                        eprintln!(
                            "dsk: {} was left by an earlier run{who} that cannot be resumed; starting over",
                            partial.display()
                        );
                    } else {
                        eprintln!(
                            "dsk: removing {}, left by an earlier run that stopped{who}{}",
                            partial.display(),
                            if resumable { "; --resume continues such a run instead" } else { "" }
                        );
                    }
                    if let Some(w) = owner.as_ref().and_then(|o| o.work_dir.as_deref()) {
                        crate::exec::workdir::remove_if_abandoned(w);
                    }
                    remove_owned_dir(&partial)
                        .or_else(ignore_missing)
                        .map_err(|e| Error::io(&partial, "remove a stale partial output", e))?;
                    drop(lock);
                }
                Found::Free => {
                    // build the staging directory under a private name, marker locked, then
                    // move it into place only if nobody else did meanwhile
                    let tmp = parent.join(named(".", &name, &format!(".partial.{}.new", std::process::id())));
                    let _ = fs::remove_dir_all(&tmp);
                    fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, "create the output directory", e))?;
                    let made = (|| -> std::io::Result<File> {
                        let mut f =
                            fs::OpenOptions::new().read(true).write(true).create_new(true).open(tmp.join(MARKER))?;
                        f.lock()?;
                        write_owner(&mut f, &me)?;
                        Ok(f)
                    })();
                    let lock = match made {
                        Ok(f) => f,
                        Err(e) => {
                            let _ = fs::remove_dir_all(&tmp);
                            return Err(Error::io(&tmp, "write into the output directory", e));
                        }
                    };
                    match rename_noreplace(&tmp, &partial) {
                        Ok(()) => return Ok(Staged::locked(Kind::ZarrDir, dest, partial, lock, me, None)),
                        Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
                            // another run got there first: look again
                            let _ = fs::remove_dir_all(&tmp);
                        }
                        Err(e) => {
                            let _ = fs::remove_dir_all(&tmp);
                            return Err(Error::io(&partial, "create the output directory", e));
                        }
                    }
                }
            }
        }
        Err(Error::output(dest, "other runs keep creating and removing its partial output — try again"))
    }

    fn open_file(dest: &Path) -> Result<Staged> {
        let name = file_name(dest)?;
        let parent = parent_of(dest);
        reclaim_partial_files(&parent, &name);
        // a file cannot carry a marker: a per-process name, locked while written
        let partial = parent.join(named(".", &name, &format!(".{}.partial", std::process::id())));
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, "create the output file", e))?;
        f.lock().map_err(|e| Error::io(&partial, "lock", e))?;
        Ok(Staged::locked(Kind::File, dest, partial, f, Owner::me(), None))
    }

    /// A staged output whose lock this process holds.
    fn locked(kind: Kind, dest: &Path, partial: PathBuf, lock: File, owner: Owner, resumed: Option<Resumed>) -> Staged {
        Staged {
            kind,
            dest: dest.to_path_buf(),
            partial,
            committed: false,
            kept: false,
            lock: Some(lock),
            owner,
            resumed,
            remote: None,
            groups_made: vec![],
            overwrite: false,
        }
    }

    /// Where to write: the staging directory or file.
    pub fn path(&self) -> &Path {
        &self.partial
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// An output on object storage: check, before its metadata is written, that no other run
    /// has taken its prefix over.
    pub fn verify(&self) -> Result<()> {
        match &self.remote {
            Some(r) => r.verify(&self.dest),
            None => Ok(()),
        }
    }

    /// Whether the output is on object storage (written in place, without completion records).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The run this one took over (`--resume`), if any.
    pub fn resumed(&self) -> Option<&Resumed> {
        self.resumed.as_ref()
    }

    /// Record in the marker what a later `--resume` needs: the work directory and what is
    /// computed.
    pub fn set_owner_info(&mut self, work_dir: Option<&Path>, logical: &str) -> Result<()> {
        self.owner.work_dir = work_dir.map(Path::to_path_buf);
        self.owner.logical = logical.to_string();
        if let (Kind::ZarrDir, Some(f)) = (self.kind, self.lock.as_mut()) {
            write_owner(f, &self.owner).map_err(|e| Error::io(&self.partial, "write into", e))?;
        }
        Ok(())
    }

    /// Leave the partial output in place when dropped (for `--resume`); it stays locked until
    /// this process ends.
    pub fn keep(&mut self) {
        self.kept = true;
    }

    /// Check that the output can still be committed: a path that appeared at its place while dsk
    /// ran is replaced only as `--overwrite` allows (a run with several results checks every one
    /// before committing any).
    pub fn check_commit(&self) -> Result<()> {
        if self.remote.is_some() || fs::symlink_metadata(&self.dest).is_err() {
            return Ok(());
        }
        check_dest(&self.dest, self.kind, self.overwrite).map_err(|e| {
            Error::output(
                &self.dest,
                format!(
                    "appeared while dsk was computing it and cannot be replaced ({}) — the result is not written; move it away and run again",
                    e.to_string().trim_start_matches("dsk: error: ")
                ),
            )
        })
    }

    /// Move the finished output into place, replacing the old one (already checked in `new`).
    /// Returns a warning when the replaced output could not be removed.
    pub fn commit(mut self) -> Result<Option<String>> {
        if let Some(r) = &self.remote {
            r.commit(&self.dest)?;
            self.committed = true;
            return Ok(None);
        }
        match self.kind {
            Kind::File => {
                // rename replaces an existing file atomically; without --overwrite, a file that
                // appeared while dsk ran stays
                self.check_commit()?;
                let r = if self.overwrite {
                    fs::rename(&self.partial, &self.dest)
                } else {
                    rename_noreplace(&self.partial, &self.dest)
                };
                r.map_err(|e| match e.kind() {
                    // (created since the check just above)
                    std::io::ErrorKind::AlreadyExists => self.check_commit().err().unwrap_or_else(|| {
                        Error::output(&self.dest, "appeared while dsk was computing it — the result is not written; move it away and run again")
                    }),
                    _ => Error::io(&self.dest, "move the output into place", e),
                })?;
                self.committed = true;
                Ok(None)
            }
            Kind::ZarrDir => {
                let warning = self.commit_dir()?;
                // a dataset whose metadata is consolidated must list the new variable (xarray
                // reads only the consolidated metadata when it is there)
                super::group::update_consolidated(&self.dest, &self.groups_made).map_err(|e| {
                    Error::output(
                        &self.dest,
                        format!("is written, but the consolidated metadata of its group could not be updated: {e} — run zarr.consolidate_metadata on the group"),
                    )
                })?;
                Ok(warning)
            }
        }
    }

    fn commit_dir(&mut self) -> Result<Option<String>> {
        for extra in [PLAN_FILE, DONE_DIR] {
            let p = self.partial.join(extra);
            let r = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            r.or_else(ignore_missing).map_err(|e| Error::io(&p, "remove", e))?;
        }
        // the marker goes last, from the committed array: until the swap, the staging directory
        // stays recognisably dsk's
        let marker_in_dest = self.dest.join(MARKER);
        if fs::symlink_metadata(&self.dest).is_err() {
            rename_noreplace(&self.partial, &self.dest)
                .map_err(|e| Error::io(&self.dest, "move the output into place", e))?;
            self.committed = true;
            let _ = fs::remove_file(&marker_in_dest);
            return Ok(None);
        }
        // something there now: replaced only as --overwrite allows, as when the run started (a
        // path that appeared while dsk ran is not the run's to remove without it)
        self.check_commit()?;
        // replace: mark the old array as ours to remove, then swap the two atomically
        let mark = self.dest.join(REPLACED);
        fs::write(&mark, b"replaced by dsk; being removed\n")
            .map_err(|e| Error::io(&self.dest, "mark the old output for removal", e))?;
        match renameat2(&self.partial, &self.dest, libc::RENAME_EXCHANGE) {
            Ok(()) => {
                self.committed = true;
                let _ = fs::remove_file(&marker_in_dest);
                // the old array is now at the partial's name
                let removed = remove_owned_dir(&self.partial);
                Ok(removed.err().map(|e| {
                    format!("the new output is in place but the old one, now at {}, could not be removed: {e} — remove it yourself", self.partial.display())
                }))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                // no atomic swap on this file system: move the old one aside first
                let old = parent_of(&self.dest).join(named(
                    ".",
                    &file_name(&self.dest)?,
                    &format!(".dsk-old-{}", std::process::id()),
                ));
                fs::rename(&self.dest, &old).map_err(|e| Error::io(&self.dest, "move the old output aside", e))?;
                if let Err(e) = fs::rename(&self.partial, &self.dest) {
                    let _ = fs::rename(&old, &self.dest);
                    let _ = fs::remove_file(&mark);
                    return Err(Error::io(&self.dest, "move the new output into place", e));
                }
                self.committed = true;
                let _ = fs::remove_file(&marker_in_dest);
                Ok(fs::remove_dir_all(&old).err().map(|e| {
                    format!("the new output is in place but the old one, now at {}, could not be removed: {e} — remove it yourself", old.display())
                }))
            }
            Err(e) => {
                let _ = fs::remove_file(&mark);
                Err(Error::io(&self.dest, "swap the new output into place", e))
            }
        }
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// A run that replaced `dest` without an atomic swap moves the old array to
/// `.NAME.dsk-old-PID` first. If that run died in between, put the old one back (when `dest` is
/// missing) or remove it (when the new one is in place).
fn recover_old_copy(dest: &Path) -> Result<()> {
    let Ok(name) = file_name(dest) else { return Ok(()) };
    let parent = parent_of(dest);
    let prefix = named(".", &name, ".dsk-old-");
    let dir = if parent.as_os_str().is_empty() { Path::new(".") } else { &parent };
    let Ok(rd) = fs::read_dir(dir) else { return Ok(()) };
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(pid) = n.as_bytes().strip_prefix(prefix.as_bytes()) else { continue };
        let Some(pid) = std::str::from_utf8(pid).ok().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid_alive(pid) || !is_zarr_array(&e.path()) {
            continue;
        }
        let old = parent.join(&n);
        if fs::symlink_metadata(dest).is_err() {
            eprintln!(
                "dsk: restoring {} from {}, left by a run that stopped while replacing it",
                dest.display(),
                old.display()
            );
            fs::rename(&old, dest).map_err(|e| Error::io(&old, "restore the previous output", e))?;
        } else {
            let _ = fs::remove_dir_all(&old);
        }
    }
    Ok(())
}

/// Remove what runs that are gone left while creating or removing the staging directory `name`:
/// `.NAME.PID.new` (being built) and `.NAME.dsk-removing-PID` (being removed).
fn sweep_hidden(parent: &Path, name: &OsStr) {
    let dir = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let Ok(rd) = fs::read_dir(dir) else { return };
    let prefix = named(".", name, ".");
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(rest) = n.as_bytes().strip_prefix(prefix.as_bytes()) else { continue };
        let pid = if let Some(p) = rest.strip_suffix(b".new") {
            p
        } else if let Some(p) = rest.strip_prefix(b"dsk-removing-") {
            p
        } else {
            continue;
        };
        let Some(pid) = std::str::from_utf8(pid).ok().and_then(|p| p.parse::<i32>().ok()) else { continue };
        if pid != std::process::id() as i32 && !pid_alive(pid) && e.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = fs::remove_dir_all(parent.join(&n));
        }
    }
}

/// Remove `.NAME.PID.partial` files of runs that are gone (their lock is free).
fn reclaim_partial_files(parent: &Path, name: &OsStr) {
    let dir = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    let Ok(rd) = fs::read_dir(dir) else { return };
    let prefix = named(".", name, ".");
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(rest) = n.as_bytes().strip_prefix(prefix.as_bytes()) else { continue };
        let Some(pid) = rest.strip_suffix(b".partial") else { continue };
        if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let p = parent.join(&n);
        let Ok(meta) = fs::symlink_metadata(&p) else { continue };
        if !meta.is_file() {
            continue;
        }
        if let Ok(f) = fs::OpenOptions::new().write(true).open(&p) {
            if matches!(try_lock(&f), Ok(true)) && same_file(&f, &p) {
                let _ = fs::remove_file(&p);
            }
        }
    }
}

/// Whether a process with this pid exists (on this host).
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Whether the process `pid` that started at `started` (seconds since the epoch, as an
/// [`Owner`] records it) is still running — not another process that was given the same pid
/// since. Where /proc cannot tell, a running pid counts as alive.
pub fn owner_alive(pid: i32, started: u64) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match process_started(pid) {
        Some(t) => t.abs_diff(started) <= 2,
        None => true,
    }
}

/// When process `pid` started, in seconds since the Unix epoch (from /proc).
pub fn process_started(pid: i32) -> Option<u64> {
    let since_boot = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse::<u64>().ok()));
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok()));
    // SAFETY: sysconf only reads a configuration value
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    match (since_boot, boot, ticks > 0) {
        (Some(t), Some(b), true) => Some(b + t / ticks as u64),
        _ => None,
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let (Some(r), false, false) = (&self.remote, self.committed, self.kept) {
            // when the server does not answer any more, what was written stays without zarr.json,
            // under the marker, as after a killed run: the next run to write there removes it
            let _ = r.abandon();
            return;
        }
        if !self.committed && !self.kept {
            let _ = match self.kind {
                Kind::ZarrDir => fs::remove_dir_all(&self.partial),
                Kind::File => fs::remove_file(&self.partial),
            };
            super::group::remove_if_empty(&self.groups_made);
        }
    }
}
