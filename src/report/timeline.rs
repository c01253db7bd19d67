//! What the dashboard and the HTML report show: a [`Recorder`] sits between the executor and the
//! progress display, passes every [`Event`] on, and keeps the run's timeline — each stage's
//! progress, one bar per task on the lane (worker thread or process) that ran it, the memory in
//! flight as the budget counts it (the projected bytes of the running tasks plus what the stage
//! holds), and the resident memory of the process tree sampled every 100 ms.
//!
//! State is versioned: every change bumps a revision, and [`Recorder::delta`] returns what changed
//! since a revision a client already has, so a live page receives only new bars and samples.
//! Bars are kept one per task up to [`MAX_BARS`]; after that consecutive tasks of one stage on one
//! lane merge into one bar (the page says so), so a run of millions of tasks stays a few MB.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::exec::{Event, EventSink};
use crate::plan::physical::{PhysicalPlan, Place, StageOp};

/// Bars kept one per task; later tasks merge with the bar before them on their lane.
pub const MAX_BARS: usize = 20_000;
/// Memory samples kept; older ones are thinned (every other one dropped) when full.
const MAX_SAMPLES: usize = 6_000;

/// What the plan says about a stage (the run fills in the rest).
#[derive(Clone, Debug)]
struct StagePlan {
    name: String,
    what: String,
    task_bytes: u64,
    held_bytes: u64,
    parallel: usize,
    read_bytes: u64,
    write_bytes: u64,
    /// Writes into the work directory (intermediates, spilled partials).
    spills: bool,
}

#[derive(Clone, Debug)]
struct StageRec {
    plan: StagePlan,
    tasks: u64,
    done: u64,
    bytes_done: u64,
    start: Option<f64>,
    end: Option<f64>,
    rev: u64,
}

#[derive(Clone, Debug)]
struct Bar {
    stage: usize,
    lane: usize,
    task: u64,
    t0: f64,
    t1: f64,
    count: u64,
    rev: u64,
}

#[derive(Default)]
struct State {
    rev: u64,
    stages: Vec<StageRec>,
    /// The stage running now (index into `stages`).
    current: Option<usize>,
    bars: Vec<Bar>,
    /// Index of the last bar of each lane (for merging once [`MAX_BARS`] is reached).
    last_on_lane: HashMap<usize, usize>,
    running: HashMap<(usize, u64), (usize, f64)>,
    lanes: usize,
    /// (seconds, bytes in flight, process tree RSS); `mem_base` samples were thinned away.
    mem: Vec<(f64, u64, u64)>,
    mem_rev: u64,
    peak_rss: u64,
    peak_in_flight: u64,
    status: &'static str,
    error: Option<String>,
    summary: Option<Value>,
    end: Option<f64>,
    merged: bool,
}

/// Records a run's timeline and forwards events to the display sink.
pub struct Recorder {
    inner: Box<dyn EventSink + Send>,
    t0: Instant,
    started_unix: f64,
    plan: Vec<StagePlan>,
    meta: Value,
    state: Mutex<State>,
    sampling: AtomicBool,
}

