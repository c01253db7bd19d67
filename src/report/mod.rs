//! Everything a person sees while and after dsk runs: progress bars (indicatif, on stderr),
//! `--progress json` event lines and the summary line (here), the plan's picture ([`graph`]),
//! plots of arrays, the live dashboard and the saved report ([`dashboard`], fed by a
//! [`timeline::Recorder`]), all drawn as SVG and rendered to PNG by [`draw`]. The only module
//! that imports indicatif, resvg, plotters and tiny_http. Executors emit [`Event`]s; the sinks
//! here draw them.

pub mod dashboard;
pub mod draw;
pub mod graph;
pub mod plot;
pub mod timeline;

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::exec::{Event, EventSink};

/// `--progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal.
    Auto,
    /// A bar always (also when stderr is redirected).
    Always,
    /// Nothing.
    Never,
    /// One JSON object per line on stderr.
    Json,
}

/// Build the sink for `mode`; `quiet` silences bars (but not JSON, which a program asked for).
pub fn sink(mode: ProgressMode, quiet: bool) -> Box<dyn EventSink + Send> {
    use std::io::IsTerminal;
    match mode {
        ProgressMode::Json => Box::new(JsonEvents::new()),
        ProgressMode::Never => Box::new(crate::exec::NoEvents),
        _ if quiet => Box::new(crate::exec::NoEvents),
        ProgressMode::Always => Box::new(Bars::new(true)),
        ProgressMode::Auto => {
            if std::io::stderr().is_terminal() {
                Box::new(Bars::new(false))
            } else {
                Box::new(crate::exec::NoEvents)
            }
        }
    }
}

/// One indicatif bar per stage: tasks done/total, bytes/s, ETA.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    force: bool,
}

impl Bars {
    pub fn new(force: bool) -> Bars {
        Bars { bar: Mutex::new(None), force }
    }
}

impl EventSink for Bars {
    fn event(&self, e: &Event<'_>) {
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        match e {
            Event::StageStart { stage, tasks, .. } => {
                let pb = ProgressBar::with_draw_target(
                    Some(*tasks),
                    if self.force {
                        ProgressDrawTarget::term_like(Box::new(StderrTerm))
                    } else {
                        ProgressDrawTarget::stderr()
                    },
                );
                let style = ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {pos}/{len} tasks  {msg}  {elapsed_precise} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                pb.set_style(style);
                pb.set_prefix(stage.to_string());
                *slot = Some(pb);
            }
            Event::TaskDone { done, bytes_done, elapsed, .. } => {
                if let Some(pb) = slot.as_ref() {
                    pb.set_position(*done);
                    let rate = *bytes_done as f64 / elapsed.as_secs_f64().max(1e-9);
                    pb.set_message(format!("{}/s", crate::error::human(rate as u64)));
                }
            }
            Event::StageEnd { .. } => {
                if let Some(pb) = slot.take() {
                    pb.finish_and_clear();
                }
            }
            Event::TaskStart { .. } => {}
        }
    }
}

/// Plain stderr as a terminal, for `--progress always` when stderr is redirected (ANSI escapes).
#[derive(Debug)]
struct StderrTerm;

impl StderrTerm {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(s.as_bytes())
    }
}

impl indicatif::TermLike for StderrTerm {
    fn width(&self) -> u16 {
        std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}A"))
        } else {
            Ok(())
        }
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}B"))
        } else {
            Ok(())
        }
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}C"))
        } else {
            Ok(())
        }
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}D"))
        } else {
            Ok(())
        }
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

/// `--progress json`: one object per line on stderr; `task` lines at most every 100 ms.
pub struct JsonEvents {
    last: Mutex<Option<Instant>>,
}

impl JsonEvents {
    pub fn new() -> JsonEvents {
        JsonEvents { last: Mutex::new(None) }
    }
}

impl Default for JsonEvents {
    fn default() -> Self {
        JsonEvents::new()
    }
}

pub(crate) fn emit(v: serde_json::Value) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{v}");
}

impl EventSink for JsonEvents {
    fn event(&self, e: &Event<'_>) {
        match e {
            Event::StageStart { stage, tasks, bytes } => {
                emit(json!({"event": "stage_start", "stage": stage, "tasks": tasks, "bytes": bytes}))
            }
            Event::TaskDone { stage, done, tasks, bytes_done, bytes, elapsed, .. } => {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100));
                if due || done == tasks {
                    *last = Some(now);
                    let secs = elapsed.as_secs_f64();
                    emit(json!({
                        "event": "progress", "stage": stage, "done": done, "tasks": tasks,
                        "bytes_done": bytes_done, "bytes": bytes, "elapsed_s": round3(secs),
                        "bytes_per_s": (*bytes_done as f64 / secs.max(1e-9)).round(),
                    }))
                }
            }
            Event::TaskStart { .. } => {}
            Event::StageEnd { stage, tasks, bytes, elapsed } => emit(json!({
                "event": "stage_end", "stage": stage, "tasks": tasks, "bytes": bytes,
                "elapsed_s": round3(elapsed.as_secs_f64()),
            })),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Print the end-of-run summary line on stderr (unless quiet), or a JSON `summary` event.
pub fn summary(mode: ProgressMode, quiet: bool, text: &str, fields: serde_json::Value) {
    if mode == ProgressMode::Json {
        let mut f = fields;
        f["event"] = json!("summary");
        emit(f);
    } else if !quiet {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }
}
