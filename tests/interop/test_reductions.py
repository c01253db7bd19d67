"""`dsk reduce` and reductions inside `dsk eval` against NumPy: every op × axis choice × dtype on
ragged chunks, NaN and infinities, all-NaN slices, empty reductions, 1-D and 3-D, scans."""

import warnings

import numpy as np
import pytest
import zarr
from helpers import dsk

OPS = ["sum", "prod", "mean", "min", "max", "var", "std", "argmin", "argmax", "any", "all", "count_nonzero",
       "nansum", "nanprod", "nanmean", "nanmin", "nanmax", "nanvar", "nanstd"]



@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    d = tmp_path_factory.mktemp("red")
    rng = np.random.default_rng(11)
    f = rng.standard_normal((9, 7, 5)) * 10
    g = rng.standard_normal((13, 11))
    g[2, :] = np.nan                     # an all-NaN row
    g[5, 3] = np.inf                     # an infinity in a row
    g[7, 1] = np.nan
    g[:, 4] = np.nan                     # an all-NaN column
    data = {
        "f": (f, (4, 3, 2)),
        "g": (g, (5, 4)),
        "h": (rng.integers(-300, 300, (13, 11)).astype("int16"), (6, 5)),
        "u": (rng.integers(0, 3, (13, 11)).astype("uint8"), (13, 2)),
        "b": (rng.random((13, 11)) < 0.7, (4, 4)),
        "s": (rng.standard_normal((13, 11)).astype("float32"), (3, 11)),
        "v": (rng.standard_normal(101), (10,)),
        "e": (np.zeros((0, 6)), (2, 3)),
    }
    paths = {}
    for name, (a, chunks) in data.items():
        p = str(d / f"{name}.zarr")
        z = zarr.create_array(store=p, shape=a.shape, chunks=chunks, dtype=a.dtype)
        if a.size:
            z[...] = a
        paths[name] = p
    return d, {k: v[0] for k, v in data.items()}, paths


def numpy_reduce(a, op, axis, ddof=0, keepdims=False):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fn = np.count_nonzero if op == "count_nonzero" else getattr(np, op)
        kw = {"axis": axis}
        if op in ("var", "std", "nanvar", "nanstd"):
            kw["ddof"] = ddof
        if keepdims and op not in ("argmin", "argmax", "count_nonzero"):
            kw["keepdims"] = True
        return np.asarray(fn(a, **kw))


def run_dsk(d, paths, name, op, axis, ddof=0, keepdims=False):
    expr = f"{name}.{op}("
    args = []
    if axis is not None:
        args.append(f"axis={axis if not isinstance(axis, tuple) else '(' + ', '.join(map(str, axis)) + ')'}")
    if ddof:
        args.append(f"ddof={ddof}")
    if keepdims:
        args.append("keepdims=True")
    expr += ", ".join(args) + ")"
    out = d / "r.npy"
    if out.exists():
        out.unlink()
    r = dsk("eval", expr, f"{name}={paths[name]}", "-o", out, "-q", ok=False)
    if r.returncode != 0:
        # a 0-d result: printed
        r = dsk("eval", expr, f"{name}={paths[name]}", "-q")
        return np.asarray(float(r.stdout.decode().strip().replace("True", "1").replace("False", "0"))), expr
    return np.load(out), expr


def compare(got, want, expr):
    want = np.asarray(want)
    assert got.shape == want.shape, (expr, got.shape, want.shape)
    if want.dtype.kind == "f" or got.dtype.kind == "f":
        tol = 1e-5 if want.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got.astype(float), want.astype(float), rtol=tol, atol=tol, equal_nan=True, err_msg=expr)
    else:
        assert np.array_equal(got.astype(want.dtype), want), (expr, got, want)


CASES = [("f", None), ("f", 0), ("f", 1), ("f", 2), ("f", -1), ("f", (0, 2)), ("g", None), ("g", 0), ("g", 1),
         ("h", None), ("h", 0), ("h", 1), ("u", 1), ("b", 0), ("s", None), ("s", 1), ("v", None), ("v", 0)]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("name,axis", CASES)
