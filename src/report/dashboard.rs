//! `--dashboard [ADDR]` and `--report FILE.html`: the run's page, live or saved.
//!
//! One page ([`page`]) serves both: live, it is served by a small HTTP server (tiny_http) on
//! loopback and follows the run over server-sent events (`/events`: the full state first, then
//! what changed every 250 ms, then an `end` event); saved, the same page carries the final state
//! inline and needs no network. Routes: `/` the page, `/events` the stream, `/state` the state as
//! JSON, `/report.html` the page as `--report` would save it.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::timeline::Recorder;
use crate::error::{Error, Result};

/// Dask's dashboard port, which users know.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8787";

const PAGE: &str = include_str!("page.html");

/// The page with `data` inline (a report), or with none (the live dashboard reads `/events`).
pub fn page(title: &str, data: Option<&str>) -> String {
    let json = match data {
        // `<` never appears raw inside the script element (it could close it)
        Some(v) => v.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026"),
        None => "null".to_string(),
    };
    PAGE.replacen("__TITLE__", &super::draw::xml_escape(title), 1).replacen("__DATA__", &json, 1)
}

/// Parse `--dashboard`'s address: `HOST:PORT`, `:PORT` or `PORT` (on loopback).
pub fn parse_addr(text: &str) -> Result<SocketAddr> {
    let t = text.trim();
    let full = if t.chars().all(|c| c.is_ascii_digit()) && !t.is_empty() {
        format!("127.0.0.1:{t}")
    } else if let Some(p) = t.strip_prefix(':') {
        format!("127.0.0.1:{p}")
    } else {
        t.to_string()
    };
    full.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
        Error::usage(
            "--dashboard",
            format!(
                "{t:?} is not an address — give HOST:PORT, :PORT or PORT (e.g. --dashboard=127.0.0.1:8787), and put --dashboard after the command's arrays"
            ),
        )
    })
}

/// Requests answered at once (pages, states, event streams); more are left unanswered.
const MAX_CLIENTS: usize = 128;

/// How long the end of the process waits for the answers under way (a page being sent, a stream
/// sending its `end` event); a client that does not read is then left behind, not waited for.
const DRAIN: Duration = Duration::from_secs(1);

