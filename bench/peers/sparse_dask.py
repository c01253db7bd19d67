"""Peer for the `sparse` workload: Dask reduces an on-disk Zarr array whose chunks are mostly
never written (zarr-python hands Dask those chunks as arrays of the fill value, which Dask computes).

  python sparse_dask.py IN --op mean   # x.mean()
  python sparse_dask.py IN --op std0   # x.std(axis=0)
"""

import argparse

import dask
import dask.array as da


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("--op", choices=["mean", "std0"], required=True)
    a = ap.parse_args()
    dask.config.set(scheduler="threads")
    x = da.from_zarr(a.inp)
    y = x.mean() if a.op == "mean" else x.std(axis=0)
    print(y.compute().ravel()[:1])


if __name__ == "__main__":
    main()