impl Recorder {
    /// A recorder for a run of `plan`, passing events on to `inner`. `argv` is the command line.
    /// `graph_svg` is the plan's stage graph, shown on the page.
    pub fn new(
        plan: &PhysicalPlan,
        inner: Box<dyn EventSink + Send>,
        argv: &[String],
        graph_svg: Option<String>,
    ) -> Arc<Recorder> {
        let stages = plan
            .stages
            .iter()
            .map(|s| StagePlan {
                name: s.name.clone(),
                what: s.what.clone(),
                task_bytes: s.task_bytes,
                held_bytes: s.held_bytes,
                parallel: s.parallel,
                read_bytes: s.read_bytes,
                write_bytes: s.write_bytes,
                spills: writes_work(plan, &s.op),
            })
            .collect();
        let meta = json!({
            "command": plan.command,
            "text": plan.text,
            "argv": shell_line(argv),
            "fingerprint": plan.fingerprint(),
            "memory": plan.memory,
            "workers": plan.workers,
            "scheduler": plan.scheduler,
            "total_tasks": plan.total_tasks(),
            "stage_count": plan.stages.len(),
            "scratch_bytes": plan.scratch_bytes,
            "inputs": plan.inputs.iter().map(|i| json!({
                "name": i.name, "path": i.path.display().to_string(), "shape": i.shape,
                "dtype": i.dtype.name(), "chunks": i.chunks,
            })).collect::<Vec<_>>(),
            "output": plan.output.map(|o| {
                let a = &plan.arrays[o];
                json!({"path": match &a.place { Place::Output(p) | Place::Work(p) => p.display().to_string() },
                       "shape": a.spec.shape, "chunks": a.spec.chunks, "dtype": a.spec.dtype.name(),
                       "nbytes": a.nbytes()})
            }),
            "machine": machine(),
            "graph_svg": graph_svg,
        });
        let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Arc::new(Recorder {
            inner,
            t0: Instant::now(),
            started_unix,
            plan: stages,
            meta,
            state: Mutex::new(State { status: "running", ..State::default() }),
            sampling: AtomicBool::new(false),
        })
    }

    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sample memory every `every` until [`Recorder::finish`]; the thread holds a reference.
    pub fn start_sampling(self: &Arc<Self>, every: Duration) {
        if self.sampling.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new().name("dsk-sampler".into()).spawn(move || {
            while me.sampling.load(Ordering::Relaxed) {
                me.sample();
                std::thread::sleep(every);
            }
        });
    }

    fn sample(&self) {
        let rss = tree_rss();
        let t = self.now();
        let mut s = self.lock();
        let inflight = in_flight(&s);
        push_sample(&mut s, (t, inflight, rss));
    }

    /// The run ended: `error` is its failure, `summary` its summary fields.
    pub fn finish(&self, error: Option<String>, summary: Option<Value>) {
        self.sampling.store(false, Ordering::SeqCst);
        let rss = tree_rss();
        let t = self.now();
        let mut s = self.lock();
        push_sample(&mut s, (t, 0, rss));
        s.status = if error.is_some() { "failed" } else { "done" };
        s.error = error;
        s.summary = summary;
        s.end = Some(t);
        s.running.clear();
        s.rev += 1;
    }

    pub fn finished(&self) -> bool {
        self.lock().status != "running"
    }

    /// Everything, as the text of one JSON object (what the report embeds).
    pub fn snapshot(&self) -> String {
        self.delta(0, 0).text
    }

    /// What changed after revision `since` (0: everything) and the memory samples from index
    /// `mem_from` on, as the text of one JSON object. `"rev"` is the revision the client is then
    /// at; `"mem_reset"` tells it to drop its samples (they were thinned since).
    ///
    /// Every client of the dashboard asks for this four times a second while the run's threads
    /// wait on the same lock: the lock is held only to copy the changes out (plain numbers), and
    /// the text is written straight from them, not through a tree of JSON values (which took
    /// some 5 MB per client for a full state).
    pub fn delta(&self, since: u64, mem_from: usize) -> Delta {
        let s = self.lock();
        let now = s.end.unwrap_or_else(|| self.now());
        let bars: Vec<BarOut> = s
            .bars
            .iter()
            .enumerate()
            .filter(|(_, b)| b.rev > since)
            .map(|(i, b)| (i, b.stage, b.lane, b.task, b.t0, b.t1, b.count))
            .collect();
        let reset = mem_from > s.mem.len() || (since > 0 && s.mem_rev > since);
        let from = if reset { 0 } else { mem_from };
        let out = DeltaOut {
            rev: s.rev,
            now,
            status: s.status,
            error: s.error.clone(),
            lanes: s.lanes,
            merged: s.merged,
            bars,
            running: s.running.iter().map(|(&(st, task), &(lane, t0))| (st, lane, task, t0)).collect(),
            stages: s.stages.iter().map(stage_json).collect(),
            mem: s.mem[from..].to_vec(),
            mem_reset: reset,
            peak_rss: s.peak_rss,
            peak_in_flight: s.peak_in_flight,
            summary: s.summary.clone(),
        };
        let (rev, mem_len) = (s.rev, s.mem.len());
        drop(s);
        let mut text = String::with_capacity(256 + out.bars.len() * 48 + out.mem.len() * 40);
        write_delta(&mut text, &out, (since == 0).then_some((&self.meta, self.started_unix)));
        Delta { text, rev, mem_len }
    }
}

