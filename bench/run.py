"""Side-by-side benchmarks of dsk and its peers (Dask; Cubed where it applies), written to
docs/benchmarks.md.

  make bench                       # from the repository root: builds dsk, sets up bench/.venv, runs all
  bench/.venv/bin/python bench/run.py --reps 5 --only create

Every run is a whole process timed from outside with /usr/bin/time (wall clock and peak RSS =
VmHWM), so start-up, imports and teardown count for every tool alike. Runs of the tools in a
workload are interleaved (dsk, peer, dsk, peer, ...) and each is preceded by deleting its output
(untimed), so that all tools meet the same page-cache state; medians are reported with the range.
The machine's limits (zstd throughput, buffered-write speed) are measured in the same run.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import codec_bench  # bench/codec_bench.py, next to this file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DSK = os.path.join(ROOT, "target", "release", "dsk")
PY = sys.executable
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
# every measurement behind docs/benchmarks.md (committed, so that `--merge` keeps the other workloads)
LAST = os.path.join(ROOT, "docs", "benchmarks.json")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, **kw)


def timed(cmd, cwd):
    """Run `cmd` under /usr/bin/time -v; return (wall seconds, peak RSS bytes, CPU seconds (user +
    system), stdout)."""
    env = dict(os.environ, BENCH_DATA=cwd)
    # wall clock measured here (time's own has 10 ms steps; folded runs take a few ms)
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", r.stderr).group(1)) for k in ("User", "System"))
    return secs, rss_kb * 1024, cpu, r.stdout


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    flags = open("/proc/cpuinfo").read()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "baseline"
    return f"{os.cpu_count()} cores ({cpu}, {simd}), {mem / 2**30:.0f} GiB RAM, Linux {platform.release()}"


def versions():
    import dask
    import numpy
    import zarr

    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = "+changes" if sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"]).stdout.strip() else ""
    rustc = sh(["rustc", "--version"]).stdout.strip()
    return {
        "dsk": f"{sh([DSK, '--version']).stdout.strip().removeprefix('dsk ')} (git {rev}{dirty}), {rustc}",
        "dask": dask.__version__,
        "zarr-python": zarr.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------ machine limits


def limit_zstd(data_dir):
    """zstd encode throughput per core on one (1000, 1000) random-normal float64 chunk."""
    import numcodecs
    import numpy as np

    raw = np.random.default_rng(0).standard_normal((1000, 1000)).tobytes()
    out = {}
    for level in (1, 3):
        c = numcodecs.Zstd(level=level)
        ts = []
        for _ in range(7):
            t = time.perf_counter()
            c.encode(raw)
            ts.append(time.perf_counter() - t)
        out[level] = len(raw) / statistics.median(ts)
    return out


def limit_bandwidth():
    """Memory bandwidth: numpy sum of a 1 GB float64 array split over all cores (threads)."""
    import threading

    import numpy as np

    a = np.random.default_rng(0).standard_normal(10**9 // 8)
    parts = np.array_split(a, os.cpu_count())

    def once():
        ts = [threading.Thread(target=p.sum) for p in parts]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    once()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        once()
        times.append(time.perf_counter() - t)
    return a.nbytes / statistics.median(times)


def limit_decode():
    """zstd decode throughput per core (numcodecs) of one random-normal chunk compressed at level 3."""
    import numcodecs
    import numpy as np

    raw = np.random.default_rng(0).standard_normal((1000, 1000)).tobytes()
    comp = numcodecs.Zstd(level=3).encode(raw)
    c = numcodecs.Zstd()
    ts = []
    for _ in range(15):
        t = time.perf_counter()
        c.decode(comp)
        ts.append(time.perf_counter() - t)
    return len(raw) / statistics.median(ts)


def limit_write(data_dir, nbytes):
    """Buffered write of `nbytes` of fresh files (8 MB each, like chunks), page cache as the runs see it."""
    d = os.path.join(data_dir, "write_probe")
    remove(d)
    os.makedirs(d)
    buf = os.urandom(8 << 20)
    t = time.perf_counter()
    for i in range(nbytes // len(buf)):
        with open(os.path.join(d, str(i)), "wb") as f:
            f.write(buf)
    dt = time.perf_counter() - t
    remove(d)
    return nbytes / dt


# ------------------------------------------------------------------ workloads


def w_create(args, data):
    """dsk create random (normal) vs Dask da.random...normal().to_zarr(), (50000, 4000) f8, chunks 1000²."""
    shape, chunks = "50000,4000", "1000,1000"
    out_dsk = os.path.join(data, "create_dsk.zarr")
    out_dsk3 = os.path.join(data, "create_dsk3.zarr")
    out_dask = os.path.join(data, "create_dask.zarr")
    runs = [
        ("dsk", "zstd level 1 (dsk default)", out_dsk,
         [DSK, "create", "random", out_dsk, "--shape", shape, "--chunks", chunks, "--dist", "normal", "--seed", "42", "-q"]),
        ("dsk", "zstd level 3 (zarr-python's default)", out_dsk3,
         [DSK, "create", "random", out_dsk3, "--shape", shape, "--chunks", chunks, "--dist", "normal", "--seed", "42",
          "--codec", "zstd:3", "-q"]),
        ("dask", "threads, zarr-python defaults (zstd level 0 = 3)", out_dask,
         [PY, os.path.join(HERE, "peers", "create_dask.py"), out_dask, "--shape", shape, "--chunks", chunks]),
    ]
    return "create", "`create random --dist normal`, (50000, 4000) float64, chunks (1000, 1000), 1.6 GB", runs


def ensure_input(data):
    """The on-disk input of the compute workloads, written once by zarr-python (untimed)."""
    path = os.path.join(data, "x_zstd.zarr")
    if not os.path.exists(os.path.join(path, "zarr.json")):
        print("writing the input array with zarr-python (once)...", flush=True)
        subprocess.run([PY, os.path.join(HERE, "peers", "make_data.py"), data], check=True)
    return path


def w_transform(args, data):
    """dsk transform cos(x)**2 vs Dask (np.cos(x)**2).to_zarr()."""
    x = ensure_input(data)
    out_dsk, out_dask = os.path.join(data, "cos2_dsk.zarr"), os.path.join(data, "cos2_dask.zarr")
    runs = [
        ("dsk", "--memory 512MiB", out_dsk,
         [DSK, "transform", x, out_dsk, "--expr", "cos(x)**2", "--memory", "512MiB", "-q"]),
        ("dask", "threads", out_dask, [PY, os.path.join(HERE, "peers", "ops_dask.py"), x, out_dask, "--op", "cos2"]),
    ]
    return "transform", "`transform --expr 'cos(x)**2'` of the (50000, 4000) float64 zstd array (1.6 GB) to Zarr", runs


def w_flip(args, data):
    """dsk eval 'x * x[::-1, ::-1]' -o vs Dask (x * x[::-1, ::-1]).to_zarr()."""
    x = ensure_input(data)
    out_dsk, out_dask = os.path.join(data, "flip_dsk.zarr"), os.path.join(data, "flip_dask.zarr")
    runs = [
        ("dsk", "--memory 512MiB", out_dsk,
         [DSK, "eval", "x * x[::-1, ::-1]", f"x={x}", "-o", out_dsk, "--memory", "512MiB", "-q"]),
        ("dask", "threads", out_dask, [PY, os.path.join(HERE, "peers", "ops_dask.py"), x, out_dask, "--op", "flip"]),
    ]
    return "flip", "`eval 'x * x[::-1, ::-1]' -o` on the same array", runs


LESSON = os.path.join(HERE, "peers", "lesson")
GEN = "(200000, 4000), chunks=(1000, 1000)"


def w_w1(args, data):
    """W1: (x * x[::-1, ::-1]).mean() over generated x = ones / random (200000, 4000)."""
    runs = []
    for kind in ("ones", "random"):
        x = f"{kind}({GEN})"
        runs.append(("dsk", f"x = {kind}", None, [DSK, "eval", f"({x} * {x}[::-1, ::-1]).mean()", "-q"]))
        if kind == "ones":
            # what folding saves: the same plan computed element by element
            runs.append(("dsk", "x = ones, folding off", None,
                         ["env", "DSK_NO_FOLD=1", DSK, "eval", f"({x} * {x}[::-1, ::-1]).mean()", "-q"]))
    for kind in ("ones", "random"):
        runs.append(("dask", f"x = {kind}", None, [PY, os.path.join(HERE, "peers", "lesson_gen.py"), "W1", kind]))
    return "W1", "W1 `(x * x[::-1, ::-1]).mean()`, x generated (200000, 4000) float64 in (1000, 1000) chunks (6.4 GB)", runs


def w_w2(args, data):
    """W2: (cos(x)**2).mean(axis=1) over generated x."""
    out = os.path.join(data, "w2_dsk.zarr")
    runs = []
    for kind in ("ones", "random"):
        x = f"{kind}({GEN})"
        runs.append(("dsk", f"x = {kind}", out, [DSK, "eval", f"(cos({x})**2).mean(axis=1)", "-o", out, "-q"]))
    for kind in ("ones", "random"):
        runs.append(("dask", f"x = {kind}", None, [PY, os.path.join(HERE, "peers", "lesson_gen.py"), "W2", kind]))
    return "W2", "W2 `(cos(x)**2).mean(axis=1)`, x generated as in W1", runs


def w_chunks(args, data):
    """The lesson's chunk-size exercise: W1 and W2 with (1000, 1000) chunks (8 MB) and with ~100 MB
    chunks (3125, 4000), and what recording a --report costs."""
    runs = []
    for chunks in ("1000, 1000", "3125, 4000"):
        gen = f"(200000, 4000), chunks=({chunks})"
        tag = chunks.replace(" ", "")
        name = chunks.replace(", ", "×") + " chunks"
        w1 = f"(ones({gen}) * ones({gen})[::-1, ::-1]).mean()"
        # dsk folds W1 of ones without computing it (W1's table): here every element is computed,
        # as in the lesson, to show what the chunk size and a report cost
        off = ["env", "DSK_NO_FOLD=1", DSK]
        runs.append(("dsk", f"W1 ones {name}, folding off", None, [*off, "eval", w1, "-q"]))
        report = os.path.join(data, f"report-w1-{tag}.html")
        runs.append(("dsk", f"W1 ones {name}, folding off, with --report", report,
                     [*off, "eval", w1, "-q", "--report", report]))
        runs.append(("dask", f"W1 ones {name}", None,
                     [PY, os.path.join(HERE, "peers", "lesson_gen.py"), "W1", "ones", tag]))
        w2 = f"(cos(random({gen}))**2).mean(axis=1)"
        out = os.path.join(data, "chunks_w2.zarr")
        runs.append(("dsk", f"W2 random {name}", out, [DSK, "eval", w2, "-o", out, "-q"]))
        runs.append(("dask", f"W2 random {name}", None,
                     [PY, os.path.join(HERE, "peers", "lesson_gen.py"), "W2", "random", tag]))
    return "chunks", "The lesson's chunk-size exercise: (1000, 1000) chunks (8 MB) against (3125, 4000) (100 MB)", runs


def w_w3(args, data):
    """W3: the two lesson computations on the on-disk zstd array, --memory 512MiB; Dask and Cubed."""
    x = ensure_input(data)
    env_py = [PY]
    out = os.path.join(data, "w3_dsk.zarr")
    runs = [
        ("dsk", "mean, --memory 512MiB", None, [DSK, "eval", "(x * x[::-1, ::-1]).mean()", f"x={x}", "--memory", "512MiB", "-q"]),
        ("dsk", "cos2, --memory 512MiB", out, [DSK, "eval", "(cos(x)**2).mean(axis=1)", f"x={x}", "-o", out, "--memory", "512MiB", "-q"]),
        ("dask", "mean", None, env_py + [os.path.join(LESSON, "W3.py"), "--op", "mean"]),
        ("dask", "cos2", None, env_py + [os.path.join(LESSON, "W3.py"), "--op", "cos2"]),
    ]
    if not args.no_cubed:
        runs += [
            ("cubed", "mean, processes, 2GB", None, env_py + [os.path.join(LESSON, "W3.py"), "--op", "mean", "--tool", "cubed", "--executor", "processes"]),
            ("cubed", "cos2, processes, 2GB", None, env_py + [os.path.join(LESSON, "W3.py"), "--op", "cos2", "--tool", "cubed", "--executor", "processes"]),
        ]
    return "W3", "W3 the lesson computations on the (50000, 4000) float64 zstd array on disk (1.6 GB)", runs


def w_sparse(args, data):
    """A sparse array (one chunk in ten stored): dsk folds the never-written chunks' tiles; the same
    with folding off (DSK_NO_FOLD=1), and Dask."""
    x = os.path.join(data, "x_sparse.zarr")
    if not os.path.exists(os.path.join(x, "zarr.json")):
        print("writing the sparse input with zarr-python (once)...", flush=True)
        subprocess.run([PY, os.path.join(HERE, "peers", "make_sparse.py"), data], check=True)
    runs = []
    for op, expr in (("mean", "x.mean()"), ("std axis 0", "x.std(axis=0)")):
        out = os.path.join(data, "sparse_dsk.npy")
        runs.append(("dsk", op, out, [DSK, "eval", expr, f"x={x}", "-o", out, "-q"]))
        runs.append(("dsk", f"{op}, folding off", out,
                     ["env", "DSK_NO_FOLD=1", DSK, "eval", expr, f"x={x}", "-o", out, "-q"]))
    for op, name in (("mean", "mean"), ("std0", "std axis 0")):
        runs.append(("dask", name, None, [PY, os.path.join(HERE, "peers", "sparse_dask.py"), x, "--op", op]))
    return ("sparse", "A sparse array: (50000, 4000) float64 in (1000, 1000) chunks, fill value 0, 20 of the 200 "
            "chunks stored (zstd)", runs)


def w_many(args, data):
    """Several results from one read: mean, std, min and max of the on-disk array (whole, and along
    axis 1) in one run — dsk's `reduce --op mean,std,min,max` against Dask's `dask.compute` of the
    four, and each tool running the four one at a time (the four reads a shared pass saves)."""
    x = ensure_input(data)
    runs = []
    for ax in (None, 1):
        where = "" if ax is None else " axis 1"
        out = None if ax is None else os.path.join(data, "many_dsk.zarr")
        axis = [] if ax is None else ["--axis", "1"]
        dst = [] if out is None else [out, "--overwrite"]
        runs.append(("dsk", f"mean+std+min+max{where}", out,
                     [DSK, "reduce", x, *dst, "--op", "mean,std,min,max", *axis, "--memory", "512MiB", "-q"]))
        peer = [PY, os.path.join(HERE, "peers", "many_dask.py"), x, *(["--axis", "1"] if ax is not None else [])]
        runs.append(("dask", f"mean+std+min+max{where}", None, peer))
    # the same four, one run each (whole array): what sharing the read saves
    for op in ("mean", "std", "min", "max"):
        runs.append(("dsk", f"{op} alone", None, [DSK, "reduce", x, "--op", op, "--memory", "512MiB", "-q"]))
        runs.append(("dask", f"{op} alone", None, [PY, os.path.join(HERE, "peers", "many_dask.py"), x, "--one", op]))
    return ("many", "Several results from one read: mean, std, min, max of the (50000, 4000) float64 zstd array "
            "(1.6 GB)", runs)


def w_w5(args, data):
    """W5: sum/mean/max/std along axis 0 and 1 of the on-disk array, one reduction per run."""
    x = ensure_input(data)
    runs = []
    for ax in (0, 1):
        for op in ("sum", "mean", "max", "std"):
            out = os.path.join(data, f"w5_{op}{ax}.zarr")
            runs.append(("dsk", f"{op} axis {ax}", out,
                         [DSK, "reduce", x, out, "--op", op, "--axis", str(ax), "--memory", "512MiB", "-q"]))
    for ax in (0, 1):
        for op in ("sum", "mean", "max", "std"):
            runs.append(("dask", f"{op} axis {ax}", None, [PY, os.path.join(LESSON, "W5.py"), "--op", op, "--axis", str(ax)]))
    return "W5", "W5 single reductions along axis 0 and 1 of the on-disk array", runs


def w_w4(args, data):
    """W4: rechunk (1000, 1000) → (50000, 10) of the on-disk array, --memory 512MiB."""
    x = ensure_input(data)
    out_dsk, out_dask = os.path.join(data, "w4_dsk.zarr"), os.path.join(data, "w4_dask.zarr")
    runs = [
        ("dsk", "--memory 512MiB", out_dsk, [DSK, "rechunk", x, out_dsk, "--chunks", "50000,10", "--memory", "512MiB", "-q"]),
        # too little memory for one pass: through the sharded intermediate in the work dir
        ("dsk", "--memory 64MiB (two passes)", out_dsk,
         [DSK, "rechunk", x, out_dsk, "--chunks", "50000,10", "--memory", "64MiB", "-q"]),
        ("dask", "threads", out_dask, [PY, os.path.join(HERE, "peers", "rechunk_dask.py"), x, out_dask]),
    ]
    if not args.no_cubed:
        runs.append(("cubed", "processes, 2GB", None,
                     [PY, os.path.join(LESSON, "W4.py"), "--tool", "cubed", "--executor", "processes"]))
    return "W4", "W4 rechunk (1000, 1000) → (50000, 10) of the on-disk array", runs


def w_s3(args, data):
    """W3 with the input on object storage: a local SeaweedFS S3 server; dsk (s3://) vs Dask
    (da.from_zarr with zarr-python's obstore store). Requests and bytes are read from the server's
    own counters around each run."""
    sys.path.insert(0, os.path.join(HERE, "peers"))
    import s3

    x = ensure_input(data)
    srv = s3.Weed(os.path.join(data, "s3server"))
    try:
        t = time.perf_counter()
        n = srv.upload(x, "x_zstd.zarr")
        print(f"  copied the input to S3 ({n} objects) in {time.perf_counter() - t:.1f} s", flush=True)
    except BaseException:
        srv.stop()
        raise
    os.environ.update(srv.env())
    url = "s3://bench/x_zstd.zarr"
    out_dsk, out_dask = os.path.join(data, "s3_cos2_dsk.zarr"), os.path.join(data, "s3_cos2_dask.zarr")
    peer = os.path.join(HERE, "peers", "s3_dask.py")
    # the same server 50 ms away: every request held that long by a proxy
    lag_port = s3._ports(1)[0]
    lag = subprocess.Popen([PY, os.path.join(HERE, "peers", "lagproxy.py"), str(lag_port), str(srv.s3), "0.05"])
    far = ["env", f"AWS_ENDPOINT_URL=http://127.0.0.1:{lag_port}"]
    mean = ["eval", "(x * x[::-1, ::-1]).mean()", f"x={url}", "--memory", "512MiB", "-q"]
    runs = [
        ("dsk", "mean, --memory 512MiB (8 workers, the default for remote arrays)", None, [DSK, *mean]),
        ("dsk", "mean, --memory 512MiB --workers 2", None, [DSK, *mean, "--workers", "2"]),
        ("dsk", "cos2, --memory 512MiB (8 workers)", out_dsk,
         [DSK, "eval", "(cos(x)**2).mean(axis=1)", f"x={url}", "-o", out_dsk, "--memory", "512MiB", "-q"]),
        ("dsk", "mean 50 ms away, --memory 512MiB (8 workers)", None, far + [DSK, *mean]),
        ("dask", "mean", None, [PY, peer, "x_zstd.zarr", "--op", "mean"]),
        ("dask", "cos2", out_dask, [PY, peer, "x_zstd.zarr", "--op", "cos2", "--out", out_dask]),
        ("dask", "mean 50 ms away", None, far + [PY, peer, "x_zstd.zarr", "--op", "mean"]),
    ]

    def close():
        lag.kill()
        srv.stop()
        for k in srv.env():
            os.environ.pop(k, None)

    title = ("S3: W3's computations with the (50000, 4000) float64 zstd input (1.6 GB, 200 chunks) on a local "
             "SeaweedFS S3 server")
    return "S3", title, runs, {"meter": srv.counters, "close": close}


def w_codecs(args, data):
    return "codecs", codec_bench.w_codecs(args, data, DSK, timed, remove, dur)


def w_pipeline(args, data):
    return "pipeline", codec_bench.w_pipeline(args, data, DSK, timed, remove, dur, PY)


def w_work(args, data):
    return "work", codec_bench.w_work(args, data, DSK, timed, remove, dur, ensure_input(data))


# workloads that render their own section (several tables, rows that are not one command each)
CUSTOM = {"codecs", "pipeline", "work"}

WORKLOADS = {"create": w_create, "transform": w_transform, "flip": w_flip, "W1": w_w1, "W2": w_w2, "chunks": w_chunks, "W3": w_w3, "sparse": w_sparse, "many": w_many,
             "W4": w_w4, "W5": w_w5, "S3": w_s3, "codecs": w_codecs, "pipeline": w_pipeline, "work": w_work}


def run_workload(fn, args, data):
    key, title, runs, *extra = fn(args, data)
    extra = extra[0] if extra else {}
    meter = extra.get("meter")
    traffic = {}
    results = {i: [] for i in range(len(runs))}
    try:
        for rep in range(args.reps):
            for i, (_tool, _label, out, cmd) in enumerate(runs):
                if out:
                    remove(out)
                before = meter() if meter and rep == 0 else None
                secs, rss, cpu, _ = timed(cmd, cwd=data)
                if before:
                    after = meter()
                    reqs = {k: after[0].get(k, 0) - before[0].get(k, 0) for k in after[0]}
                    traffic[i] = ({k: v for k, v in reqs.items() if v}, after[1] - before[1], after[2] - before[2],
                                  cpu, after[3] - before[3])
                results[i].append((secs, rss))
                print(f"  {key} rep {rep + 1}: {runs[i][0]} {runs[i][1]}: {dur(secs)}, {rss / 2**20:.0f} MiB", flush=True)
    finally:
        if extra.get("close"):
            extra["close"]()
    for _, _, out, _ in runs:
        if out:
            remove(out)
    rows = []
    for i, (tool, label, _, _) in enumerate(runs):
        walls = [r[0] for r in results[i]]
        rows.append({
            "tool": tool, "label": label, "median_s": statistics.median(walls), "min_s": min(walls),
            "max_s": max(walls), "peak_rss": max(r[1] for r in results[i]), "reps": len(walls),
        })
        if i in traffic:
            reqs, sent, recv, cpu, server_cpu = traffic[i]
            rows[-1]["requests"] = ", ".join(f"{v} {k}" for k, v in sorted(reqs.items()))
            rows[-1]["bytes_moved"] = f"{sent / 1e6:.0f} MB read, {recv / 1e6:.1f} MB written"
            rows[-1]["cpu"] = f"{cpu:.1f} s + server {server_cpu:.1f} s"
            rows[-1]["server_cpu_s"] = server_cpu
    return {"key": key, "title": title, "rows": rows}


def dur(s):
    """A duration as the tables print it: milliseconds below 0.1 s."""
    return f"{s * 1000:.0f} ms" if s < 0.1 else f"{s:.2f} s"


def ratios(rows):
    """For each dsk row, the peers' rows with the same configuration (first word(s) before a comma)."""
    def key(label):
        return label.split(",")[0].strip()
    lines = []
    for d in [r for r in rows if r["tool"] == "dsk"]:
        peers = [r for r in rows if r["tool"] != "dsk" and key(r["label"]) == key(d["label"])]
        if not peers and not any(key(r["label"]) == key(d2["label"]) for r in rows if r["tool"] != "dsk"
                                 for d2 in rows if d2["tool"] == "dsk"):
            # configurations are named differently: compare every dsk row with every peer
            peers = [r for r in rows if r["tool"] != "dsk"]
        for p in peers:
            lines.append(f"- {d['label']}: dsk {dur(d['median_s'])} vs {p['tool']} {dur(p['median_s'])} → "
                         f"**{p['median_s'] / d['median_s']:.{0 if p['median_s'] / d['median_s'] >= 100 else 1}f}×**; peak RSS {d['peak_rss'] / 2**20:.0f} MiB vs "
                         f"{p['peak_rss'] / 2**20:.0f} MiB")
    return "\n".join(lines)


def limit_fractions(w, lv):
    """What fraction of the machine's limit dsk reaches: memory bandwidth for the generated
    workloads (6.4 GB of logical float64 read once), zstd decoding for the on-disk ones."""
    lines = []
    for d in [r for r in w["rows"] if r["tool"] == "dsk"]:
        if w["key"] in ("W1", "W2") and d["median_s"] < 0.1:
            lines.append(f"- {d['label']}: folded when the plan is made (docs/reductions.md): no element is computed")
        elif w["key"] in ("W1", "W2") and lv.get("bandwidth"):
            rate = 6.4e9 / d["median_s"]
            lines.append(f"- {d['label']}: dsk streams {rate / 1e9:.1f} GB/s of logical data = "
                         f"{100 * rate / lv['bandwidth']:.0f}% of the measured memory bandwidth")
        if w["key"] in ("W4", "transform", "flip") and lv.get("decode_encode_floor_s"):
            f = lv["decode_encode_floor_s"]
            lines.append(f"- {d['label']}: decoding and re-encoding (zstd level 1) this array takes at least {f:.2f} s "
                         f"on this machine; dsk takes {d['median_s']:.2f} s = {100 * f / d['median_s']:.0f}% of that floor")
        if w["key"] == "S3" and lv.get("decode_floor_s") and d.get("server_cpu_s"):
            cores = os.cpu_count()
            dec = lv["decode_floor_s"] * cores
            floor = (d["server_cpu_s"] + dec) / cores
            lines.append(f"- {d['label']}: the S3 server shares this machine: it used {d['server_cpu_s']:.1f} CPU-s serving "
                         f"the array, and decoding it takes ≥ {dec:.1f} CPU-s, so no client finishes below "
                         f"{floor:.2f} s on {cores} cores; dsk takes {d['median_s']:.2f} s = "
                         f"{100 * floor / d['median_s']:.0f}% of that floor")
        if w["key"] in ("W3", "W5", "many") and lv.get("decode_floor_s"):
            lines.append(f"- {d['label']}: the zstd decode floor of this array is {lv['decode_floor_s']:.2f} s; "
                         f"dsk takes {d['median_s']:.2f} s = {100 * lv['decode_floor_s'] / d['median_s']:.0f}% of it")
    if w["key"] == "W4":
        one = [r for r in w["rows"] if r["tool"] == "dsk" and "two passes" not in r["label"]]
        two = [r for r in w["rows"] if r["tool"] == "dsk" and "two passes" in r["label"]]
        if one and two:
            lines.append(f"- two passes ({two[0]['label']}) take {two[0]['median_s'] / one[0]['median_s']:.2f}× the "
                         f"one-pass time ({dur(two[0]['median_s'])} vs {dur(one[0]['median_s'])}), peak RSS "
                         f"{two[0]['peak_rss'] / 2**20:.0f} MiB")
    return ("\n\nFraction of the machine's limit:\n\n" + "\n".join(lines)) if lines else ""


def render(report):
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); do not edit by hand. Whole-process wall time and peak RSS",
        "(VmHWM, from `/usr/bin/time -v`), medians over interleaved repetitions with the range; each run's",
        "output is deleted (untimed) before it starts. The machine is shared and noisy: compare rows of the",
        "same run, not across runs. A rechunk and the create → transform → reduce pipeline larger than RAM are in [benchmarks-large.md](benchmarks-large.md)",
        "(`make bench-large`).",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']}",
    ]
    for k, v in report["versions"].items():
        lines.append(f"- {k}: {v}")
    lines += ["", "## Machine limits (same run)", ""]
    for name, value in report["limits"].items():
        lines.append(f"- {name}: {value}")
    for w in report["workloads"]:
        if w.get("markdown"):
            # a section kept as it was rendered (measured on another machine or by an older bench)
            lines += ["", w["markdown"].rstrip("\n")]
            continue
        lines += ["", f"## {w['title']}", ""]
        if w.get("date") and w["date"] != report["date"]:
            lines += [f"(measured {w['date']}, in another run than the limits above)", ""]
        metered = any("requests" in r for r in w["rows"])
        head = "| tool | configuration | median wall | range | peak RSS |"
        lines += [head + (" requests (server's count) | bytes moved | CPU (first rep) |" if metered else ""),
                  "|---|---|---|---|---|" + ("---|---|---|" if metered else "")]
        for r in w["rows"]:
            lines.append(
                f"| {r['tool']} | {r['label']} | {dur(r['median_s'])} | {dur(r['min_s'])}–{dur(r['max_s'])} "
                f"| {r['peak_rss'] / 2**20:.0f} MiB |"
                + (f" {r.get('requests', '')} | {r.get('bytes_moved', '')} | {r.get('cpu', '')} |" if metered else ""))
        if w.get("note"):
            lines += ["", "Ratios (same run, medians):", "", w["note"]]
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only", default=",".join(WORKLOADS))
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA", os.path.join(HERE, "data")))
    ap.add_argument("--no-cubed", action="store_true", help="skip the (slow) Cubed runs")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other workloads of the last run (docs/benchmarks.json) in the report")
    ap.add_argument("--render-only", action="store_true",
                    help="rewrite docs/benchmarks.md from the last run's measurements (docs/benchmarks.json)")
    args = ap.parse_args()
    if args.render_only:
        with open(LAST) as f:
            report = json.load(f)
        lv = report.setdefault("limit_values", {})
        if "decode_encode_floor_s" not in lv:
            m = re.search(r"decode \+ level-1 encode of 1.6 GB ≥ ([0-9.]+) s", json.dumps(report["limits"], ensure_ascii=False))
            if m:
                lv["decode_encode_floor_s"] = float(m.group(1))
        for w in report["workloads"]:
            if not w.get("markdown"):
                w["note"] = ratios(w["rows"]) + limit_fractions(w, w.get("limit_values", lv))
        with open(DOC, "w") as f:
            f.write(render(report))
        print(f"wrote {DOC}")
        return
    os.makedirs(args.data, exist_ok=True)
    if not os.access(DSK, os.X_OK):
        sys.exit(f"{DSK} is missing: run `make release` first")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(),
        "limits": {},
        "workloads": [],
    }
    z = limit_zstd(args.data)
    ncores = os.cpu_count()
    report["limits"]["zstd encode, random normals, per core (numcodecs)"] = \
        f"level 1: {z[1] / 1e9:.2f} GB/s, level 3: {z[3] / 1e9:.2f} GB/s → 1.6 GB on {ncores} cores ≥ " \
        f"{1.6e9 / (z[1] * ncores):.2f} s (level 1), {1.6e9 / (z[3] * ncores):.2f} s (level 3)"
    dec = limit_decode()
    report["limits"]["zstd decode per core (numcodecs)"] = \
        f"{dec / 1e9:.2f} GB/s → decoding 1.6 GB on {ncores} cores ≥ {1.6e9 / (dec * ncores):.2f} s; " \
        f"decode + level-1 encode of 1.6 GB ≥ {(1.6e9 / dec + 1.6e9 / z[1]) / ncores:.2f} s"
    bw = limit_bandwidth()
    report["limits"]["memory bandwidth (numpy sum of 1 GB on all cores)"] = f"{bw / 1e9:.1f} GB/s"
    report["limit_values"] = {"bandwidth": bw, "decode_floor_s": 1.6e9 / (dec * ncores),
                              "decode_encode_floor_s": (1.6e9 / dec + 1.6e9 / z[1]) / ncores}
    wbps = limit_write(args.data, 1600 << 20)
    report["limits"]["buffered write of 1.6 GB in 8 MB files, one thread"] = f"{wbps / 1e9:.2f} GB/s ({1.6e9 / wbps:.2f} s)"
    for key in args.only.split(","):
        print(f"workload {key}", flush=True)
        if key in CUSTOM:
            _, md = WORKLOADS[key](args, args.data)
            w = {"key": key, "markdown": md + f"\n\n(measured {report['date']})\n"}
        else:
            w = run_workload(WORKLOADS[key], args, args.data)
        w["date"] = report["date"]
        w["limit_values"] = report["limit_values"]
        report["workloads"].append(w)
    last = LAST
    if args.merge and not os.path.exists(last):
        sys.exit(f"--merge: {last} is missing, so the other workloads' figures are unknown; run every workload")
    if args.merge:
        with open(last) as f:
            old = json.load(f)
        fresh = {w["key"] for w in report["workloads"]}
        kept = [w for w in old.get("workloads", []) if w["key"] not in fresh]
        for w in kept:
            w.setdefault("date", old.get("date"))
        order = list(WORKLOADS)
        report["workloads"] = sorted(kept + report["workloads"], key=lambda w: order.index(w["key"]) if w["key"] in order else len(order))
    for w in report["workloads"]:
        if not w.get("markdown"):
            w["note"] = ratios(w["rows"]) + limit_fractions(w, w.get("limit_values", report.get("limit_values", {})))
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write(render(report))
    with open(LAST, "w") as f:
        json.dump(report, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
