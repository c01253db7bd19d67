"""Constant folding (plan::fold) gives the bits computing every element gives.

Random expressions over dsk's constant generators (ones, zeros, full with ordinary and awkward
values: 0.1, -0.0, inf, NaN, large integers) in every dtype, through element-wise operations,
selections, casts and reductions, are evaluated twice — folded, and with DSK_NO_FOLD=1, element by
element — and the two .npy files must be byte-identical.
"""

import os
import random
import subprocess

import numpy as np
from helpers import DSK

DTYPES = ["bool", "int8", "int32", "int64", "uint8", "uint64", "float32", "float64"]
VALUES = ["0", "1", "-1", "3", "0.1", "-0.0", "2.5", "1e300", "inf", "nan", "255", "-7", "9007199254740993"]
SHAPE = "(37, 11)"
CHUNKS = "(8, 5)"
OPS = ["+", "-", "*", "/", "//", "%", "<", "==", "&", "|"]
FUNCS = ["abs", "sqrt", "floor", "isnan", "sign", "sin", "exp", "round"]
REDUCE = ["sum", "mean", "prod", "min", "max", "std", "var", "argmin", "argmax", "any", "all", "count_nonzero",
          "nansum", "nanmean", "nanmax", "nanstd"]


def leaf(rnd):
    kind = rnd.random()
    dtype = rnd.choice(DTYPES)
    if kind < 0.3:
        return f"ones({SHAPE}, chunks={CHUNKS}, dtype='{dtype}')"
    if kind < 0.4:
        return f"zeros({SHAPE}, chunks={CHUNKS}, dtype='{dtype}')"
    if kind < 0.85:
        return f"full({SHAPE}, {rnd.choice(VALUES)}, chunks={CHUNKS}, dtype='{dtype}')"
    return rnd.choice(["2", "0.5", "-3", "True"])


def gen(rnd, depth):
    if depth == 0 or rnd.random() < 0.2:
        return leaf(rnd)
    r = rnd.random()
    if r < 0.4:
        return f"({gen(rnd, depth - 1)} {rnd.choice(OPS)} {gen(rnd, depth - 1)})"
    if r < 0.55:
        return f"{rnd.choice(FUNCS)}({gen(rnd, depth - 1)})"
    if r < 0.7:
        return f"({gen(rnd, depth - 1)})[::-1, ::-1]"
    if r < 0.8:
        return f"({gen(rnd, depth - 1)}).T.T"
    if r < 0.9:
        return f"astype({gen(rnd, depth - 1)}, '{rnd.choice(DTYPES)}')"
    return f"where({gen(rnd, depth - 1)}, {gen(rnd, depth - 1)}, {gen(rnd, depth - 1)})"


def run(expr, out, fold):
    env = dict(os.environ)
    if not fold:
        env["DSK_NO_FOLD"] = "1"
    return subprocess.run([DSK, "eval", expr, "-o", out, "--overwrite"], capture_output=True, env=env)


def test_folded_results_are_the_computed_bits(tmp_path):
    rnd = random.Random(2026)
    compared = folded_reductions = 0
    for _ in range(200):
        expr = gen(rnd, 3)
        if rnd.random() < 0.6:
            op = rnd.choice(REDUCE)
            axis = rnd.choice(["", "axis=0", "axis=1", "axis=(0, 1)"]) if op not in ("argmin", "argmax") else ""
            expr = f"({expr}).{op}({axis})"
        a, b = tmp_path / "folded.npy", tmp_path / "computed.npy"
        ra, rb = run(expr, a, True), run(expr, b, False)
        assert ra.returncode == rb.returncode, (expr, ra.stderr.decode(), rb.stderr.decode())
        if ra.returncode != 0:
            assert ra.stderr == rb.stderr, expr
            continue
        x, y = np.load(a), np.load(b)
        assert x.dtype == y.dtype and x.shape == y.shape, expr
        assert x.tobytes() == y.tobytes(), (expr, x.ravel()[:4], y.ravel()[:4])
        compared += 1
    assert compared > 120


