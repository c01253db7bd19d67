//! The command line (clap only): one file per subcommand, each turning its arguments into a plan
//! or a store call and nothing more. Argument values that clap cannot check by itself (shapes,
//! dtypes, codecs, byte sizes) are parsed here into [`Error::Usage`] with the argument's name.

pub mod completions;
pub mod compute;
pub mod create;
pub mod eval;
pub mod export;
pub mod graph;
pub mod info;
pub mod ls;
pub mod man;
pub mod plot;
pub mod rechunk;
pub mod reduce;
pub mod status;
pub mod transform;
pub mod worker;

use clap::{Args, Parser, Subcommand};

use std::path::PathBuf;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::exec::RunOptions;
use crate::exec::Scheduler;
use crate::grid::{auto_chunks, AUTO_CHUNK_BYTES};
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
    /// Colours in help and usage messages: auto (on a terminal, unless NO_COLOR is set),
    /// always or never.
    #[arg(long, global = true, value_enum, default_value = "auto", value_name = "WHEN")]
    pub color: ColorWhen,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl Cli {
    /// Parse the command line, with help and usage messages coloured as `--color` (read before
    /// clap renders anything) and `NO_COLOR` say.
    pub fn parse_args() -> std::result::Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let mut when = None;
        for (i, a) in args.iter().enumerate() {
            let a = a.to_string_lossy();
            let v = match a.strip_prefix("--color=") {
                Some(v) => Some(v.to_string()),
                None if a == "--color" => args.get(i + 1).map(|v| v.to_string_lossy().into_owned()),
                None => None,
            };
            if let Some(v) = v {
                when = Some(v);
            }
        }
        let choice = match when.as_deref() {
            Some("always") => clap::ColorChoice::Always,
            Some("never") => clap::ColorChoice::Never,
            _ => clap::ColorChoice::Auto,
        };
        let mut matches = Cli::command().color(choice).try_get_matches_from(args)?;
        Cli::from_arg_matches_mut(&mut matches)
    }
}

impl Cli {
    /// The options of a run, for the commands that plan one.
    pub fn run_args(&self) -> Option<&RunArgs> {
        match &self.command {
            Command::Create(a) => Some(&a.run),
            Command::Export(a) => Some(&a.run),
            Command::Transform(a) => Some(&a.run),
            Command::Eval(a) => Some(&a.run),
            Command::Reduce(a) => Some(&a.run),
            Command::Rechunk(a) => Some(&a.run),
            Command::Graph(a) => Some(&a.run),
            Command::Plot(a) => Some(&a.run),
            Command::Info(_)
            | Command::Ls(_)
            | Command::Status(_)
            | Command::Completions(_)
            | Command::Man(_)
            | Command::Worker(_) => None,
        }
    }

    /// `--io`: how chunk files are written.
    pub fn io(&self) -> IoMode {
        match &self.command {
            Command::Worker(a) => a.io,
            _ => self.run_args().map(|r| r.io).unwrap_or(IoMode::Auto),
        }
    }

