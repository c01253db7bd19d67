//! Executors: run the stages of a physical plan ([`run`]) — each a set of independent chunk tasks
//! ([`tasks`]) — under one memory bound for the whole run, on `--workers` threads or worker
//! processes, and report what happens as [`Event`]s (the progress bars and JSON lines are drawn
//! from them by `report`, never here).
//!
//! Admission control: a task starts only when its projected bytes fit in the run's [`Budget`]
//! next to the tasks already running and what earlier stages hold. Each task is told how many
//! codec threads it may use so that chunk- and codec-level parallelism together stay within the
//! worker count.

pub mod autocodec;
pub mod budget;
pub mod cluster;
pub mod evaluate;
pub mod export;
pub mod journal;
pub mod plot;
pub mod run;
pub mod tasks;
pub mod workdir;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use budget::{Budget, Reservation};

use crate::error::{Error, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Set while the run stops what it started elsewhere (cluster jobs): a second signal then waits.
static STOPPING_JOBS: AtomicBool = AtomicBool::new(false);

/// On Ctrl-C (SIGINT) or SIGTERM, stop starting tasks: the run then fails like any other, so its
/// partial output and work directory are removed. A second signal ends the process at once,
/// except while the run waits for its cancelled cluster jobs to stop (leaving then would leave
/// the partial output behind).
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            if !STOPPING_JOBS.load(Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("dsk: stopping the run's cluster jobs first (kill -9 leaves them running)");
        }
    });
}

/// While the returned guard lives (a cluster run, from its first submission until its jobs are
/// over or stopped), a second Ctrl-C does not end the process.
pub fn stopping_jobs() -> impl Drop {
    struct Guard;
    impl Drop for Guard {
        fn drop(&mut self) {
            STOPPING_JOBS.store(false, Ordering::SeqCst);
        }
    }
    STOPPING_JOBS.store(true, Ordering::SeqCst);
    Guard
}

/// A write past the file size limit (`ulimit -f`) raises SIGXFSZ, which kills the process and
/// leaves its partial output behind: ignored, the write fails with EFBIG instead and the run fails
/// like any other, with its outputs removed. Ignored signals stay ignored in worker processes.
pub fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// True once the user asked the run to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// `--scheduler`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Scheduler {
    /// One thread, tasks in order.
    Sync,
    /// A pool of --workers threads (default).
    Threads,
    /// --workers child processes, each running a range of a stage's tasks.
    Processes,
}

impl Scheduler {
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Sync => "sync",
            Scheduler::Threads => "threads",
            Scheduler::Processes => "processes",
        }
    }
}

/// How to run: the options every computing command shares.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub workers: usize,
    pub memory: u64,
}

/// What the executor reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    StageStart {
        stage: &'a str,
        tasks: u64,
        bytes: u64,
    },
    /// Task `task` started on `lane` (a worker thread, or a worker process under `processes`).
    TaskStart {
        stage: &'a str,
        task: u64,
        lane: usize,
    },
    TaskDone {
        stage: &'a str,
        task: u64,
        lane: usize,
        done: u64,
        tasks: u64,
        bytes_done: u64,
        bytes: u64,
        elapsed: Duration,
    },
    StageEnd {
        stage: &'a str,
        tasks: u64,
        bytes: u64,
        elapsed: Duration,
    },
}

/// Receives executor events (progress bars, JSON lines, reports).
pub trait EventSink: Sync {
    fn event(&self, e: &Event<'_>);
}

/// Ignores every event.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _: &Event<'_>) {}
}

/// A stage: `tasks` independent tasks, each projected to hold at most `task_bytes` at its peak and
/// to process `bytes_per_task` logical bytes (for throughput figures).
#[derive(Clone, Debug)]
pub struct Stage {
    pub name: String,
    pub tasks: u64,
    pub task_bytes: u64,
    pub total_bytes: u64,
}

/// What a task may use: its index and the codec concurrency it is given.
#[derive(Clone, Copy, Debug)]
pub struct TaskCtx {
    pub index: u64,
    pub codec_threads: usize,
}

/// Summary of a finished stage.
#[derive(Clone, Debug)]
pub struct StageStats {
    pub tasks: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub parallel: usize,
}

