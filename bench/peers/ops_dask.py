"""Peer for `dsk transform` / `dsk eval -o`: Dask computes an element-wise expression of an on-disk
Zarr array and writes the result with zarr-python's default codecs (zstd level 0).

  python ops_dask.py IN OUT --op cos2   # (np.cos(x) ** 2).to_zarr(OUT)
  python ops_dask.py IN OUT --op flip   # (x * x[::-1, ::-1]).to_zarr(OUT)
"""

import argparse
import shutil
import time

import dask
import dask.array as da
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--op", choices=["cos2", "flip"], required=True)
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    dask.config.set(scheduler="threads")
    t0 = time.perf_counter()
    x = da.from_zarr(a.inp)
    y = np.cos(x) ** 2 if a.op == "cos2" else x * x[::-1, ::-1]
    y.to_zarr(a.out, zarr_format=3)
    print(f"compute_s={time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