    /// `--anon`: unsigned requests to S3.
    pub fn anon(&self) -> bool {
        match &self.command {
            Command::Info(a) => a.anon,
            _ => self.run_args().is_some_and(|r| r.anon),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new Zarr v3 array, chunk by chunk, in parallel, in bounded memory.
    Create(create::CreateArgs),
    /// Describe a Zarr array (v2 or v3): shape, dtype, chunks, sizes, codecs — or what a group holds.
    Info(info::InfoArgs),
    /// List the arrays and groups of a Zarr group: shape, dtype, chunks, dimensions, size.
    Ls(ls::LsArgs),
    /// Write an array (or a slice of it) as .npy, CSV or raw bytes, streaming in bounded memory.
    Export(export::ExportArgs),
    /// Compute an expression of an array (named x) into a new array: dsk transform IN OUT --expr 'cos(x)**2'.
    Transform(transform::TransformArgs),
    /// Evaluate an expression of named arrays: print a number, or write an array with -o.
    Eval(eval::EvalArgs),
    /// Reduce an array (sum, mean, std, argmax, …, cumsum) over all or some axes.
    Reduce(reduce::ReduceArgs),
    /// Change an array's chunks (and/or its compression or sharding) under the memory bound.
    Rechunk(rechunk::RechunkArgs),
    /// Draw the plan of an expression (tasks or stages) as SVG, PNG or DOT, without running it.
    Graph(graph::GraphArgs),
    /// Draw an array (or a 1-D or 2-D slice of it) as a line plot or a heatmap, PNG or SVG.
    Plot(plot::PlotArgs),
    /// Show how a cluster run (--executor slurm or dask) is going: tasks done per stage, jobs.
    Status(status::StatusArgs),
    /// Print the completion script of a shell (bash, zsh, fish, powershell, elvish) for dsk.
    Completions(completions::CompletionsArgs),
    /// Write the manual pages (dsk.1 and one per subcommand) into a directory.
    Man(man::ManArgs),
    /// Run a range of tasks of a job file (used by --scheduler processes and the cluster executors).
    #[command(hide = true)]
    Worker(worker::WorkerArgs),
}

/// How a computed array is written (`transform`, `eval`, `reduce`).
#[derive(Clone, Debug, Args)]
pub struct OutputArgs {
    /// Cast the result to this dtype (default: the result's dtype, by NumPy's rules).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Output chunks (default: the input's where the shapes match, else the result's own).
    #[arg(long)]
    pub chunks: Option<String>,
    /// Output shard shape (sharding codec; --chunks become the inner chunks).
    #[arg(long)]
    pub shard: Option<String>,
    /// Output compression: auto (chosen from samples of the data), none, zstd[:LEVEL],
    /// blosc[:CNAME[:CLEVEL[:SHUFFLE]]], gzip[:LEVEL] (default: the input's when dsk writes it,
    /// else auto).
    #[arg(long)]
    pub codec: Option<String>,
    /// Names of the output's axes, e.g. time,lat,lon (default: carried over from the inputs —
    /// reduced axes dropped, transposed axes permuted).
    #[arg(long, value_name = "NAMES")]
    pub dimension_names: Option<String>,
    /// Replace the output if it exists (only a Zarr array, or a file for .npy/.csv outputs).
    #[arg(long)]
    pub overwrite: bool,
}

/// Options every command that computes shares.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Worker threads (default: all cores; with the threads scheduler, at least 8 when an array
    /// is on object storage, where tasks mostly wait on the network).
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
    /// Memory bound for the data in flight, e.g. 512MiB, 2GiB, 1.5GB.
    #[arg(long, global = true, value_name = "SIZE", default_value = "2GiB", allow_hyphen_values = true)]
    pub memory: String,
    /// Progress display on stderr.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub progress: ProgressMode,
    /// No progress bar and no summary line.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// How tasks run: sync (one thread, in order), threads, or processes (--workers child processes).
    #[arg(long, global = true, value_enum, default_value = "threads")]
    pub scheduler: Scheduler,
    /// Directory for the files a run needs while it runs (default: the system temporary
    /// directory); s3://BUCKET/PREFIX puts its intermediate arrays on object storage.
    #[arg(long, global = true, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Print the plan (arrays, stages, tasks, projected memory, bytes read and written) instead of
    /// running it: as text, or as JSON with --explain json.
    #[arg(long, global = true, value_enum, num_args = 0..=1, default_missing_value = "text", value_name = "FORMAT")]
    pub explain: Option<ExplainFormat>,
    /// Draw the plan into FILE (.svg, .png or .dot) instead of running it: every task and the
    /// chunks it reads and writes, or every stage (see --graph-level); dsk graph draws an
    /// expression the same way.
    #[arg(long, global = true, value_name = "FILE")]
    pub graph: Option<PathBuf>,
    /// What --graph draws: tasks, or stages (default: tasks when the task graph is small, else
    /// stages, with a note on stderr).
    #[arg(long, global = true, value_enum, value_name = "LEVEL")]
    pub graph_level: Option<crate::report::graph::Level>,
    /// Reductions fold this many input chunks per partial task and merge partials this many at a
    /// time (default: about 64 MiB of input per task, fan-in 8).
    #[arg(long, global = true, value_name = "N")]
    pub split_every: Option<usize>,
    /// Keep the work directory after the run (to inspect spilled partials and intermediates).
    #[arg(long, global = true)]
    pub keep_work_dir: bool,
    /// Continue the partial output (OUT.partial) that an interrupted, killed or failed run of the
    /// same command left, without redoing its finished tasks; keep this run's partial output if
    /// it too stops. With nothing to resume, simply run.
    #[arg(long, global = true)]
    pub resume: bool,
    /// How chunk files are written: auto (through the page cache, so that the next command reads
    /// them from memory, unless the run writes more than half the available memory: then large
    /// chunks bypass it with O_DIRECT), direct (O_DIRECT where the file system allows it) or
    /// buffered (always through the page cache).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub io: IoMode,
    /// Serve a live page of the run (task stream, progress per stage, memory, bytes, throughput)
    /// at http://ADDR/ while it runs (default 127.0.0.1:8787, another port if taken). Give the
    /// address as --dashboard=HOST:PORT, or put --dashboard after the arrays.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "", value_name = "ADDR")]
    pub dashboard: Option<String>,
    /// Keep the dashboard up this many seconds after the run ends.
    #[arg(long, global = true, value_name = "SECONDS", default_value = "0")]
    pub dashboard_linger: f64,
    /// Save the run's page (command line, summary, task stream, memory over time, stages, stage
    /// graph, machine) as one self-contained HTML file when the run ends — also when it fails.
    #[arg(long, global = true, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// Send unsigned requests to S3 (public buckets), as AWS_NO_SIGN_REQUEST=1 does.
    #[arg(long, global = true)]
    pub anon: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Where the plan's tasks run: here, or on a cluster (docs/cluster.md).
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterArgs {
    /// Where tasks run: local (this machine, with --scheduler), slurm (each stage a Slurm job
    /// array) or dask (ranges of tasks on a Dask distributed cluster, --scheduler-address).
    #[arg(long, global = true, value_enum, default_value = "local")]
    pub executor: crate::exec::cluster::Executor,
    /// The Dask scheduler to send tasks to, e.g. tcp://10.0.0.5:8786 (--executor dask).
    #[arg(long, global = true, value_name = "ADDR")]
    pub scheduler_address: Option<String>,
    /// Slurm partition (sbatch --partition).
    #[arg(long, global = true, value_name = "NAME")]
    pub partition: Option<String>,
    /// Slurm account (sbatch --account).
    #[arg(long, global = true, value_name = "NAME")]
    pub account: Option<String>,
    /// Time limit of one Slurm job (sbatch --time), e.g. 30 or 1:00:00.
    #[arg(long, global = true, value_name = "LIMIT")]
    pub time: Option<String>,
    /// One more argument for sbatch, as sbatch takes it (repeat for several), e.g.
    /// --sbatch-arg=--qos=short.
    #[arg(long, global = true, value_name = "ARG", allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
    /// Tasks per Slurm array index or Dask task (default: enough for about two minutes of work
    /// each, from the plan's bytes).
    #[arg(long, global = true, value_name = "N")]
    pub tasks_per_job: Option<u64>,
    /// At most this many array indices of a stage run at once (sbatch --array=…%N).
    #[arg(long, global = true, value_name = "N")]
    pub max_running: Option<u64>,
    /// Run a failed array index or Dask task again this many times before the run fails.
    #[arg(long, global = true, value_name = "N")]
    pub retries: Option<u32>,
    /// Options for the cluster executors from an INI file ([slurm] and [dask] sections; flags
    /// win). Default: $DSK_CLUSTER_CONFIG, else ~/.config/dsk/cluster.ini when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub cluster_config: Option<PathBuf>,
    /// With --executor slurm: submit every stage and exit; follow the run with dsk status
    /// WORKDIR, then run the same command with --resume to publish the output.
    #[arg(long, global = true)]
    pub detach: bool,
}

/// Default `--workers` when an array of the command is on object storage (measured: the lesson's
/// mirrored mean against a store 50 ms away took 10.6 s with 2 workers, 5.9 s with 8).
pub const REMOTE_WORKERS: usize = 8;

/// Whether an argument of this command names an array on object storage (`URL`, `name=URL`,
/// `--work-dir URL`, `--work-dir=URL`).
fn names_remote_arrays() -> bool {
    std::env::args_os().skip(1).any(|a| {
        let a = a.to_string_lossy();
        let value = a.split_once('=').map(|(_, v)| v).unwrap_or(&a);
        crate::store::remote::is_url(std::path::Path::new(value))
            || crate::store::remote::is_url(std::path::Path::new(&*a))
    })
}

/// `--explain` output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExplainFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    Auto,
    Direct,
    Buffered,
}

impl RunArgs {
    pub fn options(&self) -> Result<RunOptions> {
        let workers = match self.workers {
            Some(0) => return Err(Error::usage("--workers", "must be at least 1")),
            Some(n) if n > crate::grid::MAX_WORKERS => {
                return Err(Error::usage("--workers", format!("{n} is more than {}", crate::grid::MAX_WORKERS)))
            }
            Some(n) => n,
            None => {
                let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
                // arrays on object storage: a task waits on the network for most of a chunk's
                // time, so more tasks than cores run at once (--memory still bounds them)
                if self.scheduler == Scheduler::Threads && names_remote_arrays() {
                    cores.max(REMOTE_WORKERS)
                } else {
                    cores
                }
            }
        };
        Ok(RunOptions { workers, memory: parse_size(&self.memory, "--memory")? })
    }
}

/// Read the metadata of an input array and check that dsk can read it chunk by chunk: its
/// (storage) chunks must fit [`crate::grid::MAX_CHUNK_BYTES`].
pub fn open_input(path: &std::path::Path) -> Result<crate::store::ArrayMeta> {
    let m = crate::store::meta::read_meta(path)?;
    if let Some(msg) = crate::grid::check_chunk(&m.view(m.storage_chunks()), &m.view(&m.shape), m.dtype.size() as u64) {
        return Err(Error::input(
            path,
            format!("{msg} — dsk cannot read this array; rewrite it with smaller chunks (dsk info still describes it)"),
        ));
    }
    Ok(m)
}

/// The selection `--slice` names in an array of `shape` (all of it without `--slice`).
pub fn selection(slice: Option<&str>, shape: &[u64]) -> Result<Vec<crate::expr::slice::AxisSel>> {
    use crate::expr::slice;
    match slice {
        None => Ok(shape.iter().map(|&n| slice::AxisSel::full(n)).collect()),
        Some(t) => slice::parse(t)
            .and_then(|items| slice::normalize(&items, shape))
            .map_err(|m| Error::usage("--slice", format!("{m} (array shape {shape:?})"))),
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

/// Check and complete a chunking: `--chunks` (or `default`, or automatic) and `--shard`.
/// Returns (chunks, shard, chosen automatically?).
pub fn chunking(
    chunks: Option<&str>,
    shard: Option<&str>,
    shape: &[u64],
    dtype: DType,
    default: Option<(Vec<u64>, Option<Vec<u64>>)>,
) -> Result<(Vec<u64>, Option<Vec<u64>>, bool)> {
    let rank = shape.len();
    if let Some(m) = crate::grid::check_size(shape, dtype.size() as u64) {
        return Err(Error::usage("--shape", format!("{m} — no store can hold it")));
    }
    let check = |v: &[u64], arg: &str, text: &str| -> Result<()> {
        if v.len() != rank {
            return Err(Error::usage(
                arg,
                format!(
                    "{text} has {} extents but the shape {shape:?} has {rank} axes — give one extent per axis",
                    v.len()
                ),
            ));
        }
        if v.contains(&0) {
            return Err(Error::usage(arg, format!("{text} has a zero extent; every extent must be at least 1")));
        }
        if let Some(m) = crate::grid::check_size(v, dtype.size() as u64)
            .or_else(|| crate::grid::check_chunk(v, shape, dtype.size() as u64))
        {
            return Err(Error::usage(arg, format!("{m} — choose smaller chunks")));
        }
        Ok(())
    };
    let (mut chunks, default_shard, auto) = match (chunks, default) {
        (Some(t), _) => {
            let v = parse_shape_arg(t, "--chunks")?;
            check(&v, "--chunks", t)?;
            (v, None, false)
        }
        (None, Some((c, s))) if c.len() == rank && !c.contains(&0) => (c, s, false),
        (None, _) => (auto_chunks(shape, dtype.size() as u64, AUTO_CHUNK_BYTES), None, true),
    };
    let shard = match (shard, default_shard) {
        (None, None) => {
            // a chunk larger than the array only wastes memory: clip it (as Dask does)
            for (ch, &n) in chunks.iter_mut().zip(shape) {
                *ch = (*ch).min(n.max(1));
            }
            None
        }
        (text, dflt) => {
            let (mut s, t) = match text {
                Some(t) => {
                    let s = parse_shape_arg(t, "--shard")?;
                    check(&s, "--shard", t)?;
                    (s, t.to_string())
                }
                None => {
                    let s = dflt.unwrap_or_default();
                    let t = crate::grid::tuple(&s);
                    (s, t)
                }
            };
            for ((sh, &ch), &n) in s.iter_mut().zip(&chunks).zip(shape) {
                if *sh % ch != 0 {
                    return Err(Error::usage(
                        "--shard",
                        format!("{t} is not a multiple of the chunks {chunks:?} on every axis — use multiples of the chunk shape"),
                    ));
                }
                // no need for shards beyond the array
                *sh = (*sh).min(n.max(1).div_ceil(ch) * ch);
            }
            Some(s)
        }
    };
    // chunks taken from an input (or cast to a wider dtype) must fit a task as well
    for (arg, c) in [("--chunks", Some(&chunks)), ("--shard", shard.as_ref())] {
        if let Some(m) = c.and_then(|c| crate::grid::check_chunk(c, shape, dtype.size() as u64)) {
            return Err(Error::usage(arg, format!("{m} — choose smaller chunks")));
        }
    }
    Ok((chunks, shard, auto))
}

/// Refuse the options of a planned run (`--graph`, `--dashboard`, `--report`) for a command
/// that has no plan (`plot`, `graph`'s own `-o`): silently ignored, they would look like they
/// worked.
fn refuse_run_views(command: &str, run: &RunArgs) -> Result<()> {
    let given = [
        ("--graph", run.graph.is_some()),
        ("--dashboard", run.dashboard.is_some()),
        ("--report", run.report.is_some()),
        ("--executor", run.cluster.executor != crate::exec::cluster::Executor::Local),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((arg, _)) => Err(Error::usage(
            *arg,
            format!("dsk {command} has no planned run to draw, watch or send to a cluster — use it with create, transform, eval, reduce, rechunk or export"),
        )),
        None => Ok(()),
    }
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    if let Some(run) = cli.run_args() {
        if run.dashboard_linger != 0.0 && run.dashboard.is_none() {
            return Err(Error::usage("--dashboard-linger", "applies to a dashboard — add --dashboard, or drop it"));
        }
    }
    match &cli.command {
        Command::Plot(a) => refuse_run_views("plot", &a.run)?,
        // an export streams in this process: no cluster to send it to
        Command::Export(a) if a.run.cluster.executor != crate::exec::cluster::Executor::Local => {
            return Err(Error::usage(
                "--executor",
                "dsk export streams the array from this machine — drop --executor (compute on the cluster with transform or eval, then export the result)",
            ))
        }
        Command::Graph(a) if a.run.dashboard.is_some() || a.run.report.is_some() => refuse_run_views("graph", &a.run)?,
        _ => {}
    }
    match &cli.command {
        Command::Create(a) => create::run(a, &a.run),
        Command::Info(a) => info::run(a),
        Command::Ls(a) => ls::run(a),
        Command::Export(a) => export::run(a, &a.run),
        Command::Transform(a) => transform::run(a, &a.run),
        Command::Eval(a) => eval::run(a, &a.run),
        Command::Reduce(a) => reduce::run(a, &a.run),
        Command::Rechunk(a) => rechunk::run(a, &a.run),
        Command::Graph(a) => graph::run(a, &a.run),
        Command::Plot(a) => plot::run(a, &a.run),
        Command::Status(a) => status::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Man(a) => man::run(a),
        Command::Worker(a) => worker::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_and_argument_says_what_it_is() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = vec![];
        walk(&<Cli as clap::CommandFactory>::command(), "dsk", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:?}");
    }

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
