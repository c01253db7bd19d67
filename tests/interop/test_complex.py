"""Complex arrays: read as zarr-python writes them, computed as NumPy computes them, written so that
zarr-python, xarray and NumPy read them back. NumPy is the oracle.

`+ - conj real imag where`, selections and transposes must be bit-identical to NumPy; `* / abs
square` are NumPy's formulas but NumPy's SIMD loops may fuse multiply-adds (and compute abs with a
ratio), so they are compared to a few units in the last place of the parts' type.
"""

import json
import random

import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import dsk

INF, NAN = np.inf, np.nan


def cplx(rng, shape, dtype, specials=True):
    a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    if specials and a.size:
        flat = a.reshape(-1)
        pick = [NAN, INF, -INF, 0.0, -0.0, 1.5]
        for k in range(0, flat.size, 5):
            flat[k] = complex(pick[k % len(pick)], pick[(k // 5 + 2) % len(pick)])
    return a


def write(path, a, chunks, zarr_format=3, **kw):
    z = zarr.create_array(str(path), shape=a.shape, dtype=a.dtype, chunks=chunks, zarr_format=zarr_format, **kw)
    z[...] = a
    return path


def parts(v):
    return [v.real, v.imag] if v.dtype.kind == "c" else [v]


def assert_close(got, want, exact, tol):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if exact or want.dtype.kind not in "fc":
        if want.dtype.kind in "fc":
            for g, w in zip(parts(got), parts(want)):
                np.testing.assert_array_equal(g, w)  # NaN == NaN, and -0.0 == 0.0 is checked below
            assert np.array_equal(np.signbit(got.real), np.signbit(want.real)) or np.isnan(want.real).any()
        else:
            assert np.array_equal(got, want)
        return
    with np.errstate(all="ignore"):
        for g, w in zip(parts(got), parts(want)):
            ok = np.isclose(g, w, rtol=tol, atol=tol, equal_nan=True) & (np.isnan(g) == np.isnan(w))
            assert ok.all(), (g[~ok][:5], w[~ok][:5])


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    d = tmp_path_factory.mktemp("complex")
    rng = np.random.default_rng(7)
    a = {
        "z": cplx(rng, (5, 7), "complex64"),
        "w": cplx(rng, (5, 7), "complex128"),
        "x": rng.standard_normal(7).astype("float32"),
        "i": rng.integers(-4, 5, (5, 7)).astype("int32"),
        "b": rng.integers(0, 2, (5, 7)).astype("bool"),
    }
    paths = {
        "z": write(d / "z.zarr", a["z"], (2, 3)),
        "w": write(d / "w.zarr", a["w"], (3, 4), zarr_format=2),
        "x": write(d / "x.zarr", a["x"], (4,)),
        "i": write(d / "i.zarr", a["i"], (5, 7)),
        "b": write(d / "b.zarr", a["b"], (2, 2)),
    }
    return d, a, paths


def run_expr(d, paths, expr, out="out.npy"):
    names = [f"{k}={v}" for k, v in paths.items() if k in expr.replace("abs", "").replace("imag", "")]
    r = dsk("eval", expr, *names, "-o", d / out, "--overwrite", ok=False)
    return r, (np.load(d / out) if r.returncode == 0 else None)


LEAVES = ["z", "w", "x", "i", "b", "2", "0.5", "1j", "(2-3j)", "z.T.T", "z[::-1, 1:]", "conj(z)", "w.real", "z.imag"]
EXACT_FUNCS = ["real", "imag", "conj"]


def gen(rnd, depth, exact):
    if depth == 0 or rnd.random() < 0.25:
        return rnd.choice(LEAVES)
    r = rnd.random()
    if r < 0.5:
        ops = ["+", "-"] if exact else ["+", "-", "*", "/"]
        return f"({gen(rnd, depth - 1, exact)} {rnd.choice(ops)} {gen(rnd, depth - 1, exact)})"
    if r < 0.6:
        return f"-{gen(rnd, depth - 1, exact)}"
    if r < 0.8:
        f = rnd.choice(EXACT_FUNCS if exact else EXACT_FUNCS + ["abs", "square"])
        arg = gen(rnd, depth - 1, exact)
        while not any(c in arg for c in "zwxib"):
            # a NumPy function of a Python literal gives a NumPy scalar, which Python's own
            # complex arithmetic then treats as a Python float (np.float64 subclasses float):
            # typing that dsk does not model
            arg = gen(rnd, depth - 1, exact)
        return f"{f}({arg})"
    if r < 0.9:
        return f"where(real({gen(rnd, depth - 1, exact)}) > 0, {gen(rnd, depth - 1, exact)}, {gen(rnd, depth - 1, exact)})"
    return f"({gen(rnd, depth - 1, exact)} {rnd.choice(['==', '!='])} {gen(rnd, depth - 1, exact)})"


NS = {"np": np, "abs": np.abs, "real": np.real, "imag": np.imag, "conj": np.conj, "where": np.where,
      "square": np.square, "isnan": np.isnan, "isfinite": np.isfinite}


@pytest.mark.parametrize("exact", [True, False])
def test_random_expressions_match_numpy(arrays, exact):
    d, a, paths = arrays
    rnd = random.Random(11 if exact else 12)
    ns = dict(NS, **a)
    checked = 0
    for _ in range(120):
        expr = gen(rnd, 3, exact)
        with np.errstate(all="ignore"):
            try:
                want = np.asarray(eval(expr, ns))
            except Exception:
                continue  # NumPy refuses it (e.g. shapes); dsk's refusals are tested below
        r, got = run_expr(d, paths, expr)
        assert r.returncode == 0, (expr, r.stderr.decode())
        single = any(n in expr for n in ["z", "x"])  # float32 parts round earlier
        assert_close(got, want, exact, 2e-5 if single else 1e-12)
        checked += 1
    assert checked > 80


@pytest.mark.parametrize(
    "expr",
    ["z.sum()", "z.sum(axis=0)", "w.mean(axis=1)", "z.mean(keepdims=True)", "cumsum(z, axis=1)", "(z * 1j).sum(axis=1)",
     "abs(w).mean()", "(w / (1 + x)).mean(axis=0)"],
)
def test_reductions_match_numpy(arrays, expr):
    d, a, paths = arrays
    rng = np.random.default_rng(3)
    # reductions over NaN-free values (a NaN anywhere would make every sum NaN)
    clean = {"z": cplx(rng, (5, 7), "complex64", specials=False), "w": cplx(rng, (5, 7), "complex128", specials=False)}
    p = {
        "z": write(d / "zc.zarr", clean["z"], (2, 3), overwrite=True),
        "w": write(d / "wc.zarr", clean["w"], (3, 4), overwrite=True),
        "x": paths["x"],
    }
    r, got = run_expr(d, p, expr, "red.npy")
    assert r.returncode == 0, r.stderr.decode()
    want = np.asarray(eval(expr, dict(NS, cumsum=np.cumsum, x=a["x"], **clean)))
    assert_close(got, want, False, 1e-5 if "z" in expr else 1e-12)


def test_mean_divides_the_complex_sum_as_numpy_does(tmp_path):
    # NumPy's mean is the complex sum divided by a complex count (Smith's algorithm), not the
    # mean of each part: an infinite part makes both parts NaN, and finite ones round as 1/n
    rng = np.random.default_rng(6)
    for a in [np.array([complex(np.nan, np.inf), 2 + 1j, 3], "complex64"), cplx(rng, (6, 7), "complex128", False)]:
        p = write(tmp_path / f"m{a.ndim}.zarr", a, (2,) * a.ndim)
        for axis in [None] + list(range(a.ndim)):
            expr = "m.mean()" if axis is None else f"m.mean(axis={axis})"
            dsk("eval", expr, f"m={p}", "-o", tmp_path / "m.npy", "--overwrite")
            with np.errstate(all="ignore"):
                assert_close(np.load(tmp_path / "m.npy"), np.asarray(a.mean(axis=axis)), False, 1e-12)


def test_reduce_command_and_printed_results(arrays):
    d, a, paths = arrays
    rng = np.random.default_rng(5)
    c = cplx(rng, (4, 6), "complex128", specials=False)
    p = write(d / "c.zarr", c, (3, 4))
    dsk("reduce", p, "--op", "sum", "--axis", "1", d / "s.zarr", "--overwrite")
    assert_close(zarr.open_array(str(d / "s.zarr"))[...], c.sum(axis=1), False, 1e-12)
    text = dsk("eval", "c[1, 2]", f"c={p}").stdout.decode().strip()
    assert complex(text) == c[1, 2]
    assert dsk("eval", "2j").stdout.decode().strip() == "2j"
    assert dsk("eval", "(1 + 2j) * (3 - 1j)").stdout.decode().strip() == "(5+5j)"
    assert dsk("eval", "1e16 + 1e-7j").stdout.decode().strip() == "(1e+16+1e-07j)"  # Python's repr
    doc = json.loads(dsk("eval", "c[0, :2]", f"c={p}", "--json").stdout)
    assert doc["dtype"] == "complex128" and doc["shape"] == [2]
    assert [complex(*v) for v in doc["value"]] == list(c[0, :2])


@pytest.mark.parametrize("dtype", ["<c8", ">c8", "<c16", ">c16"])
def test_zarr_v2_complex_read_in_either_byte_order(tmp_path, dtype):
    rng = np.random.default_rng(1)
    a = cplx(rng, (6, 5), dtype)
    write(tmp_path / "a.zarr", a, (4, 2), zarr_format=2)
    dsk("export", tmp_path / "a.zarr", "-o", tmp_path / "a.npy")
    got = np.load(tmp_path / "a.npy")
    assert got.dtype == a.dtype.newbyteorder("<")
    assert got.tobytes() == a.astype(got.dtype).tobytes()


@pytest.mark.parametrize("fmt", [2, 3])
def test_missing_chunks_read_as_the_complex_fill_value(tmp_path, fmt):
    z = zarr.create_array(str(tmp_path / "f.zarr"), shape=(5, 4), dtype="complex64", chunks=(2, 2),
                          zarr_format=fmt, fill_value=1 + 2j)
    z[0:2, 0:2] = 3 - 1j  # every other chunk is never written
    dsk("eval", "f * 1", f"f={tmp_path / 'f.zarr'}", "-o", tmp_path / "g.npy")
    assert_close(np.load(tmp_path / "g.npy"), z[...], True, 0)
    # the fill value is carried to outputs of the same type, whose fill-valued chunks are skipped
    for cmd in [["eval", "f[::-1]", f"f={tmp_path / 'f.zarr'}", "-o", tmp_path / "e.zarr"],
                ["rechunk", tmp_path / "f.zarr", tmp_path / "r.zarr", "--chunks", "1,4"]]:
        dsk(*cmd)
        out = zarr.open_array(str(cmd[-1] if cmd[0] == "eval" else cmd[2]))
        assert out.fill_value == 1 + 2j and out.nchunks_initialized < out.nchunks
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "e.zarr"))[...], z[...][::-1])
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "r.zarr"))[...], z[...])
    dsk("eval", "f.astype('complex128')", f"f={tmp_path / 'f.zarr'}", "-o", tmp_path / "c.zarr")
    assert zarr.open_array(str(tmp_path / "c.zarr")).fill_value == 0  # another type: not carried


