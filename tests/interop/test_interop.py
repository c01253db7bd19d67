"""Interop with the real zarr-python and NumPy (the oracle).

dsk writes, zarr-python reads and compares with NumPy; zarr-python writes, dsk reads (export) and
NumPy compares. Run through `make test` (or `make test-interop`), which builds dsk and sets DSK.
"""

import json

import numcodecs
import numpy as np
import pytest
import zarr
from helpers import dsk
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]



def zread(path):
    return zarr.open_array(str(path), mode="r")[...]


def assert_same(got, want):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if got.dtype.kind == "f":
        np.testing.assert_array_equal(got, want)  # NaN == NaN here
    else:
        assert np.array_equal(got, want)


# ------------------------------------------------------------------ dsk writes, zarr-python reads


@pytest.mark.parametrize("dtype", DTYPES)
def test_ones_zeros_full_for_every_dtype(tmp_path, dtype):
    shape, chunks = (7, 5), "3,2"
    for kind in ["ones", "zeros"]:
        out = tmp_path / f"{kind}.zarr"
        dsk("create", kind, out, "--shape", "7,5", "--chunks", chunks, "--dtype", dtype)
        assert_same(zread(out), getattr(np, kind)(shape, dtype=dtype))
    value = {"bool": "true", "int8": "-3", "uint8": "200", "float32": "nan", "float64": "-inf"}.get(dtype, "42")
    out = tmp_path / "full.zarr"
    dsk("create", "full", out, "--shape", "7,5", "--chunks", chunks, "--dtype", dtype, "--value", value, "--write-empty-chunks")
    pyvalue = {"true": True, "nan": np.nan, "-inf": -np.inf}.get(value, value)
    assert_same(zread(out), np.full(shape, np.array(pyvalue).astype(dtype) if dtype != "bool" else True, dtype=dtype))


@pytest.mark.parametrize(
    "start,stop,step,dtype",
    [("0", "20", "1", None), ("-7", "20", "3", None), ("10", "-5", "-4", "int16"), ("0.1", "1.0", "0.2", None),
     ("0", "1", "0.1", "float32"), ("5", "5", "1", None), ("-2.5", "7", "0.75", "float64"), ("3", "1000", "7", "uint16")],
)
def test_arange_matches_numpy(tmp_path, start, stop, step, dtype):
    out = tmp_path / "a.zarr"
    args = ["create", "arange", out, "--start", start, "--stop", stop, "--step", step, "--chunks", "4"]
    if dtype:
        args += ["--dtype", dtype]
    dsk(*args)
    conv = (lambda s: int(s)) if all("." not in s for s in (start, stop, step)) else float
    want = np.arange(conv(start), conv(stop), conv(step), dtype=dtype)
    assert_same(zread(out), want)


@pytest.mark.parametrize("num", [0, 1, 2, 7, 50])
def test_linspace_matches_numpy(tmp_path, num):
    out = tmp_path / "l.zarr"
    dsk("create", "linspace", out, "--start", "-1", "--stop", "3.5", "--num", num, "--chunks", "3")
    assert_same(zread(out), np.linspace(-1, 3.5, num))


def test_arange_reshaped_3d(tmp_path):
    out = tmp_path / "a.zarr"
    dsk("create", "arange", out, "--stop", "60", "--shape", "3,4,5", "--chunks", "2,3,2", "--dtype", "int32")
    assert_same(zread(out), np.arange(60, dtype="int32").reshape(3, 4, 5))


# An independent implementation of dsk's counter-based generator (docs/commands.md describes it).
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _bits(seed, n):
    key = _mix(np.uint64(seed) ^ np.uint64(0x6473_6B2D_7261_6E64))
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix(key + i * np.uint64(0x9E3779B97F4A7C15))


def test_random_uniform_is_the_documented_generator_bit_for_bit(tmp_path):
    out = tmp_path / "r.zarr"
    dsk("create", "random", out, "--shape", "37,23", "--chunks", "10,7", "--low", "-2", "--high", "5", "--seed", "9")
    u = (_bits(9, 37 * 23) >> np.uint64(11)).astype(np.int64).astype(np.float64) * 2.0**-53
    want = (-2.0 + 7.0 * u).reshape(37, 23)
    assert_same(zread(out), want)


