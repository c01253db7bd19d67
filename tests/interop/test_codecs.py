"""Every codec dsk writes is read by zarr-python, xarray and Dask without extra packages, in every
dtype dsk writes, standalone (Zarr v3) and inside a Zarr v2 group; `--codec auto` (the default)
chooses per array from samples of the data, and intermediates take DSK_WORK_CODEC."""

import json
import os
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import dsk

CODECS = [
    "auto", "none", "zstd:1", "zstd:3", "gzip:1",
    "blosc:lz4:5", "blosc:lz4:5:bitshuffle", "blosc:lz4:1:noshuffle", "blosc:zstd:1", "blosc:zstd:1:bitshuffle",
    "blosc:lz4hc:5", "blosc:blosclz:5", "blosc:zlib:4",
]
DTYPES = ["float64", "float32", "int32", "uint16", "int8", "bool"]


def values(dtype, shape=(37, 23)):
    """Data with structure and noise (and NaN, inf for floats), so that every codec has work."""
    rng = np.random.default_rng(5)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    field = np.sin(i / 7) + np.cos(j / 5)
    if dtype == "bool":
        return field > 0.8
    if np.dtype(dtype).kind == "f":
        a = (field + 1e-3 * rng.standard_normal(shape)).astype(dtype)
        a[3, 4], a[5, 6], a[7, 8] = np.nan, np.inf, -np.inf
        return a
    info = np.iinfo(dtype)
    a = np.floor(field * 20).astype(np.int64) % 100
    a[0, :5] = [info.min, info.max, 0, 1, info.max - 1]
    return a.astype(dtype)


def codec_of(path):
    meta = json.loads((path / "zarr.json").read_text())
    return [c["name"] for c in meta["codecs"]]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_codec_and_dtype_read_by_zarr_python_xarray_and_dask(tmp_path, codec, dtype):
    a = values(dtype)
    np.save(tmp_path / "a.npy", a)
    out = tmp_path / "ds.zarr" / "v"
    dsk("create", "from-npy", tmp_path / "a.npy", out, "--chunks", "10,7", "--codec", codec,
        "--dimension-names", "y,x", "-q")
    z = zarr.open_array(str(out), mode="r")
    np.testing.assert_array_equal(z[...], a)
    assert z.dtype == a.dtype
    if codec not in ("auto", "none"):
        assert codec.split(":")[0] in codec_of(out)
    if codec == "auto":
        assert len(codec_of(out)) == 2, codec_of(out)  # bytes, then the chosen compressor
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(tmp_path / "ds.zarr", consolidated=False).load()
    np.testing.assert_array_equal(ds["v"].values, a)
    assert ds["v"].dims == ("y", "x")
    np.testing.assert_array_equal(da.from_zarr(str(out)).compute(), a)
    # and dsk reads back what it wrote, through its fast paths and zarrs'
    r = dsk("eval", "x.sum()", f"x={out}", "--json")
    got = json.loads(r.stdout)["value"]
    want = a.sum(dtype=np.float64 if a.dtype.kind == "f" else None)
    if np.isnan(want):
        assert got == "NaN" or (isinstance(got, float) and np.isnan(got))
    else:
        assert float(got) == float(want)


@pytest.mark.parametrize("codec", ["blosc:lz4:5", "blosc:lz4:5:bitshuffle", "blosc:zstd:1:noshuffle", "auto", "zstd:1"])
def test_codecs_in_a_zarr_v2_group(tmp_path, codec):
    g = tmp_path / "v2.zarr"
    zarr.open_group(str(g), mode="w", zarr_format=2)
    a = values("float32")
    np.save(tmp_path / "a.npy", a)
    dsk("create", "from-npy", tmp_path / "a.npy", g / "v", "--chunks", "10,7", "--codec", codec, "-q")
    meta = json.loads((g / "v" / ".zarray").read_text())
    comp = meta["compressor"]
    if codec.startswith("blosc"):
        shuffle = {"": 1, "bitshuffle": 2, "noshuffle": 0}[codec.split(":")[3] if codec.count(":") == 3 else ""]
        assert comp["id"] == "blosc" and comp["shuffle"] == shuffle, comp
    elif codec == "auto":
        assert comp is not None and comp["id"] in ("blosc", "zstd"), comp
    np.testing.assert_array_equal(zarr.open_array(str(g / "v"), mode="r")[...], a)
    np.testing.assert_array_equal(da.from_zarr(str(g / "v")).compute(), a)


def info_codec(path):
    r = dsk("info", path, "--json")
    codecs = json.loads(r.stdout)["codecs"]
    c = codecs[-1]
    conf = c.get("configuration", {})
    if c["name"] == "blosc":
        return f"blosc:{conf['cname']}:{conf['clevel']}:{conf['shuffle']}"
    if c["name"] == "zstd":
        return f"zstd:{conf['level']}"
    return c["name"]


