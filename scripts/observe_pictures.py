"""Make the pictures of docs/observe.md from real runs of the lesson (`make pictures`).

- docs/img/dashboard.png: the live dashboard during the lesson's (cos(x)**2).mean(axis=1) over a
  generated random (200000, 4000) array, taken in headless chromium while the run goes on;
- docs/img/report-chunks-1000.png and report-chunks-3125.png: the saved --report of the lesson's
  (cos(x)**2).mean(axis=1) over a generated random (200000, 4000) array with (1000, 1000) chunks and
  with ~100 MB (3125, 4000) chunks — the lesson's chunk-size exercise (its big_calc over ones
  reports the same way, with less to see: ones are never materialised).

Uses the release build (target/release/dsk) and Debian's chromium through Playwright.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
DSK = os.environ.get("DSK", str(ROOT / "target" / "release" / "dsk"))
IMG = ROOT / "docs" / "img"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def row_means(chunks):
    return f"(cos(random((200000, 4000), chunks=({chunks})))**2).mean(axis=1)"


def main():
    chromium = shutil.which("chromium")
    if not chromium:
        sys.exit("chromium is not installed (apt-get install chromium)")
    IMG.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d, sync_playwright() as p:
        d = Path(d)
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        # the dashboard, mid-run
        expr = row_means("1000, 1000")
        proc = subprocess.Popen([DSK, "eval", expr, "-o", str(d / "means.zarr"), "--dashboard=127.0.0.1:0"],
                                stderr=subprocess.PIPE, text=True)
        url = None
        for line in proc.stderr:
            m = re.search(r"dashboard at (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#stream rect.task').length > 60", timeout=60_000)
        time.sleep(0.5)
        page.screenshot(path=str(IMG / "dashboard.png"), full_page=False)
        proc.wait(timeout=300)
        # the chunk-size exercise: two reports
        for chunks, name in (("1000, 1000", "report-chunks-1000.png"), ("3125, 4000", "report-chunks-3125.png")):
            report = d / f"{name}.html"
            subprocess.run([DSK, "eval", row_means(chunks), "-o", str(d / f"{name}.zarr"), "--report", str(report)],
                           check=True)
            page.goto(report.as_uri())
            page.wait_for_selector("#stream rect.task")
            page.screenshot(path=str(IMG / name), full_page=False)
        browser.close()
    print("wrote", ", ".join(str(p.relative_to(ROOT)) for p in sorted(IMG.glob("*.png"))))


if __name__ == "__main__":
    main()
