"""Rechunking between random chunk grids (1-D to 3-D, coprime sizes, ragged edges) under memory
bounds that force one pass, shortened bands or two passes, on every scheduler: zarr-python reads
back exactly the values it wrote (NaN payloads and -0.0 included), with the target chunks."""

import numpy as np
import pytest
import zarr
from helpers import dsk

CASES = 32


def cases():
    rng = np.random.default_rng(20261202)
    out = []
    for k in range(CASES):
        nd = int(rng.integers(1, 4))
        shape = tuple(int(rng.choice([1, 5, 37, 121, 300])) for _ in range(nd))
        while np.prod(shape) > 60_000:
            shape = tuple(max(1, n // 2) for n in shape)
        src = tuple(int(rng.choice([3, 7, 16, 50, 64])) for _ in range(nd))
        dst = tuple(int(rng.choice([2, 5, 13, 64, 121, 300])) for _ in range(nd))
        memory = str(rng.choice(["150KiB", "300KiB", "64MiB"]))
        sched = str(rng.choice(["sync", "threads", "processes"]))
        out.append((k, shape, src, dst, memory, sched))
    # bands too large for the bound: cut bands, or two passes (coprime and 3-D included)
    out += [
        (100, (200, 150), (50, 50), (200, 3), "150KiB", "threads"),
        (101, (200, 150), (50, 50), (7, 149), "150KiB", "processes"),
        (102, (60, 50, 40), (16, 10, 7), (13, 9, 5), "150KiB", "threads"),
        (103, (300, 200), (100, 100), (71, 200), "200KiB", "sync"),
        (104, (300, 200), (100, 100), (300, 1), "200KiB", "threads"),
    ]
    return out


@pytest.mark.parametrize("k,shape,src,dst,memory,sched", cases())
def test_random_rechunk_is_exact(tmp_path, k, shape, src, dst, memory, sched):
    rng = np.random.default_rng(k)
    a = rng.standard_normal(shape)
    flat = a.reshape(-1)
    flat[:: 7] = -0.0
    flat[3:: 11] = np.frombuffer(np.uint64(0x7FF8000000000123).tobytes(), dtype=np.float64)[0]
    z = zarr.create_array(store=str(tmp_path / "x.zarr"), shape=shape, chunks=src, dtype="f8")
    z[...] = a
    chunks = ",".join(map(str, dst))
    r = dsk("rechunk", tmp_path / "x.zarr", tmp_path / "y.zarr", "--chunks", chunks, "--memory", memory,
            "--scheduler", sched, "--workers", "3", ok=False)
    if r.returncode != 0:
        err = r.stderr.decode()
        # a refusal names a target chunk shape that fits, and that shape works
        assert r.returncode == 1 and "try --chunks" in err, err
        chunks = err.split("try --chunks ")[1].split()[0]
        dsk("rechunk", tmp_path / "x.zarr", tmp_path / "y.zarr", "--chunks", chunks, "--memory", memory,
            "--scheduler", sched, "--workers", "3")
    y = zarr.open_array(str(tmp_path / "y.zarr"), mode="r")
    assert y.chunks == tuple(min(int(c), n) for c, n in zip(chunks.split(","), shape))
    assert y[...].tobytes() == a.tobytes()