def test_random_normal_is_box_muller_over_the_documented_stream(tmp_path):
    out = tmp_path / "n.zarr"
    n = 40 * 25
    dsk("create", "random", out, "--shape", "40,25", "--chunks", "9,7", "--dist", "normal", "--mean", "3", "--std", "2",
        "--seed", "5")
    b = _bits(5, n)
    u1 = ((b[0::2] >> np.uint64(11)) + np.uint64(1)).astype(np.int64).astype(np.float64) * 2.0**-53
    u2 = (b[1::2] >> np.uint64(11)).astype(np.int64).astype(np.float64) * 2.0**-53
    r = 2.0 * np.sqrt(-2.0 * np.log(u1))
    want = np.empty(n)
    want[0::2] = 3.0 + r * np.cos(2 * np.pi * u2)
    want[1::2] = 3.0 + r * np.sin(2 * np.pi * u2)
    got = zread(out).reshape(-1)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
def test_from_npy_every_dtype_and_order(tmp_path, dtype, order):
    a = (np.arange(3 * 4 * 5) % 7 - 2).reshape(3, 4, 5)
    a = (a > 0) if dtype == "bool" else (a * (1 if dtype.startswith("u") else -1)).astype(dtype) if dtype.startswith("u") else a.astype(dtype)
    if dtype.startswith("float"):
        a = a / 3
        a.flat[0] = np.nan
        a = a.astype(dtype)
    a = np.asfortranarray(a) if order == "F" else a
    np.save(tmp_path / "a.npy", a)
    dsk("create", "from-npy", tmp_path / "a.npy", tmp_path / "a.zarr", "--chunks", "2,3,2")
    assert_same(zread(tmp_path / "a.zarr"), np.ascontiguousarray(a))


def test_from_npy_big_endian_and_zero_d(tmp_path):
    a = np.arange(12, dtype=">f8").reshape(3, 4) / 7
    np.save(tmp_path / "b.npy", a)
    dsk("create", "from-npy", tmp_path / "b.npy", tmp_path / "b.zarr")
    assert_same(zread(tmp_path / "b.zarr"), a.astype("<f8"))
    np.save(tmp_path / "s.npy", np.array(2.5))
    dsk("create", "from-npy", tmp_path / "s.npy", tmp_path / "s.zarr")
    assert_same(zread(tmp_path / "s.zarr"), np.array(2.5))


def test_from_npy_on_stdin(tmp_path):
    a = np.arange(20, dtype="int64").reshape(4, 5)
    np.save(tmp_path / "a.npy", a)
    dsk("create", "from-npy", "-", tmp_path / "a.zarr", input=(tmp_path / "a.npy").read_bytes())
    assert_same(zread(tmp_path / "a.zarr"), a)


@pytest.mark.parametrize("codec", ["none", "zstd", "zstd:-3", "gzip:9", "blosc", "blosc:zstd:9", "blosc:blosclz:1", "blosc:zlib:4"])
@pytest.mark.parametrize("shard", [None, "6,8"])
def test_codecs_and_sharding_read_by_zarr_python(tmp_path, codec, shard):
    out = tmp_path / "c.zarr"
    args = ["create", "arange", out, "--stop", "130", "--shape", "10,13", "--chunks", "3,4", "--codec", codec, "--dtype", "float32"]
    if shard:
        args += ["--shard", shard]
    dsk(*args)
    z = zarr.open_array(str(out), mode="r")
    assert_same(z[...], np.arange(130, dtype="float32").reshape(10, 13))
    assert z.chunks == (3, 4)
    if shard:
        assert z.shards == (6, 8)


def test_dimension_names_and_fill_value_reach_zarr_python(tmp_path):
    out = tmp_path / "d.zarr"
    dsk("create", "full", out, "--shape", "3,4", "--value", "7", "--dimension-names", "time,space")
    z = zarr.open_array(str(out), mode="r")
    assert z.metadata.dimension_names == ("time", "space")
    assert z.fill_value == 7
    assert z.dtype == np.dtype("int64")
    assert_same(z[...], np.full((3, 4), 7))