/// A delta as JSON text, with the revision and the memory sample index the client reaches.
pub struct Delta {
    pub text: String,
    pub rev: u64,
    pub mem_len: usize,
}

/// (index, stage, lane, task, start s, end s, tasks merged into the bar).
type BarOut = (usize, usize, usize, u64, f64, f64, u64);

struct DeltaOut {
    rev: u64,
    now: f64,
    status: &'static str,
    error: Option<String>,
    lanes: usize,
    merged: bool,
    bars: Vec<BarOut>,
    /// (stage, lane, task, start s).
    running: Vec<(usize, usize, u64, f64)>,
    stages: Vec<Value>,
    mem: Vec<(f64, u64, u64)>,
    mem_reset: bool,
    peak_rss: u64,
    peak_in_flight: u64,
    summary: Option<Value>,
}

/// Write `d` (and `meta`, for a full state) as one JSON object; times in milliseconds.
fn write_delta(o: &mut String, d: &DeltaOut, meta: Option<(&Value, f64)>) {
    use std::fmt::Write as _;
    let _ = write!(
        o,
        "{{\"rev\":{},\"now\":{},\"status\":{},\"error\":{},\"lanes\":{},\"merged\":{},\"bars\":[",
        d.rev,
        num(ms(d.now)),
        js(&d.status),
        js(&d.error),
        d.lanes,
        d.merged
    );
    for (k, &(i, st, lane, task, t0, t1, n)) in d.bars.iter().enumerate() {
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(o, "{sep}[{i},{st},{lane},{task},{},{},{n}]", num(ms(t0)), num(ms(t1)));
    }
    o.push_str("],\"running\":[");
    for (k, &(st, lane, task, t0)) in d.running.iter().enumerate() {
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(o, "{sep}[{st},{lane},{task},{}]", num(ms(t0)));
    }
    let _ = write!(o, "],\"stages\":{},\"mem\":[", js(&d.stages));
    for (k, &(t, f, r)) in d.mem.iter().enumerate() {
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(o, "{sep}[{},{f},{r}]", num(ms(t)));
    }
    let _ = write!(
        o,
        "],\"mem_reset\":{},\"peak_rss\":{},\"peak_in_flight\":{},\"summary\":{}",
        d.mem_reset,
        d.peak_rss,
        d.peak_in_flight,
        js(&d.summary)
    );
    if let Some((meta, started)) = meta {
        let mut m = meta.clone();
        m["started_unix"] = json!(started);
        let _ = write!(o, ",\"meta\":{m}");
    }
    o.push('}');
}

/// A number as JSON writes it (`null` for NaN and infinities, which JSON cannot hold).
fn num(x: f64) -> String {
    json!(x).to_string()
}

/// Anything serde can write, as JSON text.
fn js<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn stage_json(r: &StageRec) -> Value {
    json!({
        "name": r.plan.name, "what": r.plan.what, "tasks": r.tasks, "done": r.done,
        "bytes_done": r.bytes_done, "task_bytes": r.plan.task_bytes, "held_bytes": r.plan.held_bytes,
        "parallel": r.plan.parallel, "read_bytes": r.plan.read_bytes, "write_bytes": r.plan.write_bytes,
        "spills": r.plan.spills,
        "start": r.start.map(ms), "end": r.end.map(ms),
    })
}
fn ms(t: f64) -> f64 {
    (t * 1e4).round() / 10.0
}

