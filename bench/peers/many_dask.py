"""Peer for the `many` workload: several reductions of the on-disk array in one `dask.compute`, which
shares the reads of the tasks the four graphs have in common (Dask merges them into one graph).

  python many_dask.py IN                 # mean, std, min, max of the whole array
  python many_dask.py IN --axis 1        # the same along axis 1
  python many_dask.py IN --one mean      # a single reduction (the baseline of four separate runs)
"""

import argparse

import dask
import dask.array as da


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("--axis", type=int, default=None)
    ap.add_argument("--one", default=None)
    a = ap.parse_args()
    dask.config.set(scheduler="threads")
    x = da.from_zarr(a.inp)
    ops = [a.one] if a.one else ["mean", "std", "min", "max"]
    results = dask.compute(*[getattr(x, op)(axis=a.axis) for op in ops])
    print([r.ravel()[:1] for r in results])


if __name__ == "__main__":
    main()