# ------------------------------------------------------------------ zarr-python writes, dsk reads


def _zarr_cases():
    yield "v3_zstd", dict(zarr_format=3, compressors=ZstdCodec(level=0))
    yield "v3_blosc", dict(zarr_format=3, compressors=BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"))
    yield "v3_gzip", dict(zarr_format=3, compressors=GzipCodec(level=1))
    yield "v3_none_big", dict(zarr_format=3, compressors=None, serializer=BytesCodec(endian="big"))
    yield "v3_sharded", dict(zarr_format=3, shards="auto")
    yield "v2_default", dict(zarr_format=2)
    yield "v2_F", dict(zarr_format=2, order="F")
    # zarr-python 2's default compressor for years was Blosc; zlib and gzip are common in the wild
    yield "v2_zlib", dict(zarr_format=2, compressors=numcodecs.Zlib(level=3))
    yield "v2_gzip", dict(zarr_format=2, compressors=numcodecs.GZip(level=5))
    # numcodecs' Delta filter (in the array's dtype), before zarr-python's default compressor
    yield "v2_delta", dict(zarr_format=2, filters="delta")


@pytest.mark.parametrize("name,kw", list(_zarr_cases()))
@pytest.mark.parametrize("dtype", ["float64", "int32", "uint8", "bool", "float32"])
def test_zarr_python_arrays_export_equal(tmp_path, name, kw, dtype):
    shape, chunks = (11, 6, 7), (4, 5, 3)
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(shape) * 50).astype(dtype) if dtype != "bool" else rng.random(shape) < 0.3
    kw = dict(kw)
    if kw.get("shards") == "auto":
        kw["shards"] = (8, 5, 6)
    if kw.get("filters") == "delta":
        if dtype == "bool":
            pytest.skip("numcodecs' Delta does not take bools")
        kw["filters"] = [numcodecs.Delta(dtype=dtype)]
    path = tmp_path / "z.zarr"
    z = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, **kw)
    z[...] = data
    if "filters" in kw:
        data = z[...]  # a float delta does not round-trip exactly: what zarr-python reads back
    dsk("export", path, "-o", tmp_path / "z.npy")
    assert_same(np.load(tmp_path / "z.npy"), data)
    info = json.loads(dsk("info", path, "--json").stdout)
    assert info["shape"] == list(shape)
    assert info["chunks"] == list(chunks)
    assert info["dtype"] == dtype
    assert info["zarr_format"] == kw["zarr_format"]
    assert info["nbytes"] == data.nbytes
    if "shards" in kw:
        assert info["shards"] == list(kw["shards"])


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64", "uint64", "float32", "float64"])
def test_delta_filter_slices_and_reductions(tmp_path, dtype):
    """Delta-filtered v2 arrays (integers wrapping in their type), read by region as zarr-python reads them."""
    shape, chunks = (23, 17), (5, 6)
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype) if dtype[0] in "iu" else None
    data = (rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True) if info
            else (rng.standard_normal(shape) * 1e3).astype(dtype))
    path = tmp_path / "d.zarr"
    z = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=2,
                          filters=[numcodecs.Delta(dtype=dtype)], compressors=numcodecs.Zstd(level=1),
                          fill_value=3)
    z[:20, :] = data[:20]  # the last rows stay unwritten: the fill value
    want = z[...]
    for sel, key in [("::-1, 3:16", np.s_[::-1, 3:16]), ("7, :", np.s_[7, :]), ("21:, ::4", np.s_[21:, ::4])]:
        dsk("export", path, "--slice", sel, "-o", tmp_path / "s.npy", "--overwrite")
        assert_same(np.load(tmp_path / "s.npy"), want[key])
    dsk("reduce", path, tmp_path / "m.npy", "--op", "max", "--axis", "0")
    assert_same(np.load(tmp_path / "m.npy"), want.max(axis=0))
    # an output of it is written without the filter, and reads back the same
    dsk("transform", path, tmp_path / "copy.zarr", "--expr", "x")
    assert_same(zarr.open_array(tmp_path / "copy.zarr")[...], want)


