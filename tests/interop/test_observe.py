"""The dashboard and the HTML report in a real browser (Debian's chromium, driven by Playwright).

Each page must load without a console error or an uncaught exception, must not be blank, and its
task stream must show the run's tasks: while a run goes on (the live dashboard on loopback, fed
by server-sent events) and days later (the saved report, opened from a file with no server).
Screenshots are kept in the test's temporary directory (and, with DSK_SCREENSHOTS=DIR, there).

Without chromium the tests are skipped — unless DSK_REQUIRE_BROWSER=1 (set by .ci/run, which
installs it), where a missing browser fails them.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import DSK, dsk

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        if os.environ.get("DSK_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, timeout=60_000)
        yield b
        b.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser, width=1280, height=1500):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"exception: {e}"))

    def __enter__(self):
        return self.page

    def __exit__(self, *exc):
        self.page.close()


def screenshot(page, tmp_path, name):
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=True)
    keep = os.environ.get("DSK_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    return out


def check_page(page, tasks):
    """Not blank, and the task stream has a bar per task (small runs: no merging)."""
    body = page.inner_text("body")
    assert len(body) > 200, body
    assert page.locator("#title").inner_text().startswith("dsk ")
    bars = page.locator("#stream rect.task").count()
    assert bars == tasks, f"{bars} task bars for {tasks} tasks"
    # every stage in the table, with its tasks done
    rows = page.locator("#stages tr").count() - 1
    assert rows >= 1


def summary_of(stderr):
    for line in stderr.decode().splitlines():
        if line.startswith("{") and '"summary"' in line:
            return json.loads(line)
    raise AssertionError(f"no summary in:\n{stderr.decode()}")


def test_report_opens_days_later(browser, tmp_path):
    dsk("create", "random", tmp_path / "x.zarr", "--shape", "1200,900", "--chunks", "200,200", "--seed", "3", "-q")
    report = tmp_path / "run.html"
    r = dsk("reduce", tmp_path / "x.zarr", "--op", "std", "--axis", "1", tmp_path / "s.zarr",
            "--report", report, "--progress", "json", "--workers", "2")
    tasks = summary_of(r.stderr)["tasks"]
    text = report.read_text()
    assert "<script" in text and "http://" not in text.replace("http://www.w3.org", ""), "the report must not load anything"
    p = Page(browser)
    with p as page:
        page.goto(report.as_uri())
        page.wait_for_selector("#stream rect.task")
        check_page(page, tasks)
        assert page.locator("#status").inner_text() == "done"
        # the stage graph is drawn from the plan
        assert page.locator("#graph svg").count() == 1
        screenshot(page, tmp_path, "report.png")
    assert p.errors == []


def test_report_of_a_failed_run_says_why(browser, tmp_path):
    dsk("create", "ones", tmp_path / "x.zarr", "--shape", "100,100", "--chunks", "50,50", "-q")
    (tmp_path / "taken.zarr").mkdir()
    (tmp_path / "taken.zarr" / "mine.txt").write_text("not dsk's")
    report = tmp_path / "failed.html"
    r = dsk("transform", tmp_path / "x.zarr", tmp_path / "taken.zarr", "--expr", "x + 1", "--report", report, ok=False)
    assert r.returncode != 0
    if not report.exists():
        # refused before planning: nothing ran, no report
        return
    p = Page(browser)
    with p as page:
        page.goto(report.as_uri())
        page.wait_for_selector("#status")
        assert page.locator("#status").inner_text() == "failed"
        assert "failed" in page.locator("#error").inner_text()
    assert p.errors == []


def start_with_dashboard(tmp_path, *args, delay_ms=40):
    env = dict(os.environ, DSK_TEST_TASK_DELAY_MS=str(delay_ms))
    proc = subprocess.Popen([DSK, *map(str, args), "--dashboard=127.0.0.1:0", "--progress", "json"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
    url = None
    deadline = time.time() + 60
    lines = []
    while time.time() < deadline:
        line = proc.stderr.readline().decode()
        if not line:
            break
        lines.append(line)
        # --progress json: every line on stderr is a JSON object, the address too
        event = json.loads(line)
        if event["event"] == "dashboard":
            url = event["url"]
            break
    if url is None:
        proc.kill()
        raise AssertionError("no dashboard address on stderr:\n" + "".join(lines))
    return proc, url


def finish(proc, timeout=120):
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return err


def test_live_dashboard_follows_the_run(browser, tmp_path):
    # 64 tasks of 40 ms on 2 workers: about 1.5 s, long enough to watch
    proc, url = start_with_dashboard(tmp_path, "create", "random", tmp_path / "r.zarr", "--shape", "800,800",
                                     "--chunks", "100,100", "--workers", "2")
    p = Page(browser)
    try:
        with p as page:
            page.goto(url)
            page.wait_for_selector("#stream rect", timeout=30_000)
            seen_running = page.locator("#status").inner_text()
            # the state is also served as JSON
            state = json.loads(urllib.request.urlopen(url + "state", timeout=10).read())
            assert state["meta"]["command"] == "create"
            screenshot(page, tmp_path, "dashboard-live.png")
            page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=60_000)
            check_page(page, 64)
            screenshot(page, tmp_path, "dashboard-done.png")
    finally:
        err = finish(proc)
    assert proc.returncode == 0, err.decode()
    assert seen_running == "running", "the page loaded only after the run"
    assert p.errors == [], p.errors


def test_dashboard_processes_scheduler_lanes_are_workers(browser, tmp_path):
    dsk("create", "random", tmp_path / "x.zarr", "--shape", "600,600", "--chunks", "100,100", "-q")
    proc, url = start_with_dashboard(tmp_path, "transform", tmp_path / "x.zarr", tmp_path / "y.zarr",
                                     "--expr", "cos(x)**2", "--scheduler", "processes", "--workers", "2",
                                     "--dashboard-linger", "20")
    p = Page(browser)
    try:
        with p as page:
            page.goto(url)
            page.wait_for_function("document.getElementById('status').textContent === 'done'", timeout=60_000)
            check_page(page, 36)
            lanes = page.locator("#stream text", has_text="worker").count()
            assert lanes == 2
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        finish(proc)
    assert p.errors == [], p.errors


def test_dashboard_address_errors(tmp_path):
    dsk("create", "ones", tmp_path / "x.zarr", "--shape", "10", "--chunks", "5", "-q")
    r = dsk("transform", tmp_path / "x.zarr", tmp_path / "y.zarr", "--expr", "x", "--dashboard=not-an-address", ok=False)
    assert r.returncode == 2
    assert "--dashboard" in r.stderr.decode() and len(r.stderr.decode().strip().splitlines()) == 1
    assert not (tmp_path / "y.zarr").exists()
    r = dsk("transform", tmp_path / "x.zarr", tmp_path / "y.zarr", "--expr", "x", "--report", tmp_path / "r.txt", ok=False)
    assert r.returncode == 2 and "--report" in r.stderr.decode()
    assert not (tmp_path / "y.zarr").exists()


def test_report_replaces_only_its_own_file(tmp_path):
    dsk("create", "ones", tmp_path / "x.zarr", "--shape", "10", "--chunks", "5", "-q")
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my notes</p>")
    r = dsk("reduce", tmp_path / "x.zarr", "--op", "sum", "--report", notes, ok=False)
    assert r.returncode == 1 and "not written by dsk" in r.stderr.decode()
    assert notes.read_text() == "<p>my notes</p>"
    # a report dsk wrote is replaced by the next run
    rep = tmp_path / "r.html"
    dsk("reduce", tmp_path / "x.zarr", "--op", "sum", "--report", rep)
    first = rep.read_text()
    dsk("reduce", tmp_path / "x.zarr", "--op", "max", "--report", rep)
    assert rep.read_text() != first and "max" in rep.read_text()


def test_a_client_that_never_reads_does_not_hold_up_the_end(tmp_path):
    import socket

    # 10,000 tasks: a report page of about a megabyte, asked for 50 times on one connection whose
    # client never reads, plus event streams that are never read
    dsk("create", "random", tmp_path / "x.zarr", "--shape", "1000,1000", "--chunks", "10,10", "-q")
    proc, url = start_with_dashboard(tmp_path, "transform", tmp_path / "x.zarr", tmp_path / "y.zarr",
                                     "--expr", "x + 1", delay_ms=0)
    port = int(re.search(r":(\d+)/$", url).group(1))
    socks = []
    for path in ["/report.html", "/events", "/state"]:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 50)
        socks.append(s)
    try:
        t0 = time.time()
        err = finish(proc, timeout=60)
        assert proc.returncode == 0, err.decode()
        assert time.time() - t0 < 30
    finally:
        for s in socks:
            s.close()


def test_many_event_streams_stay_small(tmp_path):
    import threading

    # 40 pages following a run of 10,000 tasks: each stream's full state is written as text
    # (it was built as a tree of JSON values first, some 5 MB a client: 170 MB for 50 clients)
    dsk("create", "random", tmp_path / "x.zarr", "--shape", "1000,1000", "--chunks", "10,10", "-q")
    proc, url = start_with_dashboard(tmp_path, "transform", tmp_path / "x.zarr", tmp_path / "y.zarr",
                                     "--expr", "x + 1", delay_ms=0)
    got = []

    def follow():
        with urllib.request.urlopen(url + "events", timeout=60) as r:
            body = r.read().decode()
        got.append(body)

    threads = [threading.Thread(target=follow, daemon=True) for _ in range(40)]
    for t in threads:
        t.start()
    err = finish(proc, timeout=120)
    for t in threads:
        t.join(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert len(got) == 40 and all("event: end" in b for b in got)
    # every stream's first event is the whole state, as JSON
    first = json.loads(got[0].split("\n\n")[0].removeprefix("data: "))
    assert first["meta"]["command"] == "transform"
    # --progress json: every line on stderr is a JSON object (the dashboard's address too)
    for line in err.decode().splitlines():
        json.loads(line)
    peak = summary_of(err)["peak_rss"]
    assert peak < 100 << 20, f"peak RSS {peak / 2**20:.0f} MiB with 40 clients"


def test_linger_comes_after_the_summary_and_ctrl_c_ends_it(tmp_path):
    dsk("create", "ones", tmp_path / "x.zarr", "--shape", "100,100", "--chunks", "50,50", "-q")
    proc = subprocess.Popen([DSK, "transform", tmp_path / "x.zarr", tmp_path / "y.zarr", "--expr", "x + 1",
                             "--dashboard=127.0.0.1:0", "--dashboard-linger", "60"],
                            stderr=subprocess.PIPE, start_new_session=True)
    lines = []
    try:
        while True:
            line = proc.stderr.readline().decode()
            assert line, "".join(lines)
            lines.append(line)
            if "stays up" in line:
                break
        # the run's summary is shown at once, not after the linger
        assert any(l.startswith("dsk: wrote") for l in lines), "".join(lines)
        url = re.search(r"(http://\S+/)", lines[-1]).group(1)
        assert json.loads(urllib.request.urlopen(url + "state", timeout=10).read())["status"] == "done"
        t0 = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
        assert time.time() - t0 < 5
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_an_address_given_is_used_or_refused(tmp_path):
    import socket

    dsk("create", "ones", tmp_path / "x.zarr", "--shape", "10", "--chunks", "5", "-q")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = dsk("reduce", tmp_path / "x.zarr", "--op", "sum", f"--dashboard=127.0.0.1:{port}", ok=False)
        assert r.returncode == 2 and "--dashboard" in r.stderr.decode(), r.stderr.decode()
    r = dsk("reduce", tmp_path / "x.zarr", "--op", "sum", "--dashboard-linger", "5", ok=False)
    assert r.returncode == 2 and "--dashboard-linger" in r.stderr.decode()
