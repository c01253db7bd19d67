"""Peer for `dsk rechunk`: Dask rechunks the on-disk array and writes it (zarr-python defaults),
without the read-back check of lesson/W4.py, so that both tools do the same work.

  python rechunk_dask.py IN OUT --chunks 50000,10
"""

import argparse
import shutil
import time

import dask
import dask.array as da


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--chunks", default="50000,10")
    a = ap.parse_args()
    shutil.rmtree(a.out, ignore_errors=True)
    dask.config.set(scheduler="threads")
    t0 = time.perf_counter()
    chunks = tuple(int(c) for c in a.chunks.split(","))
    da.from_zarr(a.inp).rechunk(chunks).to_zarr(a.out, zarr_format=3)
    print(f"compute_s={time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