def test_delta_filter_in_another_dtype_is_refused_clearly(tmp_path):
    path = tmp_path / "d.zarr"
    z = zarr.create_array(store=str(path), shape=(8,), chunks=(4,), dtype="int64", zarr_format=2,
                          filters=[numcodecs.Delta(dtype="int64", astype="int16")])
    z[...] = np.arange(8)
    r = dsk("export", path, "--format", "csv", ok=False)
    assert r.returncode == 1 and b"delta filter" in r.stderr and b"without the filter" in r.stderr


SLICES = ["::-1, ::-1, ::-1", "3:9, 1, ::2", "-1", "..., 2:-2", "10:2:-3, ::-2, 5", "100:, :", "0:0", "::4, ::5, ::6",
          "-3:, -2:, -1:", "5, 5, 5"]


@pytest.mark.parametrize("sel", SLICES)
def test_export_slices_match_numpy(tmp_path, sel):
    path = tmp_path / "s.zarr"
    data = np.arange(11 * 6 * 7, dtype="int64").reshape(11, 6, 7)
    z = zarr.create_array(store=str(path), shape=data.shape, chunks=(4, 5, 3), dtype="int64")
    z[...] = data
    r = dsk("export", path, "--slice", sel, "--format", "npy")
    out = tmp_path / "s.npy"
    out.write_bytes(r.stdout)
    want = eval(f"data[{sel}]")  # the selection syntax is NumPy's
    assert_same(np.load(out), np.asarray(want))


def test_export_csv_parses_back_with_numpy(tmp_path):
    path = tmp_path / "c.zarr"
    data = np.random.default_rng(3).standard_normal((9, 4))
    data[0, 0], data[1, 1], data[2, 2] = np.nan, np.inf, -np.inf
    z = zarr.create_array(store=str(path), shape=data.shape, chunks=(4, 3), dtype="float64")
    z[...] = data
    text = dsk("export", path, "--format", "csv").stdout.decode()
    back = np.loadtxt(text.splitlines(), delimiter=",")
    assert_same(back, data)  # shortest round-trip text: exact


@pytest.mark.parametrize("chunks,memory", [("11,6,2", "2GiB"), ("11,1,7", "2GiB"), ("3,6,7", "100KiB"), ("1,1,7", "100KiB")])
def test_rechunk_read_by_zarr_python(tmp_path, chunks, memory):
    data = np.random.default_rng(5).standard_normal((11, 6, 7))
    data[0, 0, 0] = np.nan
    src = tmp_path / "src.zarr"
    z = zarr.create_array(store=str(src), shape=data.shape, chunks=(4, 5, 3), dtype="f8")
    z[...] = data
    dsk("rechunk", src, tmp_path / "r.zarr", "--chunks", chunks, "--memory", memory)
    r = zarr.open_array(str(tmp_path / "r.zarr"), mode="r")
    assert r.chunks == tuple(int(c) for c in chunks.split(","))
    assert_same(r[...], data)


def test_rechunk_to_shards_and_reencode(tmp_path):
    data = np.arange(24 * 20, dtype="int32").reshape(24, 20)
    src = tmp_path / "src.zarr"
    z = zarr.create_array(store=str(src), shape=data.shape, chunks=(5, 7), dtype="i4")
    z[...] = data
    dsk("rechunk", src, tmp_path / "s.zarr", "--chunks", "4,10", "--shard", "8,20")
    s = zarr.open_array(str(tmp_path / "s.zarr"), mode="r")
    assert s.chunks == (4, 10) and s.shards == (8, 20)
    assert_same(s[...], data)
    dsk("rechunk", src, tmp_path / "g.zarr", "--codec", "gzip:6")
    g = zarr.open_array(str(tmp_path / "g.zarr"), mode="r")
    assert g.chunks == (5, 7)
    assert_same(g[...], data)