/// Run `task` for every index of `stage` with at most `parallel` tasks in flight, each holding a
/// reservation of `stage.task_bytes` from the run's `budget`. Returns the first error; tasks not
/// yet started are skipped once one fails. `task` returns the logical bytes it processed.
pub fn run_stage(
    stage: &Stage,
    parallel: usize,
    opts: &RunOptions,
    sink: &dyn EventSink,
    budget: &Budget,
    task: impl Fn(TaskCtx) -> Result<u64> + Sync,
) -> Result<StageStats> {
    let start = Instant::now();
    sink.event(&Event::StageStart { stage: &stage.name, tasks: stage.tasks, bytes: stage.total_bytes });
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let bytes_done = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    // never more tasks in flight than the stage has (--workers 10000 for 12 chunks starts 12)
    let parallel = parallel.clamp(1, stage.tasks.clamp(1, usize::MAX as u64) as usize);
    // Threads the codecs of one task may use: the workers not busy with other tasks, but no more
    // than the cores (threads beyond them only wait for one).
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let codec_threads = (opts.workers / parallel).clamp(1, cores);
    // tests of the dashboard slow tasks down to watch a run while it goes on
    let delay =
        std::env::var("DSK_TEST_TASK_DELAY_MS").ok().and_then(|v| v.parse::<u64>().ok()).map(Duration::from_millis);

    let worker = |lane: usize| loop {
        if failed.load(Ordering::Relaxed) {
            break;
        }
        if interrupted() {
            failed.store(true, Ordering::Relaxed);
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(Error::Interrupted);
            }
            break;
        }
        let i = next.fetch_add(1, Ordering::Relaxed) as u64;
        if i >= stage.tasks {
            break;
        }
        let _held = budget.reserve(stage.task_bytes);
        let ctx = TaskCtx { index: i, codec_threads };
        sink.event(&Event::TaskStart { stage: &stage.name, task: i, lane });
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let result = catch_unwind(AssertUnwindSafe(|| task(ctx))).unwrap_or_else(|p| {
            Err(Error::Internal(format!("task {i} of {} panicked: {}", stage.name, panic_text(&p))))
        });
        match result {
            Ok(b) => {
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                let bd = bytes_done.fetch_add(b, Ordering::Relaxed) + b;
                sink.event(&Event::TaskDone {
                    stage: &stage.name,
                    task: i,
                    lane,
                    done: d,
                    tasks: stage.tasks,
                    bytes_done: bd,
                    bytes: stage.total_bytes,
                    elapsed: start.elapsed(),
                });
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(e);
                }
                break;
            }
        }
    };

    if parallel == 1 {
        worker(0);
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.workers.min(parallel * codec_threads).max(parallel))
            .thread_name(|i| format!("dsk-worker-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the worker threads: {e}")))?;
        pool.scope(|s| {
            for lane in 0..parallel {
                let worker = &worker;
                s.spawn(move |_| worker(lane));
            }
        });
    }
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let elapsed = start.elapsed();
    let bytes = bytes_done.load(Ordering::Relaxed);
    sink.event(&Event::StageEnd { stage: &stage.name, tasks: stage.tasks, bytes, elapsed });
    Ok(StageStats { tasks: stage.tasks, bytes, elapsed, parallel })
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Peak resident set size of this process so far (VmHWM), when the OS reports it.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Keep freed memory in the process instead of returning it to the OS after every chunk.
///
/// glibc returns large blocks (≥ 128 KiB by default, adjusted dynamically) to the kernel with
/// munmap on free; a chunk pipeline that allocates and frees an 8 MB buffer per chunk then pays a
/// page fault per 4 KiB on every chunk (measured: seconds of system time on a 1.6 GB pass). Raising
/// the mmap and trim thresholds keeps those blocks in the heap for reuse. Memory stays bounded by
/// the tasks in flight, which the budget limits (the freed blocks kept are reused by the next
/// tasks; tests/interop/test_memory.py checks the peak of every command against the bound).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // SAFETY: mallopt only changes allocator parameters; called once at start-up.
        // 32 MiB is the largest threshold glibc accepts on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // Blocks above that threshold would still be mapped and unmapped on every chunk, and a
        // freed 100 MB block at the top of the heap trimmed and grown again: with chunks of
        // ~100 MB (the lesson's chunk-size exercise) a page fault per 4 KiB of every chunk —
        // measured in a --report: (cos(x)**2).mean(axis=1) over (3125, 4000) chunks spent 3.9 s of
        // its 4.2 s in the kernel, 1.56 M faults; 2.2 s and 74 k faults with every block from the
        // heap and trimmed only beyond 1 GiB free.
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        // One arena: memory a task frees on one thread is reused by the next task on any other,
        // so the resident set follows what tasks hold at once (with an arena per thread, each
        // grows to the largest task it ever ran and the process holds their sum).
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