/// A running dashboard server.
pub struct Dashboard {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Requests being answered, each on its own thread.
    active: Arc<AtomicUsize>,
    /// The default port, when it was taken and another was chosen.
    pub taken: Option<u16>,
    /// `--progress json`: say so as JSON events on stderr, not as text lines.
    pub json: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dashboard {
    /// Serve `rec` on `addr`. When `addr` is the default and its port is taken, another port is
    /// chosen (as Dask does) and said on stderr.
    pub fn start(addr: SocketAddr, default: bool, rec: Arc<Recorder>, title: String) -> Result<Dashboard> {
        let mut taken = None;
        let server = match tiny_http::Server::http(addr) {
            Ok(s) => s,
            Err(e) if default => {
                let any = SocketAddr::new(addr.ip(), 0);
                let s = tiny_http::Server::http(any).map_err(|e2| {
                    Error::Internal(format!("cannot serve the dashboard on {addr} ({e}) nor on another port ({e2})"))
                })?;
                taken = Some(addr.port());
                s
            }
            Err(e) => {
                return Err(Error::usage(
                    "--dashboard",
                    format!("cannot serve on {addr}: {e} — choose another port, e.g. --dashboard=127.0.0.1:0"),
                ))
            }
        };
        let bound = server.server_addr().to_ip().unwrap_or(addr);
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let active = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (server, stop, active) = (Arc::clone(&server), Arc::clone(&stop), Arc::clone(&active));
            std::thread::Builder::new()
                .name("dsk-dashboard".into())
                .spawn(move || serve(&server, &stop, &active, &rec, &title))
                .map_err(|e| Error::Internal(format!("cannot start the dashboard thread: {e}")))?
        };
        Ok(Dashboard { server, addr: bound, stop, active, taken, json: false, thread: Some(thread) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving, after `linger` (the page stays up that long after the run). A dashboard
    /// that lingers is kept until [`linger`], which the binary calls once the run's summary or
    /// error is printed — so the user sees how the run went right away, not after the linger.
    pub fn stop(mut self, linger: Duration) {
        if linger.is_zero() {
            self.shutdown();
        } else {
            // the page shows the end of the run at once; it just stays up
            *LINGERING.lock().unwrap_or_else(|p| p.into_inner()) = Some((self, linger));
        }
    }

    fn linger_then_stop(mut self, linger: Duration) {
        if self.json {
            super::emit(serde_json::json!({
                "event": "dashboard_linger", "url": format!("http://{}/", self.addr), "seconds": linger.as_secs_f64(),
            }));
        } else {
            eprintln!(
                "dsk: the dashboard stays up at http://{}/ for {} s (Ctrl-C to stop)",
                self.addr,
                linger.as_secs_f64()
            );
        }
        let until = Instant::now() + linger;
        while Instant::now() < until && !crate::exec::interrupted() {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // answers under way get a moment to finish; one stuck on a client that does not read
        // is left behind (the process ends without it)
        let until = Instant::now() + DRAIN;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

static LINGERING: std::sync::Mutex<Option<(Dashboard, Duration)>> = std::sync::Mutex::new(None);

/// Keep the dashboard of the run that just ended up for its `--dashboard-linger` (Ctrl-C ends it
/// sooner), then stop it; nothing when no dashboard lingers. Call after the run's summary.
pub fn linger() {
    let parked = LINGERING.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((d, t)) = parked {
        d.linger_then_stop(t);
    }
}

/// Counts a request as being answered until dropped.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(
    server: &tiny_http::Server,
    stop: &Arc<AtomicBool>,
    active: &Arc<AtomicUsize>,
    rec: &Arc<Recorder>,
    title: &str,
) {
    let title: Arc<str> = Arc::from(title);
    while !stop.load(Ordering::Relaxed) {
        let req = match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => break,
        };
        // Every answer is written on a thread of its own: writing blocks while the client does
        // not read, and must block neither the other clients nor the end of the process.
        if active.load(Ordering::SeqCst) >= MAX_CLIENTS {
            // answering (even dropping a request answers it) could block: left unanswered
            std::mem::forget(req);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = Active(Arc::clone(active));
        let (rec, stop, title) = (Arc::clone(rec), Arc::clone(stop), Arc::clone(&title));
        let _ = std::thread::Builder::new().name("dsk-http".into()).spawn(move || {
            let _guard = guard;
            answer(req, &rec, &stop, &title)
        });
    }
}

fn answer(req: tiny_http::Request, rec: &Recorder, stop: &AtomicBool, title: &str) {
    let path = req.url().split('?').next().unwrap_or("/").to_string();
    let html = |body: String| {
        tiny_http::Response::from_string(body).with_header(header("Content-Type", "text/html; charset=utf-8"))
    };
    let _ = match (req.method(), path.as_str()) {
        (tiny_http::Method::Get, "/" | "/index.html") => req.respond(html(page(title, None))),
        (tiny_http::Method::Get, "/report.html") => req.respond(html(page(title, Some(&rec.snapshot())))),
        (tiny_http::Method::Get, "/state") => req.respond(
            tiny_http::Response::from_string(rec.snapshot()).with_header(header("Content-Type", "application/json")),
        ),
        (tiny_http::Method::Get, "/events") => {
            events(req, rec, stop);
            Ok(())
        }
        _ => req.respond(tiny_http::Response::from_string("not found\n").with_status_code(404)),
    };
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("static header")
}

/// One server-sent event stream: the whole state, then every 250 ms what changed, until the run
/// ends (then an `end` event) or the dashboard stops.
fn events(req: tiny_http::Request, rec: &Recorder, stop: &AtomicBool) {
    let mut w = req.into_writer();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\r\n";
    if w.write_all(head.as_bytes()).and_then(|_| w.flush()).is_err() {
        return;
    }
    let (mut rev, mut mem) = (0u64, 0usize);
    loop {
        // read before `finished`: the dashboard stops only after the run has finished, so a
        // stream told to stop still sends the final state and `end` (without them the page said
        // "disconnected" after a run that went well)
        let stopping = stop.load(Ordering::SeqCst);
        let finished = rec.finished();
        let d = rec.delta(rev, mem);
        if (rev == 0 || d.rev != rev)
            && w.write_all(format!("data: {}\n\n", d.text).as_bytes()).and_then(|_| w.flush()).is_err()
        {
            return;
        }
        rev = d.rev;
        mem = d.mem_len;
        if finished {
            let _ = w.write_all(b"event: end\ndata: {}\n\n").and_then(|_| w.flush());
            return;
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Save the report page of `rec` at `path` (written whole under a temporary name, then renamed).
pub fn save_report(path: &Path, title: &str, rec: &Recorder) -> Result<()> {
    super::draw::write_file(path, "--report", page(title, Some(&rec.snapshot())).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("8790").unwrap().to_string(), "127.0.0.1:8790");
        assert_eq!(parse_addr(":0").unwrap().port(), 0);
        assert_eq!(parse_addr("0.0.0.0:9000").unwrap().to_string(), "0.0.0.0:9000");
        assert!(parse_addr("in.zarr").is_err());
    }

    #[test]
    fn inline_data_cannot_close_the_script() {
        let p = page("t", Some(&serde_json::json!({"x": "</script><b>"}).to_string()));
        assert!(!p.contains("</script><b>"));
        assert!(p.contains("\\u003c/script\\u003e"));
    }
}
