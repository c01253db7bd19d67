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