def test_sharded_3d_and_odd_shapes(tmp_path):
    rng = np.random.default_rng(2)
    a = cplx(rng, (3, 5, 7), "complex128")
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=a.shape, dtype=a.dtype, chunks=(1, 2, 3), shards=(2, 4, 6))
    z[...] = a
    dsk("transform", tmp_path / "s.zarr", tmp_path / "t.zarr", "--expr", "conj(x.transpose((2, 0, 1)))[::-2]")
    assert_close(zarr.open_array(str(tmp_path / "t.zarr"))[...], np.conj(a.transpose(2, 0, 1))[::-2], True, 0)
    for k, shape in enumerate([(0, 3), (1,), (4, 1), ()]):
        e = cplx(rng, shape, "complex64")
        path = write(tmp_path / f"e{k}.zarr", e, tuple(max(1, n) for n in shape))
        dsk("eval", "-e + 1j", f"e={path}", "-o", tmp_path / f"e{k}.npy")
        assert_close(np.load(tmp_path / f"e{k}.npy"), np.asarray(-e + 1j), True, 0)


def test_outputs_read_by_zarr_python_and_xarray(tmp_path):
    rng = np.random.default_rng(4)
    re = rng.standard_normal((4, 3))
    ds = xr.Dataset({"t": (("y", "x"), re)})
    for fmt in [2, 3]:
        store = tmp_path / f"ds{fmt}.zarr"
        ds.to_zarr(store, zarr_format=fmt, consolidated=True)
        dsk("eval", "t * (1 + 2j)", f"t={store / 't'}", "-o", store / "c")
        got = xr.open_zarr(store)["c"]
        assert got.dims == ("y", "x")
        assert got.dtype == np.complex128
        np.testing.assert_array_equal(got.values, re * (1 + 2j))
    # xarray's own complex variables (v2 ones without a fill value, which zarrs alone refuses)
    for fmt in [2, 3]:
        store = tmp_path / f"xc{fmt}.zarr"
        xr.Dataset({"c": (("x",), np.array([1 + 2j, 3j, -1]))}).to_zarr(store, zarr_format=fmt)
        text = dsk("eval", "(c * 2).sum()", f"c={store / 'c'}").stdout.decode().strip()
        assert text == "10j"  # as Python prints complex(0, 10)
    dsk("eval", "t + 0j", f"t={tmp_path / 'ds3.zarr' / 't'}", "-o", tmp_path / "c64.zarr", "--dtype", "complex64")
    z = zarr.open_array(str(tmp_path / "c64.zarr"))
    assert z.dtype == np.complex64 and z.fill_value == 0
    np.testing.assert_array_equal(z[...], (re + 0j).astype("complex64"))
    dsk("rechunk", tmp_path / "c64.zarr", tmp_path / "r.zarr", "--chunks", "1,3")
    r = zarr.open_array(str(tmp_path / "r.zarr"))
    assert r.chunks == (1, 3)
    np.testing.assert_array_equal(r[...], z[...])
    info = json.loads(dsk("info", tmp_path / "r.zarr", "--json").stdout)
    assert info["dtype"] == "complex64" and info["shape"] == [4, 3]


