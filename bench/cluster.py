"""What running on a cluster costs here: dsk's plans through --executor slurm (a real single-node
Slurm) and --executor dask (a real scheduler with two workers on loopback) against the same command
run locally, written to docs/benchmarks-cluster.md.

  make bench-cluster            # builds dsk (release), uses the test venv (.venv: dask.distributed, dsk_dask)

Measured, each a whole dsk process timed from outside (wall, peak RSS of the driver; the workers'
peak from dsk's JSON summary), medians of --reps runs in turn (local, slurm, dask):
- a one-task stage: the fixed cost of a stage (submission to completion);
- a plan of several stages on a tiny array: the cost of each dependency hop;
- one stage cut into 64 one-task jobs: the cost of a job (process start, plan and array opening);
- the lesson's transform cos(x)**2 on a 160 MB array, as one job and as jobs of 10 tasks.
From these, the projection in docs/cluster.md for 100 and 1,000 nodes.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "interop"))
from clusterutil import DaskCluster, Slurm  # noqa: E402

DSK = os.path.join(ROOT, "target", "release", "dsk")
DOC = os.path.join(ROOT, "docs", "benchmarks-cluster.md")


def timed(args, cwd, env):
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", DSK, *args, "--progress", "json"], cwd=cwd, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"dsk {' '.join(args)} failed:\n{r.stderr}")
    lines = r.stderr.strip().splitlines()
    rss = int(lines[-1]) * 1024
    summary = next((json.loads(l) for l in reversed(lines) if '"summary"' in l), {})
    return wall, rss, summary.get("workers_peak_rss")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dsk-bench-cluster-")
    slurm = Slurm(os.path.join(tmp, "slurm"))
    os.makedirs(slurm.dir)
    slurm.start()
    os.makedirs(os.path.join(tmp, "dask"))
    dask = DaskCluster(os.path.join(tmp, "dask")).start()
    try:
        d = os.path.join(tmp, "data")
        os.makedirs(os.path.join(d, "wd"))
        env = dict(slurm.env, DSK_PYTHON=sys.executable)
        subprocess.run([DSK, "create", "random", "tiny.zarr", "--shape", "80,80", "--chunks", "10,10", "-q"],
                       cwd=d, check=True)
        subprocess.run([DSK, "create", "random", "one.zarr", "--shape", "10,10", "-q"], cwd=d, check=True)
        subprocess.run([DSK, "create", "random", "x.zarr", "--shape", "5000,4000", "--chunks", "1000,1000",
                        "--dist", "normal", "-q"], cwd=d, check=True)
        cases = [
            ("one-task stage", ["transform", "one.zarr", "o.zarr", "--expr", "x + 1"], []),
            ("several stages, tiny", ["eval", "(x - x.mean()).std(axis=0)", "x=tiny.zarr", "-o", "o.zarr"], []),
            ("64 one-task jobs", ["transform", "tiny.zarr", "o.zarr", "--expr", "x + 1"], ["--tasks-per-job", "1"]),
            ("cos(x)**2, 160 MB, 20 tasks: one job", ["transform", "x.zarr", "o.zarr", "--expr", "cos(x)**2"], []),
            ("cos(x)**2, 160 MB, 20 tasks: jobs of 2",
             ["transform", "x.zarr", "o.zarr", "--expr", "cos(x)**2"], ["--tasks-per-job", "2"]),
        ]
        executors = {
            "local": [],
            "slurm": ["--executor", "slurm", "--work-dir", "wd"],
            "dask": ["--executor", "dask", "--scheduler-address", dask.address],
        }
        rows = []
        for name, args, extra in cases:
            plan = json.loads(subprocess.run([DSK, *args, "--scheduler", "processes", "--explain", "json"], cwd=d,
                                             capture_output=True, text=True, check=True).stdout)
            stages = len([s for s in plan["stages"] if not s.get("local")])
            tasks = sum(s["tasks"] for s in plan["stages"])
            got = {k: [] for k in executors}
            for _ in range(a.reps):
                for ex, flags in executors.items():
                    shutil.rmtree(os.path.join(d, "o.zarr"), ignore_errors=True)
                    got[ex].append(timed([*args, *flags, *(extra if ex != "local" else [])], d, env))
                    slurm.wait_idle()
            med = {k: statistics.median(w for w, _, _ in v) for k, v in got.items()}
            rss = {k: max(r for _, r, _ in v) for k, v in got.items()}
            wpk = {k: max((p or 0) for _, _, p in v) for k, v in got.items()}
            rows.append((name, stages, tasks, med, rss, wpk, got))
            print(name, {k: round(v, 2) for k, v in med.items()}, flush=True)
    finally:
        dask.stop()
        slurm.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    mib = lambda b: f"{b / 2**20:.0f} MiB"  # noqa: E731
    out = [
        "# Cluster executors: what a cluster costs here",
        "",
        f"Generated by `make bench-cluster` (bench/cluster.py) on {datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} cores; dsk release build. Slurm 22.05 single node (scripts/slurm-up.sh: "
        "`sched_interval=1`), Dask distributed 2026.8 (a scheduler and 2 workers × 2 threads on loopback). "
        f"Median wall of {a.reps} runs in turn; driver peak RSS (max); workers' peak RSS from dsk's summary.",
        "",
        "| case | stages | tasks | local | slurm | dask | slurm − local | dask − local | peak RSS driver (slurm / dask) | worker peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, stages, tasks, med, rss, wpk, _ in rows:
        out.append(
            f"| {name} | {stages} | {tasks} | {med['local']:.2f} s | {med['slurm']:.2f} s | {med['dask']:.2f} s | "
            f"{med['slurm'] - med['local']:+.2f} s | {med['dask'] - med['local']:+.2f} s | "
            f"{mib(rss['slurm'])} / {mib(rss['dask'])} | {mib(max(wpk['slurm'], wpk['dask']))} |"
        )
    one = rows[0][3]
    hop = (rows[1][3]["slurm"] - rows[0][3]["slurm"]) / max(rows[1][1] - 1, 1)
    dhop = (rows[1][3]["dask"] - rows[0][3]["dask"]) / max(rows[1][1] - 1, 1)
    per_job = (rows[2][3]["slurm"] - one["slurm"]) / 64 * 2  # 2 cores run jobs side by side
    dper_job = (rows[2][3]["dask"] - one["dask"]) / 64 * 4  # 4 Dask threads
    out += [
        "",
        "Derived (used by docs/cluster.md):",
        "",
        f"- a stage's fixed cost (one task, submission to completion, minus the local run): "
        f"Slurm {one['slurm'] - one['local']:.2f} s, Dask {one['dask'] - one['local']:.2f} s;",
        f"- each further dependent stage: Slurm {max(hop, 0):.2f} s, Dask {max(dhop, 0):.2f} s "
        "(0.00: below the noise of the runs);",
        f"- each job (array index or Dask task: process start, plan and arrays opened), per slot: "
        f"Slurm {per_job:.2f} s, Dask {dper_job:.2f} s.",
        "",
    ]
    with open(DOC, "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
