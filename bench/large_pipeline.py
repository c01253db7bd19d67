"""The three-step pipeline of `make bench` on an array larger than RAM (`make bench-large`).

create x → transform cos(x)**2 → reduce mean along axis 1, each step its own process as a Makefile
runs them, with dsk's default codec (auto), with dsk --codec zstd:1 and with Dask (zarr-python's
defaults, zstd level 3). One repetition each (a configuration takes minutes); x and y are deleted
between configurations so that the disk holds one pair at a time. Writes the section "A pipeline
larger than RAM" of docs/benchmarks-large.md, keeping the rest of the file.

  python bench/large_pipeline.py --dsk target/release/dsk --data bench/data/large \
      [--shape 100000,40000] [--chunks 2000,2000] [--kinds random,smooth] [--doc docs/benchmarks-large.md]
"""

import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import dur, remove, timed  # noqa: E402
from codec_bench import du  # noqa: E402

HEADER = "## A pipeline larger than RAM"


def kinds(shape, chunks):
    n, m = shape
    c = ",".join(map(str, chunks))
    ct = f"({chunks[1]}, {chunks[0]})"
    return {
        "random": ["create", "random", "{x}", "--shape", f"{n},{m}", "--chunks", c, "--seed", "1"],
        "smooth": ["eval",
                   f"sin((ones(({m}, {n}), chunks={ct}) * arange({n})).T / 97) + cos(arange({m}) / 61)"
                   f" + 0.5 * sin((ones(({m}, {n}), chunks={ct}) * arange({n})).T / 23 + arange({m}) / 41)",
                   "-o", "{x}"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsk", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--doc", default=os.path.join(HERE, "..", "docs", "benchmarks-large.md"))
    ap.add_argument("--shape", default="100000,40000")
    ap.add_argument("--chunks", default="2000,2000")
    ap.add_argument("--kinds", default="random,smooth")
    ap.add_argument("--no-zstd", action="store_true", help="skip the dsk --codec zstd:1 runs")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    chunks = tuple(int(v) for v in args.chunks.split(","))
    logical = shape[0] * shape[1] * 8
    args.data = os.path.abspath(args.data)
    os.makedirs(args.data, exist_ok=True)
    free = shutil.disk_usage(args.data).free
    if free < 2.1 * logical:
        sys.exit(f"large_pipeline: {args.data} has {free / 1e9:.0f} GB free; x and y need about "
                 f"{2.1 * logical / 1e9:.0f} GB — free some space or pass a smaller --shape")
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    dsk = os.path.abspath(args.dsk)
    py = sys.executable
    peer = os.path.join(HERE, "peers", "pipeline_dask.py")
    os.environ["PIPE_SHAPE"], os.environ["PIPE_CHUNKS"] = args.shape, args.chunks
    x, y, m = (os.path.join(args.data, f"lp_{n}.zarr") for n in "xym")
    configs = []
    table = kinds(shape, chunks)
    for kind in args.kinds.split(","):
        tmpl = table[kind]
        codecs = [("dsk default (auto)", [])] + ([] if args.no_zstd else [("dsk --codec zstd:1", ["--codec", "zstd:1"])])
        for label, codec in codecs:
            configs.append((kind, label, [
                [dsk] + [a.format(x=x) for a in tmpl] + codec + ["-q"],
                [dsk, "transform", x, y, "--expr", "cos(x)**2", "-q"],
                [dsk, "reduce", y, m, "--op", "mean", "--axis", "1", "-q"],
            ]))
        configs.append((kind, "Dask (zarr-python defaults: zstd level 3)", [
            [py, peer, "create", kind, x], [py, peer, "transform", x, y], [py, peer, "reduce", y, m]]))
    rows = []
    for kind, label, steps in configs:
        for p in (x, y, m):
            remove(p)
        times, rss = [], 0
        for cmd in steps:
            s, r, _, _ = timed(cmd, cwd=args.data)
            times.append(s)
            rss = max(rss, r)
        rows.append((kind, label, times, rss, du(x), du(y)))
        print(f"  {kind}, {label}: {' + '.join(dur(t) for t in times)} = {dur(sum(times))}, "
              f"peak RSS {rss / 2**20:.0f} MiB", flush=True)
    for p in (x, y, m):
        remove(p)
    lines = ["| x | configuration | create | transform | reduce | total | x on disk | y on disk | peak RSS |",
             "|---|---|---|---|---|---|---|---|---|"]
    total = {}
    for kind, label, times, rss, dx, dy in rows:
        total[(kind, label)] = sum(times)
        lines.append(f"| {kind} | {label} | {dur(times[0])} | {dur(times[1])} | {dur(times[2])} | **{dur(sum(times))}** "
                     f"| {dx / 1e9:.1f} GB | {dy / 1e9:.1f} GB | {rss / 2**20:.0f} MiB |")
    ratios = []
    for kind in args.kinds.split(","):
        d = total[(kind, "dsk default (auto)")]
        k = total[(kind, "Dask (zarr-python defaults: zstd level 3)")]
        z = total.get((kind, "dsk --codec zstd:1"))
        ratios.append(f"- x = {kind}: dsk's default runs the pipeline **{k / d:.2f}×** faster than Dask"
                      + (f", **{z / d:.2f}×** faster than dsk with zstd level 1" if z else ""))
    section = "\n".join([
        HEADER,
        "",
        f"Written by `make bench-large` (bench/large_pipeline.py) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"on {os.cpu_count()} cores and {ram / 2**30:.0f} GiB of RAM.",
        f"x is {shape} float64 in {chunks} chunks, {logical / 1e9:.1f} GB logical",
        ("(larger than RAM, so every step reads most of its input from disk, not from the page cache):"
         if logical > ram else "(it fits in RAM here: not the larger-than-RAM case):"),
        "`random` (uniform) or a smooth field (sum of sines); then `transform --expr 'cos(x)**2'` and",
        "`reduce y --op mean --axis 1`, three",
        "processes. One run per configuration (whole-process wall clock); peak RSS is the largest of",
        "the steps. The same pipeline on 1.6 GB, with repetitions, is in benchmarks.md.",
        "",
        *lines,
        "",
        *ratios,
        "",
    ])
    doc = open(args.doc).read() if os.path.exists(args.doc) else ""
    head = doc.split(HEADER)[0].rstrip("\n")
    with open(args.doc, "w") as f:
        f.write((head + "\n\n" if head else "") + section)
    print(section)


if __name__ == "__main__":
    main()
