"""xarray and Zarr groups, both ways: what dsk writes into a store (`store.zarr/var`) opens with
`xarray.open_zarr` as a Dataset variable with the right dimensions and attributes, and dsk adds
variables to datasets xarray wrote (v2 and v3, consolidated or not) without touching the rest."""

import json
import os
import subprocess
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import DSK, dsk

warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")


def open_ds(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(path, **kw).load()


def tree(path):
    """Every file under path with its bytes (to show members were left untouched)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = open(p, "rb").read()
    return out


@pytest.fixture
def x(tmp_path):
    """A (6, 5) float64 variable `x` (time, lon) in a new store ds.zarr, and its values."""
    dsk("create", "random", tmp_path / "ds.zarr/x", "--shape", "6,5", "--chunks", "4,2", "--seed", "3",
        "--dimension-names", "time,lon", "-q")
    return tmp_path / "ds.zarr", zarr.open_array(tmp_path / "ds.zarr/x")[...]


def test_every_command_output_is_a_dataset_variable(tmp_path, x):
    ds, xv = x
    dsk("transform", ds / "x", ds / "cos2", "--expr", "cos(x)**2", "-q")
    dsk("transform", ds / "x", ds / "xt", "--expr", "x.T", "-q")
    dsk("reduce", ds / "x", ds / "tmean", "--op", "mean", "--axis", "0", "-q")
    dsk("reduce", ds / "x", ds / "csum", "--op", "cumsum", "--axis", "1", "-q")
    # a kept length-1 axis keeps its name (as xarray's keepdims does): another dataset, where
    # lon has length 1
    dsk("reduce", ds / "x", tmp_path / "k.zarr/keep", "--op", "max", "--axis", "1", "--keepdims", "-q")
    k = open_ds(tmp_path / "k.zarr", consolidated=False).keep
    assert k.dims == ("time", "lon")
    np.testing.assert_allclose(k.values, xv.max(axis=1, keepdims=True))
    dsk("eval", "x[2, ::-1] + x.mean(axis=0)", f"x={ds / 'x'}", "-o", ds / "row", "-q")
    dsk("eval", "x - x.mean(axis=0)", f"x={ds / 'x'}", "-o", ds / "anom", "-q")
    dsk("rechunk", ds / "x", ds / "tall", "--chunks", "6,1", "-q")
    dsk("create", "ones", ds / "w", "--shape", "5", "--dimension-names", "lon", "-q")
    d = open_ds(ds, consolidated=False)
    want = {
        "x": (("time", "lon"), xv),
        "cos2": (("time", "lon"), np.cos(xv) ** 2),
        "xt": (("lon", "time"), xv.T),
        "tmean": (("lon",), xv.mean(axis=0)),
        "csum": (("time", "lon"), np.cumsum(xv, axis=1)),
        "row": (("lon",), xv[2, ::-1] + xv.mean(axis=0)),
        "anom": (("time", "lon"), xv - xv.mean(axis=0)),
        "tall": (("time", "lon"), xv),
        "w": (("lon",), np.ones(5)),
    }
    assert set(d.data_vars) == set(want)
    for name, (dims, values) in want.items():
        assert d[name].dims == dims, name
        np.testing.assert_allclose(d[name].values, values, rtol=1e-12, err_msg=name)


def test_dimension_names_option_everywhere(tmp_path, x):
    ds, xv = x
    dsk("transform", ds / "x", ds / "a", "--expr", "x * 2", "--dimension-names", "t,x", "-q")
    dsk("reduce", ds / "x", ds / "b", "--op", "sum", "--axis", "1", "--dimension-names", "t", "-q")
    dsk("eval", "x[::2]", f"x={ds / 'x'}", "-o", ds / "c", "--dimension-names", "t2,lon", "-q")
    dsk("rechunk", ds / "x", ds / "d", "--dimension-names", "tt,ll", "-q")
    for name, dims in [("a", ["t", "x"]), ("b", ["t"]), ("c", ["t2", "lon"]), ("d", ["tt", "ll"])]:
        assert zarr.open_array(ds / name).metadata.dimension_names == tuple(dims)
    r = dsk("transform", ds / "x", ds / "e", "--expr", "x", "--dimension-names", "t", ok=False)
    assert r.returncode == 2 and b"--dimension-names" in r.stderr and b"names 1 axes but the array has 2" in r.stderr
    r = dsk("reduce", ds / "x", tmp_path / "e.npy", "--op", "sum", "--axis", "1", "--dimension-names", "t", ok=False)
    assert r.returncode == 2 and b"applies to Zarr outputs only" in r.stderr


@pytest.mark.parametrize("fmt", [2, 3])
def test_a_variable_added_to_an_xarray_dataset(tmp_path, fmt):
    store = tmp_path / "era.zarr"
    t2m = np.arange(24.0).reshape(4, 6) + 250
    src = xr.Dataset(
        {"t2m": (("time", "lat"), t2m, {"units": "K", "long_name": "2 m temperature"}),
         "mask": (("lat",), np.array([0, 1, 1, 0, 1, 0], dtype="int32"))},
        attrs={"title": "test"},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src.to_zarr(store, zarr_format=fmt, mode="w", consolidated=True)
    before = tree(store / "t2m")
    dsk("reduce", store / "t2m", store / "t2m_mean", "--op", "mean", "--axis", "0", "-q")
    dsk("transform", store / "t2m", store / "t2m_sq", "--expr", "x**2", "-q")
    dsk("transform", store / "t2m", store / "t2m_c", "--expr", "x - 273.15", "-q")
    # consolidated metadata (what open_zarr reads by default) lists the new variables
    d = open_ds(store)
    assert set(d.data_vars) == {"t2m", "mask", "t2m_mean", "t2m_sq", "t2m_c"}
    assert d.attrs == {"title": "test"}
    assert d.t2m_mean.dims == ("lat",) and d.t2m_sq.dims == ("time", "lat")
    np.testing.assert_allclose(d.t2m_mean.values, t2m.mean(axis=0))
    np.testing.assert_allclose(d.t2m_sq.values, t2m**2)
    # the unit survives a mean, not a square
    assert d.t2m_mean.attrs == {"units": "K", "long_name": "2 m temperature"}
    assert d.t2m_sq.attrs == {}
    np.testing.assert_array_equal(d.mask.values, src.mask.values)
    assert tree(store / "t2m") == before
    # written in the group's format
    assert zarr.open_array(store / "t2m_mean").metadata.zarr_format == fmt
    # and the same as an unconsolidated read
    assert set(open_ds(store, consolidated=False).data_vars) == set(d.data_vars)


def test_overwrite_in_a_group_replaces_only_that_array(tmp_path, x):
    ds, xv = x
    dsk("transform", ds / "x", ds / "y", "--expr", "x + 1", "-q")
    before = tree(ds / "x")
    r = dsk("transform", ds / "x", ds / "y", "--expr", "x + 2", ok=False)
    assert r.returncode != 0 and b"already exists" in r.stderr
    dsk("transform", ds / "x", ds / "y", "--expr", "x + 2", "--overwrite", "-q")
    np.testing.assert_allclose(zarr.open_array(ds / "y")[...], xv + 2)
    assert tree(ds / "x") == before
    # the group itself is not an array: never replaced
    r = dsk("transform", ds / "x", ds, "--expr", "x", "--overwrite", ok=False)
    assert r.returncode != 0 and b"is a Zarr group" in r.stderr and (ds / "x/zarr.json").exists()


def test_nested_groups_are_created_and_removed_when_the_run_fails(tmp_path, x):
    ds, xv = x
    dsk("transform", ds / "x", tmp_path / "new.zarr/sub/y", "--expr", "x * 3", "-q")
    g = zarr.open_group(tmp_path / "new.zarr", mode="r")
    assert list(g.group_keys()) == ["sub"]
    np.testing.assert_allclose(g["sub/y"][...], xv * 3)
    np.testing.assert_allclose(open_ds(tmp_path / "new.zarr", group="sub", consolidated=False).y.values, xv * 3)
    # a run that fails leaves no empty store behind
    bad = tmp_path / "bad.zarr"
    dsk("create", "random", bad, "--shape", "4,4", "--chunks", "2,2", "-q")
    with open(bad / "c/0/0", "wb") as f:
        f.write(b"not zstd")
    r = dsk("transform", bad, tmp_path / "out.zarr/deep/y", "--expr", "x + 1", ok=False)
    assert r.returncode == 1 and not (tmp_path / "out.zarr").exists()
    # missing directories that are not a store are not created
    r = dsk("transform", ds / "x", tmp_path / "plain/y.zarr", "--expr", "x", ok=False)
    assert r.returncode == 1 and b"does not exist" in r.stderr and not (tmp_path / "plain").exists()
    # an array holds no arrays
    dsk("create", "ones", ds / "o", "--shape", "3", "--dimension-names", "three", "-q")
    r = dsk("transform", ds / "x", ds / "o/inner", "--expr", "x", ok=False)
    assert r.returncode == 1 and b"is inside the Zarr array" in r.stderr


def test_two_runs_adding_variables_at_once_both_land_in_consolidated_metadata(tmp_path):
    store = tmp_path / "c.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"a": (("t",), np.arange(100.0))}).to_zarr(store, mode="w", consolidated=True)
    procs = [
        subprocess.Popen([DSK, "transform", store / "a", store / f"v{i}", "--expr", f"x * {i}", "-q"])
        for i in range(6)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    d = open_ds(store)
    assert set(d.data_vars) == {"a"} | {f"v{i}" for i in range(6)}
    for i in range(6):
        np.testing.assert_allclose(d[f"v{i}"].values, np.arange(100.0) * i)


def test_ls_and_info_on_a_group(tmp_path, x):
    ds, xv = x
    dsk("reduce", ds / "x", ds / "sub/m", "--op", "mean", "--axis", "1", "-q")
    out = dsk("ls", ds).stdout.decode()
    lines = out.splitlines()
    assert lines[0].split() == ["name", "shape", "dtype", "chunks", "dimensions", "stored"]
    assert any(l.split()[:3] == ["x", "(6,", "5)"] and "time, lon" in l for l in lines)
    assert any(l.startswith("sub/ ") for l in lines) and any(l.startswith("sub/m ") for l in lines)
    j = json.loads(dsk("ls", ds, "--json").stdout)
    assert [m["name"] for m in j["members"]] == ["sub", "sub/m", "x"]
    assert j["members"][2]["array"]["shape"] == [6, 5]
    info = dsk("info", ds).stdout.decode()
    assert "Zarr v3 group" in info and "2 arrays, 1 group" in info
    # an array where a group is expected, and the other way round
    r = dsk("ls", ds / "x", ok=False)
    assert r.returncode == 1 and b"is a Zarr array, not a group" in r.stderr
    r = dsk("reduce", ds, "--op", "mean", ok=False)
    assert r.returncode == 1 and b"is a Zarr group holding sub/m, x" in r.stderr


def test_fill_values_and_attributes_read_and_kept(tmp_path):
    """xarray's masked floats (NaN fill, _FillValue) are read as stored and keep their fill."""
    store = tmp_path / "m.zarr"
    v = np.array([[1.0, np.nan, 3.0], [np.nan, 5.0, 6.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset({"v": (("y", "x"), v, {"units": "mm"})}).to_zarr(store, zarr_format=3, mode="w")
    dsk("transform", store / "v", store / "w", "--expr", "x[:, ::-1]", "-q")
    a = zarr.open_array(store / "w")
    assert np.isnan(a.metadata.fill_value)
    assert a.attrs["units"] == "mm" and "_FillValue" in a.attrs
    np.testing.assert_array_equal(open_ds(store, consolidated=False).w.values, v[:, ::-1])
    assert float(dsk("reduce", store / "v", "--op", "nansum").stdout) == np.nansum(v)


def xr_dataset(path, fmt, consolidated=True):
    """A small dataset as xarray writes it: t2m(time, y, x) in K, cnt(y, x) int32, flag(x) bool."""
    rng = np.random.default_rng(5)
    ds = xr.Dataset({
        "t2m": (("time", "y", "x"), 250 + 30 * rng.random((4, 3, 5)), {"units": "K"}),
        "cnt": (("y", "x"), np.arange(15, dtype="int32").reshape(3, 5)),
        "flag": (("x",), np.array([True, False, True, True, False])),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(path, zarr_format=fmt, mode="w", consolidated=consolidated)
    return ds


def assert_same_through_xarray_and_zarr(store, names):
    """xarray (which masks _FillValue) and zarr-python read the same values."""
    d = open_ds(store)
    for n in names:
        np.testing.assert_array_equal(d[n].values, zarr.open_array(store / n)[...], err_msg=n)
    return d


@pytest.mark.parametrize("fmt", [2, 3])
def test_constants_scalars_and_inherited_fills_in_a_dataset(tmp_path, fmt):
    store = tmp_path / "d.zarr"
    xr_dataset(store, fmt)
    dsk("create", "ones", store / "o", "--shape", "5", "--dimension-names", "x", "-q")
    dsk("create", "full", store / "f7", "--value", "7", "--shape", "5", "--dimension-names", "x", "-q")
    dsk("create", "full", store / "ft", "--value", "true", "--shape", "5", "--dimension-names", "x", "-q")
    dsk("create", "full", tmp_path / "i3.zarr", "--value", "3", "--shape", "5", "--dimension-names", "x", "-q")
    dsk("transform", tmp_path / "i3.zarr", store / "i3", "--expr", "x + 0", "-q")
    dsk("reduce", store / "cnt", store / "total", "--op", "sum", "-q")
    dsk("eval", "x.mean()", f"x={store / 't2m'}", "-o", store / "tmean", "-q")
    d = assert_same_through_xarray_and_zarr(store, ["o", "f7", "ft", "i3", "total", "tmean"])
    np.testing.assert_array_equal(d.o.values, np.ones(5))
    np.testing.assert_array_equal(d.f7.values, np.full(5, 7))
    np.testing.assert_array_equal(d.ft.values, np.full(5, True))
    np.testing.assert_array_equal(d.i3.values, np.full(5, 3))
    assert d.total.dims == () and int(d.total) == 105
    assert d.cnt.dtype == np.int32 and d.cnt.values[0, 0] == 0  # a stored zero is not masked


@pytest.mark.parametrize("fmt", [2, 3])
def test_a_dataset_never_gets_a_variable_xarray_cannot_open(tmp_path, fmt):
    store = tmp_path / "d.zarr"
    xr_dataset(store, fmt)
    before = tree(store)
    # unnamed axes: refused, with names to give
    r = dsk("create", "ones", store / "nodims", "--shape", "5", ok=False)
    assert r.returncode == 2 and b"--dimension-names dim_0" in r.stderr
    # a dimension of another length than the dataset's
    r = dsk("create", "ones", store / "bad", "--shape", "7", "--dimension-names", "x", ok=False)
    assert r.returncode == 2 and b'dimension "x" has length 7 here but 5' in r.stderr
    r = dsk("transform", store / "t2m", store / "cut", "--expr", "x[:, :2]", ok=False)
    assert r.returncode == 2 and b'dimension "y" has length 2' in r.stderr
    # broadcasting two inputs names each axis once
    dsk("eval", "a + b", f"a={store / 'flag'}", f"b={store / 'cnt'}", "-o", store / "ab", "-q")
    assert open_ds(store).ab.dims == ("y", "x")
    # and with names given, the refused ones are written
    dsk("transform", store / "t2m", store / "cut", "--expr", "x[:, :2]", "--dimension-names", "time,y2,x", "-q")
    assert open_ds(store).cut.dims == ("time", "y2", "x")
    for name in ("nodims", "bad"):
        assert not (store / name).exists()
    assert {k: v for k, v in tree(store).items() if k.startswith("t2m")} == {
        k: v for k, v in before.items() if k.startswith("t2m")}


def test_paths_that_would_confuse_a_group_are_refused(tmp_path):
    store = tmp_path / "d.zarr"
    xr_dataset(store, 3)
    r = dsk("create", "ones", f"{store}/sub/../up", "--shape", "5", "--dimension-names", "x", ok=False)
    assert r.returncode == 1 and b"'..'" in r.stderr and not (store / "sub").exists()
    r = dsk("create", "ones", store / "__x", "--shape", "5", "--dimension-names", "x", ok=False)
    assert r.returncode == 1 and b"reserved" in r.stderr
    (store / "plain").mkdir()
    r = dsk("create", "ones", store / "plain/v", "--shape", "5", "--dimension-names", "x", ok=False)
    assert r.returncode == 1 and b"not a group itself" in r.stderr
    (tmp_path / "empty.zarr").mkdir()
    r = dsk("create", "ones", tmp_path / "empty.zarr/g/v", "--shape", "5", ok=False)
    assert r.returncode == 1 and b"not a Zarr group" in r.stderr
    r = dsk("create", "ones", tmp_path / "empty.zarr/v", "--shape", "5", ok=False)
    assert r.returncode == 1 and b"empty directory, not a Zarr group" in r.stderr
    r = dsk("create", "ones", store, "--shape", "5", "--overwrite", ok=False)
    assert r.returncode == 1 and b"is a Zarr group" in r.stderr and b"never replaces a group" in r.stderr
    # a path through a symlink or with ./ lands under the right key of the consolidated metadata
    os.symlink(store, tmp_path / "link.zarr")
    dsk("create", "ones", f"{tmp_path}/link.zarr/./v", "--shape", "5", "--dimension-names", "x", "-q")
    assert "v" in open_ds(store).data_vars


def test_runs_creating_the_same_groups_at_once_all_land(tmp_path):
    for store in (tmp_path / "new.zarr", tmp_path / "existing.zarr"):
        if store.name == "existing.zarr":
            xr_dataset(store, 3)
        procs = [subprocess.Popen([DSK, "create", "ones", store / f"ng/sub/v{i}", "--shape", "5", "-q"],
                                  stderr=subprocess.PIPE) for i in range(12)]
        errs = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 12, b"".join(errs).decode()
        g = zarr.open_group(store / "ng/sub", mode="r")
        assert sorted(g.array_keys()) == sorted(f"v{i}" for i in range(12))
        if store.name == "existing.zarr":
            # every run's entry made it into the consolidated metadata
            meta = json.load(open(store / "zarr.json"))["consolidated_metadata"]["metadata"]
            assert {f"ng/sub/v{i}" for i in range(12)} <= set(meta)