@pytest.mark.parametrize("fmt,dtype", [(3, "float16"), (2, "<f2"), (2, ">f2")])
def test_float16_read_computed_as_float32_and_stored_as_float16(tmp_path, fmt, dtype):
    """float16 arrays: read exactly, computed in float32, results of float16 inputs stored as
    float16 (NumPy's types); single operations match NumPy bit for bit."""
    shape, chunks = (13, 7), (5, 3)
    rng = np.random.default_rng(4)
    data = (rng.standard_normal(shape) * 100).astype("float16")
    data[0, :3] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "h.zarr"
    z = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=fmt,
                          fill_value=np.float16(0.1))
    z[:10] = data[:10]
    want = z[...]  # the last rows: the fill value, 0.1 rounded to float16
    info = json.loads(dsk("info", path, "--json").stdout)
    assert info["dtype"] == "float16" and info["itemsize"] == 2 and info["nbytes"] == want.nbytes
    dsk("export", path, "-o", tmp_path / "h.npy")
    assert_same(np.load(tmp_path / "h.npy"), want.astype("float32"))
    for expr, f in [("x * 3", lambda a: a * np.float16(3)), ("cos(x)", np.cos), ("-x[::-1, 1:]", lambda a: -a[::-1, 1:]),
                    ("sqrt(abs(x))", lambda a: np.sqrt(np.abs(a)))]:
        dsk("transform", path, tmp_path / "o.zarr", "--expr", expr, "--overwrite", "-q")
        got = zarr.open_array(tmp_path / "o.zarr")
        assert got.dtype == np.float16, expr
        assert_same(got[...], f(want))
    dsk("reduce", path, tmp_path / "m.zarr", "--op", "nanmax", "--axis", "0", "-q")
    assert_same(zarr.open_array(tmp_path / "m.zarr")[...], np.nanmax(want, axis=0))
    dsk("reduce", path, tmp_path / "s.zarr", "--op", "mean", "--axis", "1", "-q")
    s = zarr.open_array(tmp_path / "s.zarr")
    assert s.dtype == np.float16
    np.testing.assert_array_equal(s[3:], want[3:].mean(axis=1))
    # with another dtype in the expression, NumPy's promotion: float32 + float16 is float32
    dsk("transform", path, tmp_path / "w.zarr", "--expr", "x * 2", "--dtype", "float64", "-q")
    assert zarr.open_array(tmp_path / "w.zarr").dtype == np.float64


def test_float16_created_and_cast_to(tmp_path):
    dsk("create", "arange", tmp_path / "a.zarr", "--stop", "3000", "--dtype", "float16", "--chunks", "700")
    a = zarr.open_array(tmp_path / "a.zarr")
    assert a.dtype == np.float16
    assert_same(a[...], np.arange(3000, dtype="float32").astype("float16"))
    dsk("transform", tmp_path / "a.zarr", tmp_path / "b.zarr", "--expr", "x / 7", "--dtype", "f2")
    assert_same(zarr.open_array(tmp_path / "b.zarr")[...], (a[...].astype("float32") / 7).astype("float16"))
    (tmp_path / "h.bin").write_bytes(np.ones(3, dtype="float16").tobytes())
    r = dsk("create", "from-raw", tmp_path / "h.bin", tmp_path / "c.zarr", "--dtype", "float16", "--shape", "3",
            ok=False)
    assert r.returncode == 2 and b"float16" in r.stderr


def test_delta_filters_in_another_byte_order_or_with_more_filters_are_refused(tmp_path):
    cases = [("<i4", [numcodecs.Delta(dtype=">i4")]), (">f8", [numcodecs.Delta(dtype="<f8")]),
             ("<i4", [numcodecs.Delta(dtype="<i4"), numcodecs.Shuffle(elementsize=4)])]
    for i, (dtype, filters) in enumerate(cases):
        path = tmp_path / f"d{i}.zarr"
        z = zarr.create_array(store=str(path), shape=(10,), chunks=(4,), dtype=dtype, zarr_format=2, filters=filters)
        z[...] = np.arange(10) * 1000 + 7
        r = dsk("export", path, "--format", "csv", ok=False)
        assert r.returncode == 1 and r.stderr.count(b"\n") == 1, r.stderr
        assert b"delta filter" in r.stderr and b"without" in r.stderr, r.stderr
    # numcodecs also takes NumPy's names for the filter's dtype
    path = tmp_path / "named.zarr"
    z = zarr.create_array(store=str(path), shape=(10,), chunks=(4,), dtype="<i4", zarr_format=2,
                          filters=[numcodecs.Delta(dtype="<i4")])
    z[...] = np.arange(10) * 3
    meta = json.loads((path / ".zarray").read_text())
    meta["filters"][0]["dtype"] = "int32"
    (path / ".zarray").write_text(json.dumps(meta))
    assert dsk("export", path, "--format", "csv").stdout.decode().split() == [str(v) for v in zarr.open_array(path)[...]]


