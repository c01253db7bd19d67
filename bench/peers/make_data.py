"""Write the on-disk input of the benchmarks with zarr-python (adapted from ../shared/bench/make_data.py):

  x_zstd.zarr : Zarr v3, (50000, 4000) float64, chunks (1000, 1000), zarr-python's default codecs
                (bytes + zstd level 0, i.e. zstd's default level 3); chunk (i, j) is
                numpy.random.default_rng([42, i, j]).standard_normal((1000, 1000)).

  python make_data.py DATA_DIR
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import zarr

SHAPE, CHUNKS, SEED = (50000, 4000), (1000, 1000), 42


def main():
    data = sys.argv[1]
    os.makedirs(data, exist_ok=True)
    path = os.path.join(data, "x_zstd.zarr")
    z = zarr.create_array(store=path, shape=SHAPE, chunks=CHUNKS, dtype="f8", zarr_format=3, overwrite=True)

    def work(ij):
        i, j = ij
        b = np.random.default_rng([SEED, i, j]).standard_normal(CHUNKS)
        z[i * CHUNKS[0]:(i + 1) * CHUNKS[0], j * CHUNKS[1]:(j + 1) * CHUNKS[1]] = b

    grid = [(i, j) for i in range(SHAPE[0] // CHUNKS[0]) for j in range(SHAPE[1] // CHUNKS[1])]
    with ThreadPoolExecutor(os.cpu_count()) as ex:
        list(ex.map(work, grid))
    print(path)


if __name__ == "__main__":
    main()