def oracle(path):
    """The codec `auto` picks for the array at `path`, by the rule docs/commands.md states: up to 3
    chunks not all fill value, of up to 9 spread evenly over the chunk grid, each its leading rows
    up to 256 KiB; the first candidate (lz4 byte shuffle, lz4 bit shuffle, zstd 1, blosc zstd 1)
    whose compressed size is at most 5% over the smallest plus 0.5% of the raw size."""
    import numcodecs

    z = zarr.open_array(str(path), mode="r")
    grid = [-(-s // c) for s, c in zip(z.shape, z.chunks)]
    n = int(np.prod(grid))
    tries = min(9, n)
    samples, seen = [], set()
    for k in range(tries):
        lin = k * (n - 1) // (tries - 1) if tries > 1 else 0
        if lin in seen:
            continue
        seen.add(lin)
        idx = np.unravel_index(lin, grid)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, z.chunks, z.shape))
        a = np.ascontiguousarray(z[sl])
        rows = max(1, min(a.shape[0], (256 << 10) // max(1, a[0].nbytes)))
        a = np.ascontiguousarray(a[:rows])
        if (a == z.fill_value).all():
            continue
        samples.append(a)
        if len(samples) == 3:
            break
    if not samples:
        return "blosc:lz4:5:shuffle"
    cands = [("blosc:lz4:5:shuffle", numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE)),
             ("blosc:lz4:5:bitshuffle", numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE)),
             ("zstd:1", numcodecs.Zstd(level=1)),
             ("blosc:zstd:1:shuffle", numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE))]
    if z.dtype.itemsize == 1:
        cands[0] = ("blosc:lz4:5:noshuffle", numcodecs.Blosc("lz4", 5, numcodecs.Blosc.NOSHUFFLE))
        cands[3] = ("blosc:zstd:1:noshuffle", numcodecs.Blosc("zstd", 1, numcodecs.Blosc.NOSHUFFLE))
    raw = sum(a.nbytes for a in samples)
    sizes = [(name, sum(len(c.encode(a)) for a in samples)) for name, c in cands]
    best = min(s for _, s in sizes)
    limit = best + best * 5 // 100 + raw * 5 // 1000
    return next(name for name, s in sizes if s <= limit)


def test_auto_chooses_per_array_from_the_data(tmp_path):
    i = "(ones((300, 2000), chunks=(250, 250)) * arange(2000)).T"
    j = "arange(300)"
    # a smooth float field: lz4 with byte shuffling compresses it as well as anything, fastest
    dsk("eval", f"sin({i} / 97) + cos({j} / 61)", "-o", tmp_path / "smooth.zarr", "-q")
    assert info_codec(tmp_path / "smooth.zarr") == "blosc:lz4:5:shuffle"
    # uniform floats in [0, 1): byte shuffling is within the margin of bit shuffling (docs/benchmarks.md)
    dsk("create", "random", tmp_path / "u.zarr", "--shape", "2000,300", "--chunks", "250,250", "-q")
    assert info_codec(tmp_path / "u.zarr") == "blosc:lz4:5:shuffle"
    # integer labels in patches: lz4 is several times larger than zstd, so zstd
    dsk("eval", f"astype(floor((sin({i} / 97) + cos({j} / 61)) * 3) + 6, 'int32')", "-o", tmp_path / "lab.zarr", "-q")
    assert info_codec(tmp_path / "lab.zarr").startswith(("zstd", "blosc:zstd")), info_codec(tmp_path / "lab.zarr")
    # a sparse mask: the chunks that are all False are passed over when sampling
    dsk("eval", f"(sin({i} / 97) + cos({j} / 61) > 1.6) & ({i} < 400)", "-o", tmp_path / "mask.zarr", "-q")
    assert info_codec(tmp_path / "mask.zarr").startswith(("zstd", "blosc:zstd")), info_codec(tmp_path / "mask.zarr")
    # the documented rule, computed here with numcodecs over the chunks dsk samples
    for name in ("smooth", "u", "lab", "mask"):
        assert info_codec(tmp_path / f"{name}.zarr") == oracle(tmp_path / f"{name}.zarr"), name
    # the same data gets the same codec, whatever the scheduler
    dsk("eval", f"sin({i} / 97) + cos({j} / 61)", "-o", tmp_path / "smooth2.zarr", "--scheduler", "processes", "-q")
    assert info_codec(tmp_path / "smooth2.zarr") == "blosc:lz4:5:shuffle"
    # values behind a reduction cannot be sampled before the run: the documented default
    dsk("eval", "x - x.mean(axis=0)", f"x={tmp_path / 'lab.zarr'}", "-o", tmp_path / "anom.zarr", "-q")
    assert info_codec(tmp_path / "anom.zarr") == "blosc:lz4:5:shuffle"
    # an input dsk did not write keeps its codec through transform (nothing changes for inputs)
    zarr.create_array(str(tmp_path / "zp.zarr"), data=np.arange(12.0).reshape(3, 4), chunks=(2, 2))
    dsk("transform", tmp_path / "zp.zarr", tmp_path / "zp2.zarr", "--expr", "x * 2", "-q")
    assert info_codec(tmp_path / "zp2.zarr").startswith("zstd")
    # --explain says the choice is made when the run starts
    r = dsk("eval", "x + 1", f"x={tmp_path / 'u.zarr'}", "-o", tmp_path / "e.zarr", "--codec", "auto", "--explain")
    assert "auto" in r.stdout.decode()


