//! The command line (clap only): one file per subcommand, each turning its arguments into a plan
//! or a store call and nothing more. Argument values that clap cannot check by itself (shapes,
//! dtypes, codecs, byte sizes) are parsed here into [`Error::Usage`] with the argument's name.

pub mod create;
pub mod export;
pub mod info;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};
use crate::exec::RunOptions;
use crate::report::ProgressMode;

/// Chunked N-d arrays larger than RAM, on Zarr, from the shell — under a hard memory bound.
#[derive(Debug, Parser)]
#[command(name = "dsk", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  dsk create ones big.zarr --shape 200000,4000 --chunks 1000,1000\n  dsk info big.zarr\n  dsk export big.zarr --slice '0:5, 0:3' --format csv"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new Zarr v3 array, chunk by chunk, in parallel, in bounded memory.
    Create(create::CreateArgs),
    /// Describe a Zarr array (v2 or v3): shape, dtype, chunks, sizes, codecs.
    Info(info::InfoArgs),
    /// Write an array (or a slice of it) as .npy, CSV or raw bytes, streaming in bounded memory.
    Export(export::ExportArgs),
}

/// Options every command that computes shares.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Worker threads (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
    /// Memory bound for the data in flight, e.g. 512MiB, 2GiB, 1.5GB.
    #[arg(long, global = true, value_name = "SIZE", default_value = "2GiB")]
    pub memory: String,
    /// Progress display on stderr.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// No progress bar and no summary line.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl RunArgs {
    pub fn options(&self) -> Result<RunOptions> {
        let workers = match self.workers {
            Some(0) => return Err(Error::usage("--workers", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        };
        Ok(RunOptions { workers, memory: parse_size(&self.memory, "--memory")? })
    }
}

/// Parse a byte size: `512MiB`, `2GiB`, `1.5GB`, `1000000`.
pub fn parse_size(text: &str, arg: &str) -> Result<u64> {
    let t = text.trim();
    if t.starts_with('-') {
        return Err(Error::usage(arg, format!("{t:?} is negative; give a size like 512MiB or 2GiB")));
    }
    let size: bytesize::ByteSize = t
        .parse()
        .map_err(|_| Error::usage(arg, format!("{t:?} is not a size; write it like 512MiB, 2GiB or 1.5GB")))?;
    if size.as_u64() == 0 {
        return Err(Error::usage(arg, "must be more than 0 bytes"));
    }
    Ok(size.as_u64())
}

/// Parse a shape argument (`200000,4000`), naming `arg` in errors.
pub fn parse_shape_arg(text: &str, arg: &str) -> Result<Vec<u64>> {
    crate::grid::parse_shape(text).map_err(|m| Error::usage(arg, m))
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Create(a) => create::run(a, &cli.run),
        Command::Info(a) => info::run(a),
        Command::Export(a) => export::run(a, &cli.run),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512MiB", "m").ok(), Some(512 << 20));
        assert_eq!(parse_size("2GiB", "m").ok(), Some(2 << 30));
        assert_eq!(parse_size("1.5GB", "m").ok(), Some(1_500_000_000));
        assert!(parse_size("-1GB", "m").is_err());
        assert!(parse_size("lots", "m").is_err());
        assert!(parse_size("0", "m").is_err());
    }
}
