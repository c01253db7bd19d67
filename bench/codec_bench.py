"""The codec workloads of `make bench` (bench/run.py): which codec dsk writes, chosen by measurement.

- `codecs`: every codec pipeline dsk can write, over several kinds of data: ratio and per-core
  encode/decode speed of one chunk in memory (numcodecs, the same C libraries), then whole arrays
  written and read back through dsk itself (wall, size on disk, peak RSS).
- `pipeline`: create → transform cos(x)**2 → reduce mean axis 1, three commands as a Makefile runs
  them, with dsk's default codec (`auto`), with zstd level 1 (the default before), and with Dask.
- `work`: the codec of intermediates and spills (DSK_WORK_CODEC), on the two-pass rechunk and on a
  reduction whose partials are spilled.
"""

import os
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, numcodecs constructor, dsk --codec)
PIPELINES = [
    ("zstd level 1", lambda nc: nc.Zstd(level=1), "zstd:1"),
    ("zstd level 3", lambda nc: nc.Zstd(level=3), "zstd:3"),
    ("blosc lz4, byte shuffle", lambda nc: nc.Blosc("lz4", 5, nc.Blosc.SHUFFLE), "blosc:lz4:5"),
    ("blosc lz4, bit shuffle", lambda nc: nc.Blosc("lz4", 5, nc.Blosc.BITSHUFFLE), "blosc:lz4:5:bitshuffle"),
    ("blosc zstd 1, byte shuffle", lambda nc: nc.Blosc("zstd", 1, nc.Blosc.SHUFFLE), "blosc:zstd:1"),
    ("blosc zstd 1, bit shuffle", lambda nc: nc.Blosc("zstd", 1, nc.Blosc.BITSHUFFLE), "blosc:zstd:1:bitshuffle"),
    ("gzip level 1", lambda nc: nc.GZip(level=1), "gzip:1"),
]