def test_a_resumed_run_keeps_the_codec_it_chose(tmp_path):
    import glob
    import signal
    import subprocess
    import time

    from helpers import DSK

    args = ["create", "random", "out.zarr", "--shape", "50000,200", "--chunks", "50,200", "--seed", "4",
            "--scheduler", "sync", "--resume"]
    p = subprocess.Popen([DSK, *args, "-q"], cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 60
    while len(glob.glob(str(tmp_path / "*.partial" / "c" / "*" / "*"))) < 20 and p.poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    partial = glob.glob(str(tmp_path / "*.partial"))
    assert partial, "the run ended before it could be killed"
    chosen = json.loads((tmp_path / partial[0] / "zarr.json").read_text())["codecs"]
    dsk(*args, "-q", cwd=tmp_path)
    assert json.loads((tmp_path / "out.zarr" / "zarr.json").read_text())["codecs"] == chosen
    dsk(*[a.replace("out.zarr", "ref.zarr") for a in args], "-q", cwd=tmp_path)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"))[...],
                                  zarr.open_array(str(tmp_path / "ref.zarr"))[...])


def test_intermediates_with_each_work_codec(tmp_path):
    dsk("create", "random", tmp_path / "x.zarr", "--shape", "3000,400", "--chunks", "100,400", "--seed", "2", "-q")
    want = zarr.open_array(str(tmp_path / "x.zarr"))[...]
    for codec in ("none", "blosc:lz4:5", "zstd:1", "gzip:1"):
        out = tmp_path / f"t_{codec.replace(':', '_')}.zarr"
        env_run = dsk_env({"DSK_WORK_CODEC": codec})
        r = env_run("rechunk", tmp_path / "x.zarr", out, "--chunks", "3000,4", "--memory", "4MiB", "--explain")
        assert "two passes" in r.stdout or "work dir" in r.stdout, r.stdout
        r = env_run("rechunk", tmp_path / "x.zarr", out, "--chunks", "3000,4", "--memory", "4MiB", "-q")
        assert r.returncode == 0, r.stderr
        np.testing.assert_array_equal(zarr.open_array(str(out))[...], want)
    two_pass = ("rechunk", tmp_path / "x.zarr", tmp_path / "bad.zarr", "--chunks", "3000,4", "--memory", "4MiB")
    for bad in ("lzma", "auto", "blosc:lz9"):
        env_run = dsk_env({"DSK_WORK_CODEC": bad})
        # a run that makes work arrays is refused before it starts, explained or not
        for extra in ("-q", "--explain"):
            r = env_run(*two_pass, extra)
            assert r.returncode == 2 and "DSK_WORK_CODEC" in r.stderr and "\n" not in r.stderr.strip(), r.stderr
            assert not (tmp_path / "bad.zarr").exists()
        # commands that make none ignore it
        assert env_run("info", tmp_path / "x.zarr").returncode == 0
        r = env_run("transform", tmp_path / "x.zarr", tmp_path / "t.zarr", "--expr", "x + 1", "--overwrite", "-q")
        assert r.returncode == 0, r.stderr
    # blank is unset
    r = dsk_env({"DSK_WORK_CODEC": " "})(*two_pass, "-q")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "bad.zarr"))[...], want)


def dsk_env(env):
    import subprocess

    from helpers import DSK

    def run(*args):
        return subprocess.run([DSK, *map(str, args)], capture_output=True, text=True, env={**os.environ, **env})

    return run


@pytest.mark.parametrize("io", ["auto", "direct", "buffered"])
def test_every_io_mode_writes_the_same_array(tmp_path, io):
    out = tmp_path / "o.zarr"
    # chunks of 2 MiB: large enough for O_DIRECT under --io direct
    dsk("create", "random", out, "--shape", "1024,1024", "--chunks", "512,512", "--seed", "9", "--io", io,
        "--codec", "none", "-q")
    dsk("create", "random", tmp_path / "ref.zarr", "--shape", "1024,1024", "--chunks", "512,512", "--seed", "9",
        "--codec", "none", "--io", "buffered", "-q")
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], zarr.open_array(str(tmp_path / "ref.zarr"))[...])
