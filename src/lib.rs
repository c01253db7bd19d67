//! dsk: chunked N-d arrays larger than RAM, on Zarr, from the shell, under a hard memory bound.
//!
//! One path for every command:
//!
//! ```text
//!  cli ──► expr ──► plan ──► exec (kernels, store) ──► report
//!  clap    language  lazy     chunk tasks under the    progress, summaries
//!          + slices  arrays   memory budget
//! ```
//!
//! - [`cli`]: argument parsing only, one file per subcommand.
//! - [`expr`]: the NumPy-like language: lexer, parser, syntax tree, selections (`0:10, ::-1`).
//! - [`plan`]: the array plan (a typed, shaped, chunked DAG) and its lowering to chunk tasks.
//! - [`grid`]: shapes, chunk grids and regions (pure arithmetic).
//! - [`kernels`]: pure computations on buffers (generators, vectorised math).
//! - [`exec`]: runs stages of chunk tasks under the memory budget and emits events.
//! - [`store`]: the only module that talks to zarrs and memmap2 (Zarr, .npy, raw files, staged outputs).
//! - [`report`]: the only module that draws (progress bars, JSON events, summaries).
//! - [`dtype`] and [`error`]: element types and the error type shared by all of the above;
//!   [`serial`]: exact float serialisation for plans and job files.

pub mod cli;
pub mod dtype;
pub mod error;
pub mod exec;
pub mod expr;
pub mod grid;
pub mod kernels;
pub mod plan;
pub mod report;
pub mod serial;
pub mod store;

pub use error::{Error, Result};

use std::io::Write;

/// Stack of the thread that runs a command: debug builds use several KiB per level of an
/// expression's recursive descent, and expressions may nest [`expr::parser::MAX_DEPTH`] levels.
/// Only touched pages are ever committed.
pub const STACK_BYTES: usize = 256 << 20;

/// Process-wide set-up shared by the binary and the tests.
pub fn init() {
    exec::tune_allocator();
    store::init();
}

/// Run a parsed command line.
pub fn run(cli: cli::Cli) -> Result<()> {
    init();
    exec::install_interrupt_handler();
    exec::ignore_file_size_signal();
    store::fs::set_direct_writes(match cli.io() {
        cli::IoMode::Auto => None,
        cli::IoMode::Direct => Some(true),
        cli::IoMode::Buffered => Some(false),
    });
    if cli.anon() {
        store::remote::set_anonymous(true);
        // worker processes inherit it (they take AWS_NO_SIGN_REQUEST as --anon)
        std::env::set_var("AWS_NO_SIGN_REQUEST", "1");
    }
    cli::run(cli)
}

/// Write `bytes` to standard output, mapping a closed pipe to [`Error::BrokenPipe`].
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|_| out.flush()).map_err(Error::stdout)
}
