"""Every example in the docs and in `--help` runs, as written, and succeeds.

Each document (README.md, docs/*.md) is one session: its shell examples (the lines of its ```sh
code blocks that call dsk) run in order in a fresh directory, as a reader following along would run
them, with a few input files a reader is assumed to have (data.npy, measurements.npy, a.zarr, ...).
The `--help` examples of the subcommands form one session too (create, info, export, transform,
eval, reduce, rechunk, plot, in that order), and the top-level `dsk --help` examples another.

The examples use the lesson's sizes (a 6.4 GB array of ones, 1.6 GB of random numbers); the test
runs them on arrays 100x smaller by rewriting the sizes through SCALE (shapes, chunk shapes and
slices scaled together, so every example keeps its meaning). Nothing else in a line is changed.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from helpers import DSK

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")
                               if not p.name.startswith("benchmarks"))

# the lesson's sizes → test sizes (each pair keeps shapes, chunks and slices consistent)
SCALE = [
    ("200000,4000", "2000,400"), ("(200000, 4000)", "(2000, 400)"),
    ("50000,4000", "500,400"), ("(50000, 4000)", "(500, 400)"),
    ("50000,10", "500,10"), ("(50000, 10)", "(500, 10)"),
    ("10000,4000", "1000,400"), ("4000,4000", "400,400"),
    ("1000,1000", "100,100"), ("(1000, 1000)", "(100, 100)"),
    ("0:1000,", "0:100,"),
]


def scaled(line):
    for big, small in SCALE:
        line = line.replace(big, small)
    return line


def fixtures(d):
    """Inputs the examples assume a reader already has."""
    rng = np.random.default_rng(0)
    np.save(d / "data.npy", rng.standard_normal((800, 800)))
    np.save(d / "measurements.npy", rng.standard_normal((300, 200)))
    for name, a, chunks in [
        ("a.zarr", np.arange(20.0).reshape(4, 5), (2, 2)),
        ("b.zarr", np.arange(20.0).reshape(4, 5) * 10, (4, 5)),
        ("cube.zarr", rng.standard_normal((6, 5, 4)), (3, 5, 2)),
        ("climatology.zarr", rng.standard_normal(400), (100,)),
    ]:
        z = zarr.create_array(store=str(d / name), shape=a.shape, chunks=chunks, dtype=a.dtype)
        z[...] = a
    # a dataset as xarray writes it (consolidated, dimension names, units)
    import warnings

    import xarray as xr

    t2m = 250 + 30 * rng.random((12, 9, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"t2m": (("time", "lat", "lon"), t2m, {"units": "K"})}).to_zarr(d / "era5.zarr", mode="w")


def doc_examples(path):
    """The dsk command lines of the shell code blocks of a markdown file."""
    out, block = [], None
    for n, line in enumerate((ROOT / path).read_text().splitlines(), 1):
        if line.startswith("```"):
            block = None if block is not None else line[3:].strip()
            continue
        if block in ("sh", "bash", "shell", "") and re.search(r"(^|[|(]\s*)dsk ", line.strip()):
            out.append((n, line.strip()))
    return out


def help_examples(*cmd):
    # at the widest rendering (max_term_width = 100): narrower terminals wrap long examples
    env = dict(os.environ, COLUMNS="100")
    text = subprocess.run([DSK, *cmd, "--help"], capture_output=True, text=True, check=True, env=env).stdout
    lines = text.split("Examples:", 1)[1].splitlines() if "Examples:" in text else []
    return [l.strip() for l in lines if l.strip().startswith("dsk ")]


def run_session(d, examples, extra_env=None):
    bindir = d / ".bin"
    bindir.mkdir()
    os.symlink(os.path.abspath(DSK), bindir / "dsk")
    # dsk, and the python of the test venv (with NumPy) for the examples that pipe from Python
    (bindir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python").chmod(0o755)
    env = dict(extra_env or os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    failures = []
    for where, line in examples:
        cmd = scaled(line)
        r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=d, env=env, capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            failures.append(f"{where}: {line}\n    ran: {cmd}\n    exit {r.returncode}: {r.stderr.strip()}")
    assert not failures, "examples that fail:\n" + "\n".join(failures)


@pytest.mark.parametrize("doc", DOCS)
def test_doc_examples_run(doc, tmp_path):
    examples = [(f"{doc}:{n}", l) for n, l in doc_examples(doc)]
    if not examples:
        pytest.skip(f"{doc} has no dsk examples")
    fixtures(tmp_path)
    if doc == "docs/cluster.md":
        # its session runs on a single-node Slurm and a Dask cluster started here, with the
        # page's sample config as cluster.ini and `scratch` as the shared work dir
        from clusterutil import DaskCluster, Slurm

        (tmp_path / "scratch").mkdir()
        text = (ROOT / doc).read_text()
        (tmp_path / "cluster.ini").write_text(text.split("```ini\n", 1)[1].split("```", 1)[0])
        (tmp_path / "slurm").mkdir()
        (tmp_path / "dask").mkdir()
        slurm = Slurm(tmp_path / "slurm").start()
        try:
            dask = DaskCluster(tmp_path / "dask").start()
            try:
                env = dict(slurm.env, DASK_SCHEDULER=dask.address, DSK_PYTHON=sys.executable)
                run_session(tmp_path, examples, env)
            finally:
                dask.stop()
        finally:
            slurm.stop()
        return
    if doc == "docs/cloud.md":
        # its session runs against a local S3 server with the bucket the page uses
        from s3util import s3_env, start_server

        srv = start_server(tmp_path / "s3server", buckets=("my-bucket",))
        try:
            run_session(tmp_path, examples, s3_env(srv.endpoint, tmp_path))
        finally:
            srv.stop()
        return
    run_session(tmp_path, examples)


def test_help_examples_run(tmp_path):
    fixtures(tmp_path)
    examples = []
    for cmd in ["create", "info", "ls", "export", "transform", "eval", "reduce", "rechunk", "graph", "plot",
                "completions", "man"]:
        ex = help_examples(cmd)
        assert ex, f"dsk {cmd} --help has no examples"
        examples += [(f"dsk {cmd} --help", l) for l in ex]
    run_session(tmp_path, examples)


def test_top_level_help_examples_run(tmp_path):
    run_session(tmp_path, [("dsk --help", l) for l in help_examples()])


def test_examples_makefile_rebuilds_only_what_is_stale(tmp_path):
    """examples/Makefile: arrays are targets, a second make does nothing, a changed input reruns
    the steps after it."""
    work = tmp_path / "ex"
    shutil.copytree(ROOT / "examples", work, ignore=shutil.ignore_patterns("*.rs"))
    make = ["make", "-C", str(work), f"DSK={os.path.abspath(DSK)}", "SHAPE=400,60", "CHUNKS=100,25"]
    first = subprocess.run(make, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "expected (1 + exp(-2)) / 2" in first.stdout
    mean = float(first.stdout.split("normal values: ")[1].split()[0])
    assert abs(mean - (1 + np.exp(-2)) / 2) < 0.02
    again = subprocess.run(make, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "dsk" not in again.stdout.replace("DSK=", ""), again.stdout
    os.utime(work / "cos2.zarr/zarr.json")
    third = subprocess.run(make, capture_output=True, text=True, timeout=300)
    assert "create random" not in third.stdout and "transform" not in third.stdout
    assert "reduce cos2.zarr row_means.zarr" in third.stdout
    # a step that fails leaves no target make would take as done
    (work / "cos2.zarr/c/1/1").write_bytes(b"garbage")
    (work / "summary.txt").unlink()
    broken = subprocess.run(make, capture_output=True, text=True, timeout=300)
    assert broken.returncode != 0 and not (work / "summary.txt").exists()
    # the names given to x reach the row means (the reduced axis dropped)
    assert zarr.open_array(work / "row_means.zarr").metadata.dimension_names == ("time",)


def test_tutorial_is_what_its_commands_print():
    """docs/tutorial.md is generated (make docs): run its commands again and compare, timings
    aside."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts/tutorial.py"), "--dsk", os.path.abspath(DSK), "--check"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
