"""Peer for W1/W2 with generated arrays, with Dask: x = ones(...) or random(...) of (200000, 4000),
chunks (1000, 1000) (6.4 GB logical, never stored).

  python lesson_gen.py W1 ones      # (x * x[::-1, ::-1]).mean()
  python lesson_gen.py W2 random    # (cos(x)**2).mean(axis=1)
  python lesson_gen.py W1 ones 3125,4000   # other chunks (the lesson's chunk-size exercise)
"""

import sys
import time

import dask
import dask.array as da
import numpy as np


def main():
    w, kind = sys.argv[1], sys.argv[2]
    dask.config.set(scheduler="threads")
    t0 = time.perf_counter()
    shape, chunks = (200000, 4000), (1000, 1000)
    if len(sys.argv) > 3:
        chunks = tuple(int(c) for c in sys.argv[3].split(","))
    x = da.ones(shape, chunks=chunks) if kind == "ones" else da.random.random(shape, chunks=chunks)
    if w == "W1":
        v = float((x * x[::-1, ::-1]).mean().compute())
    else:
        v = (np.cos(x) ** 2).mean(axis=1).compute()
        v = float(v.sum())
    print(f"compute_s={time.perf_counter() - t0:.3f} value={v}")


if __name__ == "__main__":
    main()
