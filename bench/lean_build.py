"""The release build's trade-offs, measured: cold build time, binary size and speed for a few
`[profile.release]` settings (link-time optimisation, codegen units), on this machine.

  bench/.venv/bin/python bench/lean_build.py [--reps 3] [--only default,thin]

Each configuration is built from scratch (its own target directory under bench/data/build/, every
dependency included, as `make demo` on a fresh clone does) with the settings given through Cargo's
environment overrides, so Cargo.toml is not touched. Each binary then runs the same commands,
interleaved, `--reps` times: W3's mirrored mean of the on-disk array (decode-bound), mean, std, min
and max of it in one run (decode and reductions), W4's rechunk (decode, copy, encode) and W1 with
random x (generation and arithmetic, no I/O). The table goes into docs/benchmarks.json as the
section `build` and docs/benchmarks.md is rendered again.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import run as bench  # noqa: E402

CONFIGS = {
    "default": ("codegen-units 4, no LTO (Cargo.toml)", {}),
    "thin": ("thin LTO, codegen-units 4", {"CARGO_PROFILE_RELEASE_LTO": "thin"}),
    "fat": ("fat LTO, codegen-units 1", {"CARGO_PROFILE_RELEASE_LTO": "fat", "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "1"}),
    "cu16": ("codegen-units 16, no LTO", {"CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16"}),
}


def build(name, env_extra, data):
    target = os.path.join(data, "build", name)
    shutil.rmtree(target, ignore_errors=True)
    env = dict(os.environ, **env_extra)
    t0 = time.perf_counter()
    subprocess.run(["cargo", "build", "--release", "--locked", "--target-dir", target], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    secs = time.perf_counter() - t0
    binary = os.path.join(target, "release", "dsk")
    return binary, secs, os.path.getsize(binary)


def commands(binary, data):
    x = bench.ensure_input(data)
    out = os.path.join(data, "lean_w4.zarr")
    gen = bench.GEN
    return {
        "W3 mean": ([binary, "eval", "(x * x[::-1, ::-1]).mean()", f"x={x}", "--memory", "512MiB", "-q"], None),
        "mean+std+min+max": ([binary, "reduce", x, "--op", "mean,std,min,max", "--memory", "512MiB", "-q"], None),
        "W4 rechunk": ([binary, "rechunk", x, out, "--chunks", "50000,10", "--memory", "512MiB", "-q"], out),
        "W1 random": ([binary, "eval", f"(random({gen}) * random({gen})[::-1, ::-1]).mean()", "-q"], None),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(CONFIGS))
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA", os.path.join(HERE, "data")))
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n]
    builds = {}
    for n in names:
        label, env = CONFIGS[n]
        print(f"building {n} ({label}) from scratch...", flush=True)
        builds[n] = build(n, env, args.data)
        print(f"  {builds[n][1]:.0f} s, {builds[n][2] / 2**20:.1f} MiB", flush=True)
    walls = {n: {} for n in names}
    rss = {n: {} for n in names}
    for rep in range(args.reps):
        for n in names:
            for what, (cmd, out) in commands(builds[n][0], args.data).items():
                if out:
                    shutil.rmtree(out, ignore_errors=True)
                wall, peak, _cpu, _ = bench.timed(cmd, cwd=args.data)
                walls[n].setdefault(what, []).append(wall)
                rss[n][what] = max(rss[n].get(what, 0), peak)
                print(f"  rep {rep + 1}: {n} {what}: {wall:.2f} s", flush=True)
    whats = list(commands("dsk", args.data))
    lines = [
        "## The release build: link-time optimisation and codegen units",
        "",
        f"(measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/lean_build.py`, medians of "
        f"{args.reps} interleaved runs; each configuration built from scratch, every dependency included, on this "
        "machine's 2 cores)",
        "",
        "| profile | cold build | binary | " + " | ".join(whats) + " |",
        "|---|---|---|" + "---|" * len(whats),
    ]
    for n in names:
        cells = [f"{statistics.median(walls[n][w]):.2f} s" for w in whats]
        lines.append(f"| {CONFIGS[n][0]} | {builds[n][1] / 60:.1f} min | {builds[n][2] / 2**20:.1f} MiB | "
                     + " | ".join(cells) + " |")
    section = "\n".join(lines) + "\n"
    print(section)
    path = os.path.join(ROOT, "docs", "benchmarks.json")
    with open(path) as f:
        report = json.load(f)
    report["workloads"] = [w for w in report["workloads"] if w.get("key") != "build"]
    report["workloads"].append({"key": "build", "markdown": section})
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(ROOT, "docs", "benchmarks.md"), "w") as f:
        f.write(bench.render(report))


if __name__ == "__main__":
    main()
