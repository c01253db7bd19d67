//! The one error type of dsk. Every variant carries what a person needs to act on it: the path, the
//! argument or the chunk involved, and (in the message) how to fix it. `main` prints it as one line,
//! `dsk: error: …`, and exits with [`Error::exit_code`].

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line argument has a bad value (exit code 2, like clap's own usage errors).
    #[error("{arg}: {msg}")]
    Usage { arg: String, msg: String },

    /// An input file or directory is missing, unreadable, or not what it should be.
    #[error("{}: {msg}", path.display())]
    Input { path: PathBuf, msg: String },

    /// An output cannot be written where asked.
    #[error("{}: {msg}", path.display())]
    Output { path: PathBuf, msg: String },

    /// An operating-system error on a path.
    #[error("{}: cannot {op}: {source}{}", path.display(), io_hint(op, source))]
    Io { path: PathBuf, op: &'static str, source: io::Error },

    /// Reading or writing one chunk of a Zarr array failed.
    #[error("{}: chunk {}: {msg}", path.display(), key(chunk))]
    Chunk { path: PathBuf, chunk: Vec<u64>, msg: String },

    /// A task cannot fit the memory bound.
    #[error("{what} needs {} but --memory is {} — {hint}", human(*needed), human(*budget))]
    Budget { what: String, needed: u64, budget: u64, hint: String },

    /// A worker process of the processes scheduler failed; the message names the process, its
    /// tasks and the task it was running.
    #[error("{msg}")]
    Worker { msg: String },

    /// An expression is wrong; the message shows the expression with a caret under the problem.
    #[error("{arg}: {msg}")]
    Expr { arg: String, msg: String },

    /// The user interrupted the run (Ctrl-C); partial outputs were removed.
    #[error("interrupted — the partial output and the work directory were removed")]
    Interrupted,

    /// Interrupted with `--resume`: the partial output was kept to be continued.
    #[error("interrupted — the finished tasks are kept in {} (run the same command with --resume to continue)", .0.display())]
    InterruptedKept(std::path::PathBuf),

    /// Writing to standard output failed because the reader went away (`dsk export … | head`).
    #[error("broken pipe")]
    BrokenPipe,

    /// A bug in dsk: an invariant did not hold.
    #[error("internal error (this is a bug in dsk, please report it): {0}")]
    Internal(String),
}

impl Error {
    /// 2 for usage errors, 0 for a closed pipe, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. } | Error::Expr { .. } => 2,
            Error::BrokenPipe => 0,
            Error::Interrupted | Error::InterruptedKept(_) => 130,
            _ => 1,
        }
    }

    pub fn usage(arg: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Usage { arg: arg.into(), msg: msg.into() }
    }

    pub fn input(path: impl AsRef<Path>, msg: impl Into<String>) -> Error {
        Error::Input { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }

    pub fn output(path: impl AsRef<Path>, msg: impl Into<String>) -> Error {
        Error::Output { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }

    pub fn io(path: impl AsRef<Path>, op: &'static str, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::BrokenPipe {
            return Error::BrokenPipe;
        }
        Error::Io { path: path.as_ref().to_path_buf(), op, source }
    }

    /// An error writing to standard output.
    pub fn stdout(source: io::Error) -> Error {
        Error::io("<stdout>", "write", source)
    }
}

/// Whether `op` (the `cannot …` of an [`Error::Io`]) only reads.
fn reads(op: &str) -> bool {
    ["read", "open", "list", "map", "inspect"].iter().any(|r| op.starts_with(r))
}

fn io_hint(op: &str, e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => " — check the path",
        io::ErrorKind::PermissionDenied if reads(op) => {
            " — dsk may not read it: make it readable (chmod +r) or run dsk as a user who may"
        }
        io::ErrorKind::PermissionDenied => " — choose a location you can write to, or fix its permissions",
        io::ErrorKind::StorageFull => " — free some disk space or write elsewhere",
        io::ErrorKind::ReadOnlyFilesystem => " — the file system is read-only; write elsewhere",
        io::ErrorKind::FileTooLarge => " — the file size limit (ulimit -f) was reached; raise it or write elsewhere",
        _ => "",
    }
}

fn key(chunk: &[u64]) -> String {
    let parts: Vec<String> = chunk.iter().map(|c| c.to_string()).collect();
    format!("({})", parts.join(", "))
}

/// Bytes in IEC units, as Dask shows them (`7.63 MiB`).
pub fn human(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{:.2} {}", v, units[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units_follow_dask() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(8_000_000), "7.63 MiB");
        assert_eq!(human(6_400_000_000), "5.96 GiB");
    }
}