fn push_sample(s: &mut State, x: (f64, u64, u64)) {
    if s.mem.len() >= MAX_SAMPLES {
        let kept: Vec<_> = s.mem.iter().step_by(2).copied().collect();
        s.mem = kept;
        s.mem_rev = s.rev + 1;
    }
    s.peak_rss = s.peak_rss.max(x.2);
    s.peak_in_flight = s.peak_in_flight.max(x.1);
    s.mem.push(x);
    s.rev += 1;
}

/// The bytes the budget holds now: the running tasks' projections and the stage's held bytes.
fn in_flight(s: &State) -> u64 {
    let held = s.current.map(|c| s.stages[c].plan.held_bytes).unwrap_or(0);
    held + s.running.keys().map(|&(st, _)| s.stages.get(st).map(|r| r.plan.task_bytes).unwrap_or(0)).sum::<u64>()
}

fn writes_work(plan: &PhysicalPlan, op: &StageOp) -> bool {
    let work = |id: usize| plan.arrays.get(id).is_some_and(|a| matches!(a.place, Place::Work(_)));
    match op {
        StageOp::Compute { out, .. } | StageOp::Import { out, .. } => work(*out),
        StageOp::Partials(p) => matches!(p.store, crate::plan::physical::PartialStore::Disk { .. }),
        // a reduction's result is the run's output (or a scalar printed from the work dir)
        StageOp::Finalize(_) => false,
        StageOp::ScanTotals { totals, .. } => work(*totals),
        StageOp::ScanCarries { carries, .. } => work(*carries),
        StageOp::ScanApply { out, .. } => work(*out),
        StageOp::Export { .. } => false,
    }
}

impl EventSink for Recorder {
    fn event(&self, e: &Event<'_>) {
        self.inner.event(e);
        let t = self.now();
        let mut s = self.lock();
        s.rev += 1;
        let rev = s.rev;
        match *e {
            Event::StageStart { stage, tasks, .. } => {
                // the next stage of the plan with this name (a resumed run skips finished ones)
                let from = s.stages.len();
                let plan = self.plan.iter().skip(from).find(|p| p.name == stage).cloned().unwrap_or(StagePlan {
                    name: stage.to_string(),
                    what: String::new(),
                    task_bytes: 0,
                    held_bytes: 0,
                    parallel: 1,
                    read_bytes: 0,
                    write_bytes: 0,
                    spills: false,
                });
                s.stages.push(StageRec { plan, tasks, done: 0, bytes_done: 0, start: Some(t), end: None, rev });
                s.current = Some(s.stages.len() - 1);
            }
            Event::TaskStart { task, lane, .. } => {
                let Some(c) = s.current else { return };
                s.lanes = s.lanes.max(lane + 1);
                s.running.insert((c, task), (lane, t));
                let f = in_flight(&s);
                s.peak_in_flight = s.peak_in_flight.max(f);
            }
            Event::TaskDone { task, lane, done, bytes_done, .. } => {
                let Some(c) = s.current else { return };
                s.lanes = s.lanes.max(lane + 1);
                let t0 = s.running.remove(&(c, task)).map(|(_, t0)| t0).unwrap_or(t);
                {
                    let r = &mut s.stages[c];
                    r.done = done;
                    r.bytes_done = bytes_done;
                    r.rev = rev;
                }
                let merge = if s.bars.len() >= MAX_BARS {
                    s.last_on_lane.get(&lane).copied().filter(|&i| s.bars[i].stage == c)
                } else {
                    None
                };
                match merge {
                    Some(i) => {
                        let b = &mut s.bars[i];
                        b.t1 = t;
                        b.count += 1;
                        b.rev = rev;
                        s.merged = true;
                    }
                    None => {
                        s.bars.push(Bar { stage: c, lane, task, t0, t1: t, count: 1, rev });
                        let i = s.bars.len() - 1;
                        s.last_on_lane.insert(lane, i);
                    }
                }
            }
            Event::StageEnd { .. } => {
                if let Some(c) = s.current {
                    s.stages[c].end = Some(t);
                    s.stages[c].done = s.stages[c].tasks;
                    s.stages[c].rev = rev;
                }
                s.running.clear();
                s.current = None;
            }
        }
    }
}

