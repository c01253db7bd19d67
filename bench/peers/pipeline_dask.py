"""Peer for the three-step pipeline of `make bench` (workload `pipeline`): Dask writes each step's
array with zarr-python's default codecs (Zarr v3, zstd level 0 = 3), as a Makefile would run it.

  python pipeline_dask.py create random|smooth X.zarr   # x, (50000, 4000) float64, chunks 1000²
  python pipeline_dask.py transform X.zarr Y.zarr       # cos(x) ** 2
  python pipeline_dask.py reduce Y.zarr M.zarr          # y.mean(axis=1)

PIPE_SHAPE and PIPE_CHUNKS (e.g. "100000,40000" and "2000,2000") change the shape and chunks
(`make bench-large`, bench/large_pipeline.py).
"""

import os
import shutil
import sys

import dask
import dask.array as da
import numpy as np

SHAPE, CHUNKS = (tuple(int(v) for v in os.environ.get(k, d).split(","))
                 for k, d in (("PIPE_SHAPE", "50000,4000"), ("PIPE_CHUNKS", "1000,1000")))


def smooth():
    i = da.arange(SHAPE[0], chunks=CHUNKS[0])[:, None]
    j = da.arange(SHAPE[1], chunks=CHUNKS[1])[None, :]
    return np.sin(i / 97) + np.cos(j / 61) + 0.5 * np.sin(i / 23 + j / 41)


def main():
    dask.config.set(scheduler="threads")
    step, *args = sys.argv[1:]
    out = args[-1]
    shutil.rmtree(out, ignore_errors=True)
    if step == "create":
        kind = args[0]
        x = da.random.default_rng(1).random(SHAPE, chunks=CHUNKS) if kind == "random" else smooth()
        x.to_zarr(out, zarr_format=3)
    elif step == "transform":
        x = da.from_zarr(args[0])
        (np.cos(x) ** 2).to_zarr(out, zarr_format=3)
    else:
        y = da.from_zarr(args[0])
        y.mean(axis=1).to_zarr(out, zarr_format=3)


if __name__ == "__main__":
    main()