def chunks_in_memory():
    """One chunk of each kind of data, as NumPy arrays (name, array, what it is)."""
    import numpy as np

    rng = np.random.default_rng(0)
    i, j = np.meshgrid(np.arange(1000.0), np.arange(1000.0), indexing="ij")
    field = np.sin(i / 97) + np.cos(j / 61)
    kinds = [
        ("random normals", rng.standard_normal((1000, 1000)), "float64"),
        ("random uniform", rng.random((1000, 1000)), "float64 in [0, 1)"),
        ("smooth field", field + 0.5 * np.sin(i / 23 + j / 41), "float64, sum of sines"),
        ("integer labels", (np.floor(field * 3) + 6).astype(np.int32), "int32, 13 values in patches"),
        ("sparse mask", field > 1.6, "bool, 6% True"),
    ]
    try:
        import matplotlib.cbook

        z = matplotlib.cbook.get_sample_data("topobathy.npz")  # an NpzFile
        topo = z["topo"] if "topo" in z else z[list(z.keys())[0]]
        kinds.append(("real: topography", np.ascontiguousarray(topo), f"matplotlib's topobathy.npz, {topo.dtype} {topo.shape}"))
        import gzip

        with gzip.open(matplotlib.cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as f:
            mri = np.frombuffer(f.read(), np.uint16).reshape(256, 256)
        kinds.append(("real: MRI slice", mri.copy(), "matplotlib's s1045.ima.gz, uint16 (256, 256)"))
    except Exception as e:  # matplotlib is in bench/requirements.txt; say so if it is missing
        kinds.append(("real datasets", None, f"not measured: {e}"))
    return kinds


def table_memory():
    """Markdown: ratio, encode and decode GB/s per core for every pipeline and kind of data."""
    import numcodecs
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False
    lines = ["| data | codec | ratio | encode GB/s | decode GB/s |", "|---|---|---|---|---|"]
    for name, a, what in chunks_in_memory():
        if a is None:
            lines.append(f"| {name} | {what} | | | |")
            continue
        for label, make, _ in PIPELINES:
            c = make(numcodecs)
            enc = c.encode(a)
            te, td = [], []
            for _ in range(7):
                t = time.perf_counter()
                c.encode(a)
                te.append(time.perf_counter() - t)
                t = time.perf_counter()
                c.decode(enc)
                td.append(time.perf_counter() - t)
            lines.append(f"| {name} ({what}) | {label} | {a.nbytes / len(enc):.2f} | "
                         f"{a.nbytes / statistics.median(te) / 1e9:.2f} | {a.nbytes / statistics.median(td) / 1e9:.2f} |")
    return "\n".join(lines)


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


# whole arrays through dsk: (25000, 4000) in (1000, 1000) chunks
I = "(ones((4000, 25000), chunks=(1000, 1000)) * arange(25000)).T"
J = "arange(4000)"
KINDS = {
    "random normals": ["create", "random", None, "--shape", "25000,4000", "--chunks", "1000,1000", "--dist", "normal", "--seed", "1"],
    "smooth field": ["eval", f"sin({I} / 97) + cos({J} / 61) + 0.5 * sin({I} / 23 + {J} / 41)", "-o", None],
    "integer labels": ["eval", f"astype(floor((sin({I} / 97) + cos({J} / 61)) * 3) + 6, 'int32')", "-o", None],
    "sparse mask": ["eval", f"(sin({I} / 97) + cos({J} / 61) > 1.6) & ({I} < 3000)", "-o", None],
}
DSK_CODECS = [p[2] for p in PIPELINES if p[2] != "gzip:1"] + ["none", "auto"]


def w_codecs(args, data, dsk, timed, remove, dur):
    """Every codec dsk writes, whole arrays through dsk: write, size on disk, read (sum)."""
    rows = []
    for kind, tmpl in KINDS.items():
        for codec in DSK_CODECS + ["blosc:lz4:5 sharded"]:
            out = os.path.join(data, "codec_probe.zarr")
            cmd = [dsk] + [out if a is None else a for a in tmpl]
            extra = ["--codec", codec.split()[0]] + (["--shard", "5000,4000"] if "sharded" in codec else [])
            writes, reads, rss = [], [], 0
            size, chosen = 0, codec
            for _ in range(args.reps):
                remove(out)
                s, r, _, _ = timed(cmd + extra + ["-q"], cwd=data)
                writes.append(s)
                rss = max(rss, r)
                s, r, _, _ = timed([dsk, "reduce", out, "--op", "sum", "-q"], cwd=data)
                reads.append(s)
                rss = max(rss, r)
                size = du(out)
            if codec == "auto":
                info = subprocess.run([dsk, "info", out, "--json"], capture_output=True, text=True).stdout
                import json

                chosen = "auto → " + summarize(json.loads(info).get("codecs", []))
            remove(out)
            logical = 25000 * 4000 * {"integer labels": 4, "sparse mask": 1}.get(kind, 8)
            rows.append((kind, chosen, statistics.median(writes), statistics.median(reads), size, logical / max(size, 1), rss))
            print(f"  codecs: {kind}, {chosen}: write {dur(rows[-1][2])}, read {dur(rows[-1][3])}, "
                  f"{size / 1e6:.1f} MB", flush=True)
    lines = [
        "| data | codec | write | read (sum) | on disk | ratio | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, codec, w, r, size, ratio, rss in rows:
        lines.append(f"| {kind} | {codec} | {dur(w)} | {dur(r)} | {size / 1e6:.1f} MB | {ratio:.2f} | {rss / 2**20:.0f} MiB |")
    md = [
        "## Codecs: what dsk writes",
        "",
        "One chunk of each kind of data, in memory, one core, numcodecs (the C libraries dsk links:",
        "zstd, c-blosc); ratio = raw / compressed, speeds are of raw bytes, medians of 7:",
        "",
        table_memory(),
        "",
        "The same codecs through dsk: a (25000, 4000) array in (1000, 1000) chunks written by",
        "`dsk create random --dist normal` or `dsk eval -o` (float64: 800 MB, int32 labels: 400 MB,",
        "bool mask: 100 MB, 88% of its chunks all False and never written), then read whole by",
        f"`dsk reduce --op sum`; medians of {args.reps}. Sharded: shards of (5000, 4000).",
        "",
        *lines,
    ]
    return "\n".join(md)


def summarize(codecs):
    """The compressor of a zarr.json codec list, as a --codec value."""
    for c in codecs:
        name, conf = c.get("name"), c.get("configuration", {})
        if name == "zstd":
            return f"zstd:{conf.get('level')}"
        if name == "blosc":
            sh = conf.get("shuffle")
            return f"blosc:{conf.get('cname')}:{conf.get('clevel')}" + ("" if sh == "shuffle" else f":{sh}")
        if name not in ("bytes", "crc32c", "transpose"):
            return name
    return "none"


PIPE_KINDS = {
    "random": ["create", "random", "{x}", "--shape", "50000,4000", "--chunks", "1000,1000", "--seed", "1"],
    "smooth": ["eval",
               "sin((ones((4000, 50000), chunks=(1000, 1000)) * arange(50000)).T / 97) + cos(arange(4000) / 61)"
               " + 0.5 * sin((ones((4000, 50000), chunks=(1000, 1000)) * arange(50000)).T / 23 + arange(4000) / 41)",
               "-o", "{x}"],
}


def w_pipeline(args, data, dsk, timed, remove, dur, py):
    """create → transform → reduce, each its own process, dsk default vs zstd:1 vs Dask."""
    x, y, m = (os.path.join(data, f"pipe_{n}.zarr") for n in "xym")
    configs = []
    for kind, tmpl in PIPE_KINDS.items():
        for label, codec in (("dsk default (auto)", []), ("dsk --codec zstd:1", ["--codec", "zstd:1"])):
            configs.append((kind, label, [
                [dsk] + [a.format(x=x) for a in tmpl] + codec + ["-q"],
                [dsk, "transform", x, y, "--expr", "cos(x)**2", "-q"],
                [dsk, "reduce", y, m, "--op", "mean", "--axis", "1", "-q"],
            ]))
        peer = os.path.join(HERE, "peers", "pipeline_dask.py")
        configs.append((kind, "Dask (zarr-python defaults: zstd level 3)", [
            [py, peer, "create", kind, x], [py, peer, "transform", x, y], [py, peer, "reduce", y, m]]))
    results = {i: [] for i in range(len(configs))}
    for rep in range(args.reps):
        for i, (kind, label, steps) in enumerate(configs):
            for p in (x, y, m):
                remove(p)
            times, rss = [], 0
            for cmd in steps:
                s, r, _, _ = timed(cmd, cwd=data)
                times.append(s)
                rss = max(rss, r)
            results[i].append((times, rss, du(x), du(y)))
            print(f"  pipeline rep {rep + 1}: {kind}, {label}: {' + '.join(dur(t) for t in times)} = {dur(sum(times))}",
                  flush=True)
    for p in (x, y, m):
        remove(p)
    lines = ["| x | configuration | create | transform | reduce | total | x on disk | y on disk | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    totals = {}
    for i, (kind, label, _) in enumerate(configs):
        rs = results[i]
        med = [statistics.median(r[0][k] for r in rs) for k in range(3)]
        tot = statistics.median(sum(r[0]) for r in rs)
        totals[(kind, label)] = tot
        lines.append(f"| {kind} | {label} | {dur(med[0])} | {dur(med[1])} | {dur(med[2])} | **{dur(tot)}** "
                     f"| {rs[-1][2] / 1e9:.2f} GB | {rs[-1][3] / 1e9:.2f} GB | {max(r[1] for r in rs) / 2**20:.0f} MiB |")
    ratios = []
    for kind in PIPE_KINDS:
        d, z = totals[(kind, "dsk default (auto)")], totals[(kind, "dsk --codec zstd:1")]
        k = totals[(kind, "Dask (zarr-python defaults: zstd level 3)")]
        ratios.append(f"- x = {kind}: the default codec runs the pipeline **{z / d:.2f}×** faster than zstd level 1, "
                      f"and **{k / d:.2f}×** faster than Dask")
    return "\n".join([
        "## Pipeline: create → transform → reduce over dsk-written arrays",
        "",
        "Three commands, each its own process, as a Makefile runs them: x = `random` (uniform) or a",
        "smooth field (sum of sines) of (50000, 4000) float64 in (1000, 1000) chunks, 1.6 GB; then",
        "`transform --expr 'cos(x)**2'` (y keeps x's codec) and `reduce y --op mean --axis 1`. Totals",
        f"are medians of the three steps' sum over {args.reps} interleaved repetitions; peak RSS is the",
        "largest of the steps.",
        "",
        *lines,
        "",
        *ratios,
    ])


def w_work(args, data, dsk, timed, remove, dur, x):
    """Intermediates and spills with each DSK_WORK_CODEC: two-pass rechunk, spilled partials."""
    out = os.path.join(data, "work_probe.zarr")
    cases = [
        ("two-pass rechunk to (50000, 10), --memory 64MiB",
         [dsk, "rechunk", x, out, "--chunks", "50000,10", "--memory", "64MiB", "-q"]),
        ("mean along axis 1, --scheduler processes (partials spilled)",
         [dsk, "reduce", x, out, "--op", "mean", "--axis", "1", "--scheduler", "processes", "-q"]),
    ]
    lines = ["| run | intermediates | median wall | range | peak RSS |", "|---|---|---|---|---|"]
    for label, cmd in cases:
        res = {c: [] for c in ("none", "blosc:lz4:5", "zstd:1")}
        for _ in range(args.reps):
            for codec in res:
                remove(out)
                s, r, _, _ = timed(["env", f"DSK_WORK_CODEC={codec}"] + cmd, cwd=data)
                res[codec].append((s, r))
        remove(out)
        for codec, rs in res.items():
            w = [r[0] for r in rs]
            lines.append(f"| {label} | {codec}{' (default)' if codec == 'none' else ''} | {dur(statistics.median(w))} | "
                         f"{dur(min(w))}–{dur(max(w))} | {max(r[1] for r in rs) / 2**20:.0f} MiB |")
    return "\n".join([
        "## Intermediates and spills: their codec",
        "",
        "The work directory's arrays (the two-pass rechunk's intermediate, spilled partials) with each",
        "codec (`DSK_WORK_CODEC`), on the 1.6 GB zstd input of W3; interleaved, medians of "
        f"{args.reps}.",
        "",
        *lines,
    ])