def test_reduction_matches_numpy(arrays, op, name, axis):
    d, data, paths = arrays
    a = data[name]
    if op in ("argmin", "argmax") and isinstance(axis, tuple):
        pytest.skip("NumPy takes one axis for arg-reductions")
    if a.dtype.kind != "f" and op.startswith("nan") and op not in ("nansum", "nanmin", "nanmax", "nanprod", "nanmean", "nanvar", "nanstd"):
        pytest.skip()
    want = numpy_reduce(a, op, axis)
    got, expr = run_dsk(d, paths, name, op, axis)
    if want.ndim > 0:
        assert got.dtype == want.dtype, (expr, got.dtype, want.dtype)
    compare(got, want, expr)


@pytest.mark.parametrize("op", ["var", "std", "nanvar", "nanstd"])
@pytest.mark.parametrize("ddof", [1, 2])
def test_ddof(arrays, op, ddof):
    d, data, paths = arrays
    for name, axis in [("f", 1), ("g", 0), ("v", None)]:
        got, expr = run_dsk(d, paths, name, op, axis, ddof=ddof)
        compare(got, numpy_reduce(data[name], op, axis, ddof=ddof), expr)


@pytest.mark.parametrize("op", ["sum", "mean", "max", "std", "any"])
def test_keepdims(arrays, op):
    d, data, paths = arrays
    for axis in [0, (0, 2), None]:
        got, expr = run_dsk(d, paths, "f", op, axis, keepdims=True)
        compare(got, numpy_reduce(data["f"], op, axis, keepdims=True), expr)


@pytest.mark.parametrize("op", ["sum", "prod", "mean", "var", "any", "all", "count_nonzero", "nansum"])
def test_empty_reductions(arrays, op):
    d, data, paths = arrays
    for axis in [None, 0, 1]:
        want = numpy_reduce(data["e"], op, axis)
        got, expr = run_dsk(d, paths, "e", op, axis)
        compare(got, want, expr)


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
def test_scans_match_numpy(arrays, op, tmp_path):
    d, data, paths = arrays
    for name, axis in [("f", 0), ("f", 2), ("h", 1), ("b", 0), ("v", None), ("s", 0)]:
        out = tmp_path / f"{name}{axis}.npy"
        ax = "" if axis is None else f"axis={axis}"
        dsk("eval", f"{name}.{op}({ax})", f"{name}={paths[name]}", "-o", out, "-q")
        with np.errstate(all="ignore"):
            want = getattr(np, op)(data[name] if op == "cumsum" else data[name] / 4 if data[name].dtype.kind == "f" else data[name], axis=axis)
        if op == "cumprod" and data[name].dtype.kind == "f":
            continue  # products of normals under/overflow quickly; checked via the int arrays
        got = np.load(out)
        assert got.dtype == want.dtype, (name, op, got.dtype, want.dtype)
        if got.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-10 if got.dtype == np.float64 else 1e-4, atol=1e-9)
        else:
            assert np.array_equal(got, want), (name, op)


def test_reduce_command_prints_and_writes(arrays, tmp_path):
    d, data, paths = arrays
    r = dsk("reduce", paths["f"], "--op", "mean", "-q")
    assert float(r.stdout) == pytest.approx(np.mean(data["f"]), rel=1e-14)
    dsk("reduce", paths["g"], tmp_path / "m.zarr", "--op", "nanmean", "--axis", "1", "-q")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = np.nanmean(data["g"], axis=1)
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "m.zarr"), mode="r")[...], want, rtol=1e-13, equal_nan=True)


def test_reductions_compose_with_expressions(arrays):
    d, data, paths = arrays
    f = data["f"]
    for expr, want in [
        ("(f - f.mean(axis=0)).max()", (f - f.mean(axis=0)).max()),
        ("(f * f[::-1, ::-1, ::-1]).mean()", (f * f[::-1, ::-1, ::-1]).mean()),
        ("(cos(f)**2).mean(axis=1).std()", (np.cos(f) ** 2).mean(axis=1).std()),
        ("f.sum(axis=2).argmax()", f.sum(axis=2).argmax()),
        ("f.std(axis=(0, 2), ddof=1).sum()", f.std(axis=(0, 2), ddof=1).sum()),
    ]:
        r = dsk("eval", expr, f"f={paths['f']}", "-q")
        assert float(r.stdout) == pytest.approx(float(want), rel=1e-12, abs=1e-12), expr
