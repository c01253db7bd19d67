"""The sparse input of bench/run.py's `sparse` workload: (50000, 4000) float64 in (1000, 1000)
chunks (1.6 GB logical), fill value 0, one chunk in ten written with standard normals (zarr-python,
zstd); the other nine in ten are never written, as zarr-python leaves all-fill chunks.

  python make_sparse.py DATA_DIR
"""

import os
import sys

import numpy as np
import zarr


def main():
    path = os.path.join(sys.argv[1], "x_sparse.zarr")
    z = zarr.create_array(store=path, shape=(50000, 4000), chunks=(1000, 1000), dtype="float64", fill_value=0.0,
                          zarr_format=3, overwrite=True)
    rng = np.random.default_rng(42)
    for k in range(0, 200, 10):
        i, j = divmod(k + (k // 10) % 4, 4)
        z[i * 1000:(i + 1) * 1000, j * 1000:(j + 1) * 1000] = rng.standard_normal((1000, 1000))


if __name__ == "__main__":
    main()
