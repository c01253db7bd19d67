"""The memory bound holds for every command and scheduler, for the whole process tree.

Each command runs with a small --memory and many --workers (so the bound, not the worker count,
limits what runs at once) and reports, in its `--progress json` summary, the peak resident set
(VmHWM) of the parent and of the largest `dsk worker` child, and how many children ran at once.
The tree's peak is at most parent + children x largest child, and must stay within

    --memory + (1 + children) x (BASELINE + SLACK) + workers x THREAD

where BASELINE is the peak of a dsk process that computes nothing (`dsk eval 1+1`, measured here
with the same binary: the binary's pages, the allocator), SLACK the per-process overhead
docs/commands.md states beyond it (codec contexts, I/O buffers, allocator granularity) and THREAD
the stack, allocator cache and decompressor buffers of each worker thread. The tree's peak is the parent's plus, for the
stage whose worker processes peaked highest together, the sum of their peaks.
"""

import json
import subprocess

import pytest
from helpers import DSK, dsk

MiB = 1 << 20
SLACK = 4 * MiB
# a worker thread's stack and allocator cache, and c-blosc's block buffers while it decodes
THREAD = MiB
WORKERS = 8

COMMANDS = {
    "create": ["create", "random", "c.zarr", "--shape", "1200,1000", "--chunks", "300,250", "--dist", "normal"],
    "transform": ["transform", "m.zarr", "t.zarr", "--expr", "cos(x)**2"],
    "eval-mirror": ["eval", "(x * x[::-1, ::-1]).mean()", "x=m.zarr"],
    "eval-anomaly": ["eval", "(x - x.mean(axis=0)).max()", "x=m.zarr"],
    "reduce": ["reduce", "m.zarr", "r.zarr", "--op", "std", "--axis", "1"],
    "cumsum": ["eval", "x.cumsum(axis=0)", "x=m.zarr", "-o", "cs.zarr"],
    "rechunk": ["rechunk", "m.zarr", "rc.zarr", "--chunks", "1200,10"],
    "rechunk-2pass": ["rechunk", "m.zarr", "r2.zarr", "--chunks", "120,100"],
    "rechunk-coprime": ["rechunk", "m.zarr", "r3.zarr", "--chunks", "1199,7"],
    "export": ["export", "m.zarr", "-o", "e.npy"],
    "eval-file": ["eval", "x * 2", "x=m.zarr", "-o", "e2.csv"],
}


def summary(stderr):
    lines = [json.loads(l) for l in stderr.decode().splitlines() if l.startswith("{")]
    s = [l for l in lines if l.get("event") == "summary"]
    assert s, f"no summary event in:\n{stderr.decode()}"
    return s[-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("mem")
    # chunks of 600 KB: a few tasks fill the bound
    dsk("create", "random", "m.zarr", "--shape", "1200,1000", "--chunks", "300,250", "--dist", "normal", cwd=d)
    base = summary(dsk("eval", "1 + 1", "--progress", "json", cwd=d).stderr)["peak_rss"]
    return d, base


@pytest.mark.parametrize("memory", ["5MiB", "9MiB"])
@pytest.mark.parametrize("scheduler", ["threads", "processes"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_peak_stays_within_the_bound(data, name, scheduler, memory, tmp_path):
    d, base = data
    args = [a.replace("m.zarr", str(d / "m.zarr")) for a in COMMANDS[name]]
    r = subprocess.run([DSK, *args, "--memory", memory, "--workers", str(WORKERS), "--scheduler", scheduler,
                        "--progress", "json"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    s = summary(r.stderr)
    bound = int(memory[:-3]) * MiB
    children = s.get("workers") or 0
    tree = s["peak_rss"] + (s.get("workers_peak_rss_sum") or 0)
    allowed = bound + (1 + children) * (base + SLACK) + WORKERS * THREAD
    assert tree <= allowed, (
        f"{name} under {scheduler} --memory {memory}: peak {tree / MiB:.1f} MiB "
        f"(parent {s['peak_rss'] / MiB:.1f}, {children} workers, largest {((s.get('workers_peak_rss') or 0)) / MiB:.1f}) "
        f"> {allowed / MiB:.1f} MiB (baseline {base / MiB:.1f} MiB)")
    if scheduler == "processes" and name not in ("export",):
        assert children >= 1, "the processes scheduler ran no worker process"