def test_complex_refusals(arrays):
    d, a, paths = arrays
    for expr, want in [
        ("z < 1", "no order"),
        ("z // 2", "not defined for complex"),
        ("z ** 2", "write z * z"),
        ("sin(z)", "not supported"),
        ("z.max()", "not supported"),
        ("z.astype('float32')", "discards the imaginary part"),
    ]:
        r, _ = run_expr(d, paths, expr)
        assert r.returncode == 2 and want in r.stderr.decode(), (expr, r.stderr.decode())
    r = dsk("eval", "z + 1", f"z={paths['z']}", "-o", d / "bad.csv", ok=False)
    assert r.returncode == 2 and "csv holds real numbers" in r.stderr.decode()
    assert not (d / "bad.csv").exists()
    r = dsk("eval", "z + 1", f"z={paths['z']}", "-o", d / "bad.zarr", "--dtype", "float32", ok=False)
    assert r.returncode == 2 and "imaginary part" in r.stderr.decode()
    r = dsk("create", "zeros", d / "c.zarr", "--shape", "3", "--dtype", "complex64", ok=False)
    assert r.returncode == 2 and "1j" in r.stderr.decode()
    r = dsk("plot", paths["z"], "-o", d / "p.png", ok=False)
    assert r.returncode != 0 and "abs" in r.stderr.decode()


def test_a_complex_condition_is_true_where_not_zero(arrays):
    d, a, paths = arrays
    r, got = run_expr(d, paths, "where(z, 1, 2) + where(conj(z) * 0j, 1, 0)")
    assert r.returncode == 0, r.stderr.decode()
    with np.errstate(all="ignore"):
        assert_close(got, np.where(a["z"], 1, 2) + np.where(np.conj(a["z"]) * 0j, 1, 0), True, 0)