def test_the_lessons_mean_of_ones_is_known_without_computing(tmp_path):
    x = "ones((200000, 4000), chunks=(1000, 1000))"
    r = subprocess.run([DSK, "eval", f"({x} * {x}[::-1, ::-1]).mean()", "--explain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "full((), 1.0)" in r.stdout and "reads 0 B" in r.stdout
    r = subprocess.run([DSK, "eval", f"({x} * {x}[::-1, ::-1]).mean()"], capture_output=True, text=True)
    assert r.stdout.strip() == "1.0"
    # a sum whose partial sums round is computed element by element
    r = subprocess.run([DSK, "eval", "full((1000,), 0.1).sum()", "--explain"], capture_output=True, text=True)
    assert "full((), " not in r.stdout


SPARSE_FILLS = {"float64": [0.0, -0.0, 0.1, 1.5, float("nan"), float("inf"), 1e300],
                "float32": [0.0, 0.1, 3.0, float("nan")],
                "int8": [0, -7, 100], "int32": [0, 3, -1], "int64": [0, 9007199254740993, -2],
                "uint8": [0, 255], "uint64": [0, 7], "bool": [False, True]}
SPARSE_EXPRS = ["x", "x * 2 + 1", "x / 3", "abs(x) - x", "x[::-1, 2:]", "x.T", "astype(x, 'float32')",
                "where(x > 1, x, 0)", "sqrt(abs(x))", "x == x", "maximum(x, 2)", "x * y", "x + ones((43, 29), chunks=(6, 7))"]


def write_sparse(rnd, path, dtype, fill, fmt):
    """A (43, 29) array in (6, 7) chunks (shards of 2×2 chunks in some v3 arrays) where most chunks
    are never written: they hold the fill value."""
    import zarr
    shape, chunks = (43, 29), (6, 7)
    kw = dict(store=str(path), shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, zarr_format=fmt,
              overwrite=True)
    if fmt == 3 and rnd.random() < 0.3:
        kw["shards"] = (12, 14)
    z = zarr.create_array(**kw)
    data = np.full(shape, fill, dtype=dtype)
    g = np.random.default_rng(rnd.randrange(1 << 30))
    for i in range(0, shape[0], chunks[0]):
        for j in range(0, shape[1], chunks[1]):
            if rnd.random() < 0.3:
                block = data[i:i + chunks[0], j:j + chunks[1]]
                block[...] = (g.random(block.shape) * 10 - 5).astype(dtype)
    z[...] = data
    return data


def test_unwritten_chunks_fold_to_the_computed_bits(tmp_path):
    """Arrays whose chunks are mostly never written (every dtype, awkward fill values, v2 and v3,
    sharded): the tiles over unwritten chunks fold (the fill value through the expression, the
    reduction in closed form where exact); results are byte-identical to computing every element,
    and match NumPy on the data zarr-python reads."""
    rnd = random.Random(7)
    compared = 0
    for case in range(60):
        dtype = rnd.choice(list(SPARSE_FILLS))
        fill = rnd.choice(SPARSE_FILLS[dtype])
        x = tmp_path / f"x{case}.zarr"
        data = write_sparse(rnd, x, dtype, fill, rnd.choice([2, 3]))
        y = tmp_path / f"y{case}.zarr"
        write_sparse(rnd, y, "float64", rnd.choice(SPARSE_FILLS["float64"]), 3)
        expr = rnd.choice(SPARSE_EXPRS)
        if rnd.random() < 0.7:
            op = rnd.choice(REDUCE)
            axis = rnd.choice(["", "axis=0", "axis=1"]) if op not in ("argmin", "argmax") else rnd.choice(["", "axis=0"])
            expr = f"({expr}).{op}({axis})"
        outs = []
        for fold in (True, False):
            out = tmp_path / f"{case}-{fold}.npy"
            env = dict(os.environ, **({} if fold else {"DSK_NO_FOLD": "1"}))
            r = subprocess.run([DSK, "eval", expr, f"x={x}", f"y={y}", "-o", out], capture_output=True, env=env)
            outs.append((r, out))
        (ra, a), (rb, b) = outs
        assert ra.returncode == rb.returncode, (expr, ra.stderr.decode(), rb.stderr.decode())
        if ra.returncode != 0:
            continue
        p, q = np.load(a), np.load(b)
        assert p.dtype == q.dtype and p.shape == q.shape, expr
        assert p.tobytes() == q.tobytes(), (expr, dtype, fill, p.ravel()[:4], q.ravel()[:4])
        if expr == "(x).sum()" and dtype in ("int32", "int64"):
            assert int(p) == int(data.astype(np.int64).sum()), expr
        compared += 1
    assert compared > 40


def test_a_sparse_array_reduces_from_its_stored_chunks(tmp_path):
    """An array with one stored chunk out of 48: the mean and the max are NumPy's."""
    import zarr
    z = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=(60, 80), chunks=(10, 10), dtype="float64",
                          fill_value=2.0, zarr_format=3)
    z[20:30, 40:50] = np.arange(100.0).reshape(10, 10)
    full = z[...]
    for expr, want in [("x.mean()", full.mean()), ("x.max()", full.max()), ("x.sum(axis=0)", full.sum(axis=0))]:
        r = subprocess.run([DSK, "eval", expr, f"x={tmp_path / 's.zarr'}", "-o", tmp_path / "r.npy", "--overwrite"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        np.testing.assert_allclose(np.load(tmp_path / "r.npy"), want, rtol=1e-15)
    assert len(os.listdir(tmp_path / "s.zarr" / "c")) == 1
