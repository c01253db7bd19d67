"""W3 on S3 with Dask: the lesson's two computations with the input read through zarr-python's
obstore store (`da.from_zarr` of the array on the SeaweedFS of bench/peers/s3.py), threads.

  python s3_dask.py PREFIX --op mean          # prints (x * x[::-1, ::-1]).mean()
  python s3_dask.py PREFIX --op cos2 --out OUT  # writes (cos(x)**2).mean(axis=1) to the local OUT

Endpoint and credentials come from the AWS_* environment (as for dsk)."""

import argparse

import dask
import dask.array as da
import numpy as np
import zarr
from obstore.store import S3Store
from zarr.storage import ObjectStore

ap = argparse.ArgumentParser()
ap.add_argument("prefix")
ap.add_argument("--op", choices=["mean", "cos2"], required=True)
ap.add_argument("--out")
args = ap.parse_args()
store = ObjectStore(S3Store("bench", prefix=args.prefix), read_only=True)
x = da.from_zarr(zarr.open_array(store=store, mode="r"))
with dask.config.set(scheduler="threads"):
    if args.op == "mean":
        print(float((x * x[::-1, ::-1]).mean().compute()))
    else:
        da.to_zarr((np.cos(x) ** 2).mean(axis=1), args.out)