/// Resident bytes of this process and all its descendants (worker processes), from /proc.
pub fn tree_rss() -> u64 {
    fn rss(pid: u32) -> u64 {
        let page = 4096;
        std::fs::read_to_string(format!("/proc/{pid}/statm"))
            .ok()
            .and_then(|t| t.split_whitespace().nth(1).and_then(|x| x.parse::<u64>().ok()))
            .map(|p| p * page)
            .unwrap_or(0)
    }
    fn children(pid: u32) -> Vec<u32> {
        let mut out = vec![];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
                    out.extend(text.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
                }
            }
        }
        out
    }
    let mut total = 0;
    let mut stack = vec![std::process::id()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 100_000 {
            break;
        }
        total += rss(p);
        stack.extend(children(p));
    }
    total
}

/// The machine: cores, memory, CPU, OS, dsk's version.
pub fn machine() -> Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| k * 1024);
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
    });
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| l[12..].trim_matches('"').to_string()));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": mem_total,
        "cpu": cpu,
        "os": os,
        "kernel": kernel,
        "host": host,
        "dsk": env!("CARGO_PKG_VERSION"),
        "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
    })
}

/// The command line as a shell would take it back (arguments quoted where needed).
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_a_shell() {
        let a: Vec<String> = ["dsk", "eval", "x * 2", "it's"].iter().map(|s| s.to_string()).collect();
        assert_eq!(shell_line(&a), "dsk eval 'x * 2' 'it'\\''s'");
    }

    #[test]
    fn deltas_are_json_written_straight() {
        let d = DeltaOut {
            rev: 7,
            now: 1.5,
            status: "failed",
            error: Some("a \"quoted\" </script> error".into()),
            lanes: 2,
            merged: false,
            bars: vec![(0, 0, 1, 3, 0.0001, 0.25, 1), (1, 0, 0, 4, 0.1, f64::NAN, 2)],
            running: vec![(0, 1, 5, 0.2)],
            stages: vec![json!({"name": "s"})],
            mem: vec![(0.1, 10, 20)],
            mem_reset: true,
            peak_rss: 20,
            peak_in_flight: 10,
            summary: None,
        };
        let mut text = String::new();
        write_delta(&mut text, &d, Some((&json!({"command": "eval"}), 2.0)));
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["rev"], 7);
        assert_eq!(v["now"], 1500.0);
        assert_eq!(v["error"], "a \"quoted\" </script> error");
        assert_eq!(v["bars"], json!([[0, 0, 1, 3, 0.1, 250.0, 1], [1, 0, 0, 4, 100.0, null, 2]]));
        assert_eq!(v["running"], json!([[0, 1, 5, 200.0]]));
        assert_eq!(v["mem"], json!([[100.0, 10, 20]]));
        assert_eq!(v["meta"], json!({"command": "eval", "started_unix": 2.0}));
        assert_eq!(v["summary"], Value::Null);
        let mut text = String::new();
        write_delta(&mut text, &DeltaOut { bars: vec![], running: vec![], mem: vec![], ..d }, None);
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        assert!(v.get("meta").is_none() && v["bars"] == json!([]));
    }

    #[test]
    fn tree_rss_counts_this_process() {
        assert!(tree_rss() > 1 << 20);
    }
}
