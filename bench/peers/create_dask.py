"""Peer for `dsk create random`: Dask writes a random-normal array to Zarr (zarr-python defaults:
Zarr v3, zstd level 0 = zstd's default level 3).

  python create_dask.py OUT [--shape 50000,4000] [--chunks 1000,1000] [--seed 42]
"""

import argparse
import shutil
import time

import dask
import dask.array as da


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", default="50000,4000")
    ap.add_argument("--chunks", default="1000,1000")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    shape = tuple(int(s) for s in a.shape.split(","))
    chunks = tuple(int(s) for s in a.chunks.split(","))
    shutil.rmtree(a.out, ignore_errors=True)
    dask.config.set(scheduler="threads")
    t0 = time.perf_counter()
    x = da.random.default_rng(a.seed).normal(0.0, 1.0, size=shape, chunks=chunks)
    x.to_zarr(a.out, zarr_format=3)
    print(f"compute_s={time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