def test_export_format_must_match_the_file_name(tmp_path):
    dsk("create", "ones", tmp_path / "a.zarr", "--shape", "3")
    for args in (["--json", "-o", tmp_path / "j.npy"], ["--format", "json", "-o", tmp_path / "j.csv"]):
        r = dsk("export", tmp_path / "a.zarr", *args, ok=False)
        assert r.returncode == 2 and b"does not match the extension" in r.stderr
    dsk("export", tmp_path / "a.zarr", "--json", "-o", tmp_path / "j.json")
    assert json.loads((tmp_path / "j.json").read_text())["value"] == [1.0, 1.0, 1.0]


def test_float16_literals_promotions_and_casts_as_numpy(tmp_path):
    """Python literals meeting float16 are float16 (NEP 50), int8/uint8/bool with float16 stay
    float16, an explicit astype ends float16; every result bit-equal to NumPy's."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(400) * 30).astype("float16")
    x[:4] = [0.1, 1 / 3, 2048, -0.0]
    zarr.create_array(store=str(tmp_path / "h.zarr"), shape=x.shape, chunks=(64,), dtype="float16")[...] = x
    y = rng.integers(-100, 100, 400).astype("int8")
    zarr.create_array(store=str(tmp_path / "i8.zarr"), shape=y.shape, chunks=(64,), dtype="int8")[...] = y
    with np.errstate(all="ignore"):
        cases = {"x*0.1": x * 0.1, "x+0.1": x + 0.1, "x//0.1": x // 0.1, "x%0.1": x % 0.1, "x+2049": x + 2049,
                 "x*1e5": x * 1e5, "x==0.1": x == 0.1, "x<1/3": x < 1 / 3, "x+y": x + y,
                 "where(x>0.1, x, 0.5)": np.where(x > 0.1, x, 0.5), "maximum(x, 1e-8)": np.maximum(x, 1e-8),
                 "astype(x, 'float32') * 0.1": x.astype("float32") * np.float32(0.1)}
    for expr, want in cases.items():
        dsk("transform", tmp_path / "h.zarr", tmp_path / "o.zarr", "--expr", expr, "--in", f"y={tmp_path / 'i8.zarr'}",
            "--overwrite", "-q")
        got = zarr.open_array(tmp_path / "o.zarr")[...]
        assert got.dtype == want.dtype, expr
        assert_same(got, want)
    dsk("create", "full", tmp_path / "f.zarr", "--shape", "3", "--dtype", "float16", "--value", "1.000488281250001")
    assert_same(zarr.open_array(tmp_path / "f.zarr")[...], np.full(3, 1.000488281250001, dtype="float16"))
    # blosc shuffles float16 by its 2 bytes
    dsk("create", "linspace", tmp_path / "b.zarr", "--start", "0", "--stop", "1", "--num", "1000", "--dtype", "float16",
        "--codec", "blosc:lz4:5")
    codecs = json.loads((tmp_path / "b.zarr/zarr.json").read_text())["codecs"]
    assert codecs[-1]["configuration"]["typesize"] == 2
    for args in (["create", "random", tmp_path / "r.zarr", "--shape", "3", "--dtype", "float16"],
                 ["eval", "x.sum()", f"x={tmp_path / 'h.zarr'}", "--dtype", "float16"]):
        r = dsk(*args, ok=False)
        assert r.returncode == 2 and b"float16" in r.stderr
