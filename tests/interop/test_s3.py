"""dsk on object storage: s3:// arrays on a real S3 server (SeaweedFS on loopback) and read-only
http(s):// inputs (a static file server on loopback).

Every result on S3 is compared bit for bit with the same run on local disk; zarr-python (through
obstore) is the independent reader and writer of the objects. Errors are one line naming the URL.
The S3 server is started once for the module (s3util.s3); the crash tests have one of their own.
"""

import json
import os
import re
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
import zarr

import s3util
from s3util import BUCKET, DSK, KEY2, PUBLIC, SECRET2, run_dsk

s3 = s3util.s3  # fixtures (module scope)
http_static = s3util.http_static

pytestmark = pytest.mark.timeout(180)

X_ARGS = ["--shape", "100,70", "--chunks", "30,40", "--dist", "normal", "--seed", "1"]


# ------------------------------------------------------------------------------------------ helpers


def slug(request):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name).strip("_")[:90]


@pytest.fixture
def at(request, s3, tmp_path):
    """at('s3', 'a.zarr'): a fresh s3://dsk-test/<test>/a.zarr; at('local', 'a.zarr'): a path in tmp_path."""
    base = f"s3://{BUCKET}/{slug(request)}"
    s3.delete_prefix(base)

    def place(kind, name):
        return f"{base}/{name}" if kind == "s3" else str(tmp_path / kind / name)

    (tmp_path / "local").mkdir()
    (tmp_path / "ref").mkdir()
    return place


@pytest.fixture(scope="module")
def xin(s3, tmp_path_factory):
    """The input x (100×70 float64, uneven chunks 30×40), written by dsk locally and copied to S3
    object by object (not by dsk)."""
    d = tmp_path_factory.mktemp("xin")
    local = str(d / "x.zarr")
    run_dsk("create", "random", local, *X_ARGS, "-q")
    url = f"s3://{BUCKET}/inputs/x.zarr"
    s3.upload_dir(local, url)
    return {"local": local, "ref": local, "s3": url}


def is_s3(loc):
    return str(loc).startswith("s3://")


def read(s3, loc):
    """The array at loc as NumPy, read by zarr-python (obstore for s3://)."""
    if is_s3(loc):
        return s3.zarr_open(loc)[...]
    return zarr.open_array(str(loc), mode="r")[...]


def objects(s3, loc):
    """Every stored object of the array at loc: key -> bytes."""
    if is_s3(loc):
        return {k: s3.get(f"{loc}/{k}") for k in s3.keys(loc)}
    out = {}
    for dirpath, _, files in os.walk(loc):
        for f in files:
            full = os.path.join(dirpath, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, loc).replace(os.sep, "/")] = fh.read()
    return out


def assert_bits(got, want):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got, want, equal_nan=got.dtype.kind in "fc"), "values differ"
    assert got.tobytes() == want.tobytes(), "values equal but bits differ"


def assert_same_array(s3, got, want):
    """The array at `got` holds the same objects, byte for byte, and the same values as `want`."""
    a, b = objects(s3, got), objects(s3, want)
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    for k in a:
        assert a[k] == b[k], f"object {k} differs between {got} and {want}"
    assert_bits(read(s3, got), read(s3, want))


def one_line_error(r, *must, url=None, codes=(1,)):
    """dsk failed with one line on stderr, no panic or traceback, naming `url`, containing one of
    the |-separated alternatives of each of `must` (case-insensitive). Returns the line."""
    err = r.stderr.decode(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert r.returncode in codes, f"exit {r.returncode}, stderr:\n{err}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    for bad in ("panicked", "Traceback", "RUST_BACKTRACE", "stack backtrace"):
        assert bad not in err, err
    line = lines[0]
    if url is not None:
        assert url in line, f"{url!r} not named in: {line}"
    for m in must:
        assert any(alt in line.lower() for alt in m.lower().split("|")), f"none of {m!r} in: {line}"
    return line


def fill(args, **where):
    return [a.format(**where) for a in args]


# ------------------------------------------------------------------------ 1. every command, S3 = local

ARRAY_CASES = {
    "transform": ["transform", "{x}", "{out}", "--expr", "cos(x)**2"],
    "eval": ["eval", "x * x[::-1, ::-1]", "x={x}", "-o", "{out}"],
    "reduce-sum-axis1": ["reduce", "{x}", "{out}", "--op", "sum", "--axis", "1"],
    "reduce-argmax-axis0": ["reduce", "{x}", "{out}", "--op", "argmax", "--axis", "0"],
    "reduce-cumsum-axis0": ["reduce", "{x}", "{out}", "--op", "cumsum", "--axis", "0"],
    "rechunk": ["rechunk", "{x}", "{out}", "--chunks", "100,7"],
}
MIXES = [("local", "s3"), ("s3", "local"), ("s3", "s3")]


@pytest.mark.parametrize("inp,out", MIXES, ids=[f"{a}-to-{b}" for a, b in MIXES])
@pytest.mark.parametrize("case", sorted(ARRAY_CASES))
def test_array_commands_s3_equal_local(s3, xin, at, case, inp, out):
    args = ARRAY_CASES[case]
    ref = at("ref", "o.zarr")
    run_dsk(*fill(args, x=xin["local"], out=ref), "-q")
    dest = at(out, "o.zarr")
    run_dsk(*fill(args, x=xin[inp], out=dest), "-q", env=s3.env())
    assert_same_array(s3, dest, ref)


CREATE_CASES = {
    "random": ["create", "random", "{out}", *X_ARGS],
    "arange-int32": ["create", "arange", "{out}", "--stop", "7000", "--shape", "100,70", "--chunks", "30,40",
                     "--dtype", "int32"],
    "full-nan-float32": ["create", "full", "{out}", "--shape", "33,17", "--chunks", "8,5", "--dtype", "float32",
                         "--value", "nan", "--write-empty-chunks"],
    "ones-3d": ["create", "ones", "{out}", "--shape", "5,6,7", "--chunks", "2,4,3", "--dtype", "uint16"],
}


@pytest.mark.parametrize("case", sorted(CREATE_CASES))
def test_create_on_s3_equal_local(s3, at, case):
    ref = at("ref", "c.zarr")
    run_dsk(*fill(CREATE_CASES[case], out=ref), "-q")
    dest = at("s3", "c.zarr")
    run_dsk(*fill(CREATE_CASES[case], out=dest), "-q", env=s3.env())
    assert_same_array(s3, dest, ref)


PRINT_CASES = {
    "info-json": ["info", "{x}", "--json"],
    "info-text": ["info", "{x}"],
    "export-csv-slice": ["export", "{x}", "--slice", "0:3, 0:4", "--format", "csv"],
    "export-npy-stdout": ["export", "{x}", "--format", "npy"],
    "export-raw-step": ["export", "{x}", "--slice", "::-3, 5", "--format", "raw"],
    "eval-scalar": ["eval", "x[0, 0] * x[-1, -1]", "x={x}"],
    "eval-mean-of-two": ["eval", "(x * y[::-1, ::-1]).mean()", "x={x}", "y={y}"],
    "reduce-mean": ["reduce", "{x}", "--op", "mean"],
    "reduce-std-axis0-csv": ["reduce", "{x}", "--op", "std", "--axis", "0", "--format", "csv"],
}


@pytest.mark.parametrize("case", sorted(PRINT_CASES))
def test_printing_commands_s3_equal_local(s3, xin, case):
    args = PRINT_CASES[case]
    quiet = [] if args[0] == "info" else ["-q"]  # info prints no progress: it takes no -q
    want = run_dsk(*fill(args, x=xin["local"], y=xin["local"]), *quiet).stdout
    got = run_dsk(*fill(args, x=xin["s3"], y=xin["local"]), *quiet, env=s3.env()).stdout
    if case == "info-json":
        g, w = json.loads(got), json.loads(want)
        assert g.pop("path") == xin["s3"]
        w.pop("path")
        assert g == w
    elif case == "info-text":
        assert got.replace(xin["s3"].encode(), b"X") == want.replace(xin["local"].encode(), b"X")
    else:
        assert got == want


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_export_from_s3_to_file(s3, xin, tmp_path, fmt):
    run_dsk("export", xin["local"], "--format", fmt, "-o", tmp_path / f"want.{fmt}", "-q")
    run_dsk("export", xin["s3"], "--format", fmt, "-o", tmp_path / f"got.{fmt}", "-q", env=s3.env())
    assert (tmp_path / f"got.{fmt}").read_bytes() == (tmp_path / f"want.{fmt}").read_bytes()


@pytest.mark.parametrize("case", ["plot-svg", "plot-png", "graph-dot"])
def test_plot_and_graph_of_s3_input(s3, xin, tmp_path, case):
    """Pictures of an S3 array are those of the local one (the array's name aside)."""
    ext = case.split("-")[1]
    if case.startswith("plot"):
        args = ["plot", "{x}", "--slice", "::2, 10:60", "--size", "400x300", "-o", "{o}"]
    else:
        # (the same --workers: arrays on object storage get more by default, and the plan shows it)
        args = ["graph", "(x * x[::-1, ::-1]).mean(axis=0)", "x={x}", "-o", "{o}", "--workers", "2"]
    want, got = tmp_path / f"want.{ext}", tmp_path / f"got.{ext}"
    run_dsk(*fill(args, x=xin["local"], o=want), "-q")
    run_dsk(*fill(args, x=xin["s3"], o=got), "-q", env=s3.env())
    if ext == "png":
        assert got.read_bytes() == want.read_bytes()
        return
    w, g = want.read_text(), got.read_text()
    for name in (xin["local"], os.path.basename(os.path.dirname(xin["local"]))):
        w = w.replace(name, "X")
    assert g.replace(xin["s3"], "X") == w


def test_trailing_slash(s3, xin):
    want = json.loads(run_dsk("info", xin["s3"], "--json", env=s3.env()).stdout)
    got = json.loads(run_dsk("info", xin["s3"] + "/", "--json", env=s3.env()).stdout)
    got.pop("path"), want.pop("path")
    assert got == want


# work dir on S3: a reduction that spills its partials, a rechunk in two passes
WORK_CASES = {
    "reduce-std-spill": (["create", "random", "{src}", "--shape", "300,200", "--chunks", "10,10", "--seed", "7"],
                         ["reduce", "{src}", "{out}", "--op", "std", "--axis", "0", "--memory", "16KiB"]),
    "rechunk-two-pass": (["create", "random", "{src}", "--shape", "120,80", "--chunks", "120,8", "--seed", "3"],
                         ["rechunk", "{src}", "{out}", "--chunks", "8,80", "--memory", "128KiB"]),
}


@pytest.mark.parametrize("arrays", ["s3", "local"])
@pytest.mark.parametrize("case", sorted(WORK_CASES))
def test_work_dir_on_s3(s3, at, request, case, arrays):
    make, args = WORK_CASES[case]
    src_ref, ref = at("ref", "src.zarr"), at("ref", "o.zarr")
    run_dsk(*fill(make, src=src_ref), "-q")
    run_dsk(*fill(args, src=src_ref, out=ref), "-q")
    # the plan does need a work dir (so the S3 one is really used)
    plan = run_dsk(*fill(args, src=src_ref, out=at("ref", "plan.zarr")), "--explain").stdout.decode()
    assert "work dir" in plan, plan

    src, dest = at(arrays, "src.zarr"), at(arrays, "o.zarr")
    if arrays == "s3":
        s3.upload_dir(src_ref, src)
    else:
        src = src_ref
    scratch = f"s3://{BUCKET}/scratch-{slug(request)}"
    run_dsk(*fill(args, src=src, out=dest), "--work-dir", scratch, "-q", env=s3.env())
    assert_same_array(s3, dest, ref)
    assert s3.keys(scratch) == [], f"the work dir {scratch} was left with objects"


def test_processes_scheduler_s3_in_and_out(s3, xin, at):
    args = ["transform", "{x}", "{out}", "--expr", "sin(x) * 3 + x**2", "--scheduler", "processes", "--workers", "2"]
    ref = at("ref", "p.zarr")
    run_dsk(*fill(args, x=xin["local"], out=ref), "-q")
    dest = at("s3", "p.zarr")
    run_dsk(*fill(args, x=xin["s3"], out=dest), "-q", env=s3.env())
    assert_same_array(s3, dest, ref)


def test_overwrite_replaces_an_s3_array(s3, at):
    dest = at("s3", "o.zarr")
    run_dsk("create", "random", dest, "--shape", "40,40", "--chunks", "10,10", "-q", env=s3.env())
    run_dsk("create", "ones", dest, "--shape", "7,9", "--chunks", "4,4", "--dtype", "int8", "-q", "--overwrite",
            env=s3.env())
    ref = at("ref", "o.zarr")
    run_dsk("create", "ones", ref, "--shape", "7,9", "--chunks", "4,4", "--dtype", "int8", "-q")
    # the old array's chunks are gone: the objects are exactly the new array's
    assert_same_array(s3, dest, ref)


# ---------------------------------------------------------------------------------------- 2. errors


def test_error_wrong_secret(s3, xin, at):
    env = s3.env(AWS_SECRET_ACCESS_KEY="wrong")
    r = run_dsk("info", xin["s3"], env=env, ok=False)
    one_line_error(r, "secret|access denied", url=xin["s3"])
    r = run_dsk("reduce", xin["s3"], "--op", "sum", env=env, ok=False)
    one_line_error(r, "secret|access denied", url=xin["s3"])
    dest = at("s3", "w.zarr")
    r = run_dsk("create", "ones", dest, "--shape", "4,4", "--chunks", "2,2", env=env, ok=False)
    one_line_error(r, "secret|access denied", url=dest)
    assert s3.keys(dest) == []


def test_error_unknown_access_key(s3, xin):
    r = run_dsk("info", xin["s3"], env=s3.env(AWS_ACCESS_KEY_ID="NOSUCHKEY"), ok=False)
    one_line_error(r, "access key|access denied", url=xin["s3"])


@pytest.mark.parametrize("cmd", ["info", "write"])
def test_error_missing_bucket(s3, cmd):
    url = "s3://no-such-bucket/x.zarr"
    if cmd == "info":
        r = run_dsk("info", url, env=s3.env(), ok=False)
    else:
        r = run_dsk("create", "ones", url, "--shape", "4,4", "--chunks", "2,2", env=s3.env(), ok=False)
    line = one_line_error(r, "does not exist", "bucket", url=url)
    assert "no-such-bucket" in line


def test_error_missing_array(s3, at):
    url = f"s3://{BUCKET}/nope.zarr"
    one_line_error(run_dsk("info", url, env=s3.env(), ok=False), "does not exist", url=url)
    one_line_error(run_dsk("transform", url, at("s3", "t.zarr"), "--expr", "x+1", env=s3.env(), ok=False),
                   "does not exist", url=url)
    one_line_error(run_dsk("eval", "x.sum()", f"x={url}", env=s3.env(), ok=False), "does not exist", url=url)


def test_error_server_down(s3, xin):
    (port,) = s3util.free_port_pairs(1)
    t = time.time()
    r = run_dsk("info", xin["s3"], env=s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}"), ok=False)
    one_line_error(r, "no answer|connect|server", url=xin["s3"])
    assert time.time() - t < 30, "DSK_STORAGE_RETRY_TIMEOUT=5 should bound the retries"


def test_error_unsupported_scheme(s3, at):
    for args in (["info", "gs://b/x.zarr"], ["transform", "gs://b/x.zarr", at("local", "o.zarr"), "--expr", "x"],
                 ["create", "ones", "gs://b/x.zarr", "--shape", "2", "--chunks", "1"]):
        r = run_dsk(*args, env=s3.env(), ok=False)
        one_line_error(r, "s3://", codes=(1, 2))


def test_error_write_to_http(s3, xin, http_static):
    url = f"{http_static.url}/out.zarr"
    r = run_dsk("create", "ones", url, "--shape", "4,4", "--chunks", "2,2", env=s3.env(), ok=False)
    one_line_error(r, "read-only", url=url)
    r = run_dsk("transform", xin["s3"], url, "--expr", "x*2", env=s3.env(), ok=False)
    one_line_error(r, "read-only", url=url)
    assert not os.path.exists(os.path.join(http_static.root, "out.zarr"))


def test_error_output_exists(s3, xin, at):
    dest = at("s3", "e.zarr")
    run_dsk("create", "zeros", dest, "--shape", "6,6", "--chunks", "3,3", "--write-empty-chunks", "-q", env=s3.env())
    before = objects(s3, dest)
    r = run_dsk("create", "ones", dest, "--shape", "6,6", "--chunks", "3,3", env=s3.env(), ok=False)
    one_line_error(r, "exists", "--overwrite", url=dest)
    r = run_dsk("transform", xin["s3"], dest, "--expr", "x+1", env=s3.env(), ok=False)
    one_line_error(r, "exists", "--overwrite", url=dest)
    assert objects(s3, dest) == before


@pytest.mark.parametrize("with_array", [False, True], ids=["only-other-objects", "array-and-other-objects"])
def test_error_overwrite_refuses_non_zarr_objects(s3, at, with_array):
    dest = at("s3", "mixed.zarr")
    if with_array:
        run_dsk("create", "ones", dest, "--shape", "6,6", "--chunks", "3,3", "-q", env=s3.env())
    s3.put(f"{dest}/notes.txt", b"my notes, not an array")
    s3.put(f"{dest}/sub/data.csv", b"1,2,3\n")
    before = objects(s3, dest)
    r = run_dsk("create", "zeros", dest, "--shape", "6,6", "--chunks", "3,3", "--overwrite", env=s3.env(), ok=False)
    one_line_error(r, "zarr", url=dest)
    assert objects(s3, dest) == before, "objects under the prefix were touched"


# ------------------------------------------------------------------------------- 3. server killed


@pytest.fixture(scope="module")
def crash_srv(tmp_path_factory):
    srv = s3util.start_server(tmp_path_factory.mktemp("weed-crash"), buckets=(BUCKET,))
    yield srv
    srv.terminate()  # the s3 fixture's teardown (or exit) finishes it, their grace periods overlapping


def _kill_mid_run(srv, args, url, need_chunks=4, timeout=60):
    """Start dsk, SIGKILL the server once `need_chunks` chunks are stored, and return dsk's result."""
    p = subprocess.Popen([DSK, *map(str, args)], env=srv.env(DSK_TEST_TASK_DELAY_MS=50),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + timeout
        while True:
            assert p.poll() is None, "dsk ended before the kill:\n" + p.stderr.read().decode()
            assert time.time() < deadline, "no chunks stored in time"
            if sum(k.startswith("c/") for k in srv.keys(url)) >= need_chunks:
                break
            time.sleep(0.05)
        srv.kill()
        t = time.time()
        out, err = p.communicate(timeout=120)
        took = time.time() - t
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, out, err, took


@pytest.mark.parametrize("what", ["create", "transform"])
def test_server_killed_mid_run_leaves_no_array(crash_srv, tmp_path, what):
    url = f"s3://{BUCKET}/killed-{what}/k.zarr"
    if what == "create":
        args = ["create", "random", url, "--shape", "2000,2000", "--chunks", "100,100"]
    else:
        src = f"s3://{BUCKET}/killed-{what}/src.zarr"
        run_dsk("create", "random", src, "--shape", "1000,1000", "--chunks", "50,50", "-q", env=crash_srv.env())
        args = ["transform", src, url, "--expr", "cos(x)**2"]
    try:
        code, out, err, took = _kill_mid_run(crash_srv, args, url)
    finally:
        crash_srv.start()  # on the same data dir and ports
        crash_srv.wait_writable()
    text = err.decode(errors="replace")
    assert code != 0, text
    assert "panicked" not in text and "Traceback" not in text, text
    assert took < 60, f"dsk took {took:.0f} s to give up after the server died"
    # no complete-looking array under the prefix
    keys = crash_srv.keys(url)
    assert any(k.startswith("c/") for k in keys), f"the kill did not land mid-run: {keys}"
    assert "zarr.json" not in keys and ".zarray" not in keys, keys
    with pytest.raises(Exception):
        crash_srv.zarr_open(url)
    # the next run to write there takes the prefix over: the marker names a gone process of this host
    run_dsk("create", "ones", url, "--shape", "10,10", "--chunks", "5,5", "-q", env=crash_srv.env())
    ref = tmp_path / "ref.zarr"
    run_dsk("create", "ones", ref, "--shape", "10,10", "--chunks", "5,5", "-q")
    assert_same_array(crash_srv, url, str(ref))
    # and the failed run said so in one line naming the array it lost (its output, or its input)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert f"s3://{BUCKET}/killed-{what}/" in lines[0], lines[0]


# ----------------------------------------------------------------------------- 4. http:// inputs


@pytest.fixture(scope="module")
def xhttp(xin, http_static):
    return http_static.add(xin["local"], "x.zarr")


def test_http_info(s3, xin, xhttp):
    got = json.loads(run_dsk("info", xhttp, "--json", env=s3.env()).stdout)
    want = json.loads(run_dsk("info", xin["local"], "--json").stdout)
    assert got.pop("path") == xhttp
    want.pop("path")
    # HTTP cannot list: no stored size (docs/cloud.md), everything else as on disk
    for k in ("nbytes_stored", "compression_ratio"):
        assert got.pop(k, None) is None, k
        want.pop(k)
    assert got == want
    text = run_dsk("info", xhttp, env=s3.env()).stdout.decode()
    assert re.search(r"^shape +\(100, 70\)$", text, re.M), text


def test_http_missing_chunk_reads_as_fill_value(s3, xin, http_static, tmp_path):
    """A chunk the server does not have (404) is the fill value, as on disk."""
    local = tmp_path / "holes.zarr"
    shutil.copytree(xin["local"], local)
    os.remove(local / "c" / "1" / "1")
    url = http_static.add(local, "holes.zarr")
    want = run_dsk("export", local, "--format", "npy", "-q").stdout
    got = run_dsk("export", url, "--format", "npy", "-q", env=s3.env()).stdout
    assert got == want
    assert (read(s3, str(local))[30:60, 40:70] == 0).all()


@pytest.mark.parametrize("args", [["reduce", "{x}", "--op", "sum"], ["reduce", "{x}", "--op", "max", "--axis", "1",
                                                                     "--format", "csv"],
                                  ["export", "{x}", "--slice", "0:3, 0:4", "--format", "csv"],
                                  ["eval", "x[-1, -1] - x[0, 0]", "x={x}"]],
                         ids=["sum", "max-axis1", "export", "eval"])
def test_http_printing_equal_local(s3, xin, xhttp, args):
    want = run_dsk(*fill(args, x=xin["local"]), "-q").stdout
    got = run_dsk(*fill(args, x=xhttp), "-q", env=s3.env()).stdout
    assert got == want


def test_http_to_s3_transform(s3, xin, xhttp, at):
    ref, dest = at("ref", "t.zarr"), at("s3", "t.zarr")
    run_dsk("transform", xin["local"], ref, "--expr", "x*2", "-q")
    run_dsk("transform", xhttp, dest, "--expr", "x*2", "-q", env=s3.env())
    assert_same_array(s3, dest, ref)


def test_http_without_aws_settings(s3, xin, xhttp, tmp_path):
    """An http:// input needs no AWS variables at all."""
    env = s3.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_ENDPOINT_URL=None, AWS_REGION=None)
    run_dsk("export", xhttp, "--format", "npy", "-o", tmp_path / "got.npy", "-q", env=env)
    run_dsk("export", xin["local"], "--format", "npy", "-o", tmp_path / "want.npy", "-q")
    assert (tmp_path / "got.npy").read_bytes() == (tmp_path / "want.npy").read_bytes()


def test_http_zarr_python_v2_input(s3, http_static, tmp_path):
    data = np.arange(23 * 17, dtype="float32").reshape(23, 17) / 7
    data[3, 4] = np.nan
    data[20:, 15:] = np.nan
    local = tmp_path / "v2.zarr"
    a = zarr.create_array(str(local), shape=data.shape, chunks=(5, 6), dtype=data.dtype, zarr_format=2,
                          fill_value=np.nan)
    a[...] = data
    url = http_static.add(local, "v2.zarr")
    run_dsk("export", url, "--format", "npy", "-o", tmp_path / "got.npy", "-q", env=s3.env())
    assert_bits(np.load(tmp_path / "got.npy"), data)


def test_http_missing_array(s3, http_static):
    url = f"{http_static.url}/nope.zarr"
    one_line_error(run_dsk("info", url, env=s3.env(), ok=False), "does not exist", url=url)


# ---------------------------------------------------------------------------- 5. zarr-python on S3


def test_zarr_python_reads_what_dsk_wrote(s3, xin, at):
    for name, args in [("r.zarr", ["create", "random", "{out}", "--shape", "50,30", "--chunks", "16,7",
                                   "--dtype", "float32", "--seed", "5"]),
                       ("t.zarr", ["transform", "{x}", "{out}", "--expr", "where(x > 0, x, nan)"])]:
        ref, dest = at("ref", name), at("s3", name)
        run_dsk(*fill(args, x=xin["local"], out=ref), "-q")
        run_dsk(*fill(args, x=xin["s3"], out=dest), "-q", env=s3.env())
        got, want = s3.zarr_open(dest), zarr.open_array(ref, mode="r")
        assert got.metadata.to_dict() == want.metadata.to_dict()
        assert_bits(got[...], want[...])
    assert np.isnan(s3.zarr_open(at("s3", "t.zarr"))[...]).any()


ZP_CASES = [(2, "float32"), (3, "float32"), (2, "int16"), (3, "float64"), (3, "uint8")]


@pytest.mark.parametrize("fmt,dtype", ZP_CASES, ids=[f"v{f}-{d}" for f, d in ZP_CASES])
def test_dsk_reads_what_zarr_python_wrote(s3, at, tmp_path, fmt, dtype):
    rng = np.random.default_rng(fmt)
    data = (rng.normal(size=(53, 37)) * 50).astype(dtype)
    fill_value = 0
    if data.dtype.kind == "f":
        data[rng.random(data.shape) < 0.1] = np.nan
        data[40:, :] = np.nan  # whole chunks of NaN: not stored when NaN is the fill value
        fill_value = np.nan
    url = at("s3", "zp.zarr")
    a = zarr.create_array(s3.zarr_store(url, read_only=False), shape=data.shape, chunks=(16, 10), dtype=dtype,
                          zarr_format=fmt, fill_value=fill_value)
    a[...] = data
    keys = s3.keys(url)
    assert (".zarray" if fmt == 2 else "zarr.json") in keys, keys
    info = json.loads(run_dsk("info", url, "--json", env=s3.env()).stdout)
    assert (info["zarr_format"], info["shape"], info["dtype"]) == (fmt, [53, 37], dtype)
    run_dsk("export", url, "--format", "npy", "-o", tmp_path / "got.npy", "-q", env=s3.env())
    assert_bits(np.load(tmp_path / "got.npy"), data)
    # and back: dsk computes on it into S3, zarr-python reads the result
    out = at("s3", "plus.zarr")
    run_dsk("transform", url, out, "--expr", "x + x", "-q", env=s3.env())
    assert_bits(s3.zarr_open(out)[...], data + data)


# ------------------------------------------------------------------------------------------ 6. --anon


@pytest.fixture(scope="module")
def public_x(s3, xin):
    url = f"s3://{PUBLIC}/shared/x.zarr"
    s3.copy_prefix(xin["s3"], url)
    return url


def test_anon_reads_public_bucket(s3, xin, public_x, tmp_path):
    want = run_dsk("export", xin["local"], "--format", "npy", "-q").stdout
    nokeys = s3.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    got = run_dsk("export", public_x, "--format", "npy", "--anon", "-q", env=nokeys).stdout
    assert got == want
    got = run_dsk("export", public_x, "--format", "npy", "-q", env=s3.env(AWS_ACCESS_KEY_ID=None,
                                                                           AWS_SECRET_ACCESS_KEY=None,
                                                                           AWS_NO_SIGN_REQUEST="1")).stdout
    assert got == want
    # --anon with keys set still reads (the keys are not used)
    got = run_dsk("export", public_x, "--format", "npy", "--anon", "-q", env=s3.env()).stdout
    assert got == want
    info = json.loads(run_dsk("info", public_x, "--json", "--anon", env=nokeys).stdout)
    assert info["shape"] == [100, 70]
    # obstore, unsigned, agrees that the bucket is public
    assert_bits(s3.zarr_open(public_x, anon=True)[...], read(s3, xin["local"]))


def test_anon_non_public_bucket_denied(s3, xin, public_x, at):
    nokeys = s3.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    r = run_dsk("info", xin["s3"], "--anon", env=nokeys, ok=False)
    line = one_line_error(r, "access denied", url=xin["s3"])
    assert "pass --anon" not in line, "the advice to pass --anon, to a run that did"
    r = run_dsk("info", xin["s3"], env=s3.env(AWS_NO_SIGN_REQUEST="1"), ok=False)
    one_line_error(r, "access denied", url=xin["s3"])
    # anonymous writes are refused, even to the public bucket (it is read-only for anonymous)
    dest = f"s3://{PUBLIC}/anon-write/o.zarr"
    r = run_dsk("transform", public_x, dest, "--expr", "x+1", "--anon", env=nokeys, ok=False)
    one_line_error(r, "access denied", url=dest)
    assert s3.keys(dest) == []


# ------------------------------------------------------------------------------------ 7. no secrets


def _no_secret(r, *files):
    for stream in (r.stdout, r.stderr):
        assert SECRET2.encode() not in stream, stream.decode(errors="replace")
    for f in files:
        if os.path.exists(f):
            with open(f, "rb") as fh:
                assert SECRET2.encode() not in fh.read(), f


def test_secret_never_printed(s3, xin, at, tmp_path):
    good = s3.env(AWS_ACCESS_KEY_ID=KEY2, AWS_SECRET_ACCESS_KEY=SECRET2)
    bad = s3.env(AWS_SECRET_ACCESS_KEY=SECRET2)  # the right secret of another key: a signature mismatch
    dest = at("s3", "s.zarr")
    report = str(tmp_path / "r.html")
    for progress in ([], ["--progress", "json"]):
        # failing
        for env in (bad, s3.env(AWS_ACCESS_KEY_ID="NOSUCHKEY", AWS_SECRET_ACCESS_KEY=SECRET2)):
            r = run_dsk("info", xin["s3"], *progress, env=env, ok=False)
            assert r.returncode != 0
            _no_secret(r)
            r = run_dsk("transform", xin["s3"], dest, "--expr", "x+1", "--report", report, *progress, env=env,
                        ok=False)
            assert r.returncode != 0
            _no_secret(r, report)
        r = run_dsk("info", f"s3://{BUCKET}/nope.zarr", *progress, env=good, ok=False)
        assert r.returncode != 0
        _no_secret(r)
        # succeeding
        r = run_dsk("create", "random", dest, "--shape", "40,40", "--chunks", "10,10", "--overwrite", *progress,
                    env=good)
        _no_secret(r)
        r = run_dsk("reduce", dest, "--op", "sum", *progress, env=good)
        _no_secret(r)
        r = run_dsk("transform", dest, at("s3", "s2.zarr"), "--expr", "x*3", "--overwrite", "--report", report,
                    *progress, env=good)
        _no_secret(r, report)
        r = run_dsk("transform", dest, at("s3", "s3.zarr"), "--expr", "x*3", "--explain", "json", env=good)
        _no_secret(r)
        r = run_dsk("info", dest, "--json", env=good)
        _no_secret(r)
    for k, v in objects(s3, dest).items():
        assert SECRET2.encode() not in v, k


# ------------------------------------------------------------------------------------ 8. concurrency


def test_seaweedfs_honours_if_none_match(s3):
    """The server's side of dsk's claim: of concurrent `If-None-Match: *` PUTs of one key, one wins."""
    from obstore.exceptions import AlreadyExistsError
    base = f"s3://{BUCKET}/conditional"
    s3.put(f"{base}/seq", b"first", mode="create")
    with pytest.raises(AlreadyExistsError):
        s3.put(f"{base}/seq", b"second", mode="create")
    assert s3.get(f"{base}/seq") == b"first"

    wins = {}
    lock = threading.Lock()
    for key in range(8):
        barrier = threading.Barrier(6)

        def attempt(i, key=key, barrier=barrier):
            barrier.wait()
            try:
                s3.put(f"{base}/race{key}", f"writer {i}".encode(), mode="create")
            except AlreadyExistsError:
                return
            with lock:
                wins.setdefault(key, []).append(i)

        ts = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert all(len(wins.get(k, [])) == 1 for k in range(8)), f"winners per key: {wins}"
    for k in range(8):
        assert s3.get(f"{base}/race{k}") == f"writer {wins[k][0]}".encode()


# started together, both may list the prefix before either claims it (then the conditional PUT
# decides), or one sees the other's marker; 0.3 s apart, the second always sees the marker
RACES = [(0.0, False, 1), (0.0, False, 2), (0.0, False, 3), (0.3, False, 1), (0.0, True, 1), (0.3, True, 1)]


@pytest.mark.parametrize("stagger,existing,round", RACES,
                         ids=[f"stagger{s}-{'overwrite' if e else 'new'}-{r}" for s, e, r in RACES])
def test_two_runs_one_output(s3, at, stagger, existing, round):
    url = at("s3", "race.zarr")
    shape = ["--shape", "400,400", "--chunks", "100,100"]
    extra = []
    if existing:
        run_dsk("create", "zeros", url, *shape, "--write-empty-chunks", "-q", env=s3.env())
        extra = ["--overwrite"]
    env = s3.env(DSK_TEST_TASK_DELAY_MS=100)
    ps = []
    for seed in (1, 2):
        # two workers: the runs must overlap (with the remote default of 8 the first may be done)
        ps.append(subprocess.Popen([DSK, "create", "random", url, *shape, "--seed", str(seed), "-q", "--workers", "2",
                                    *extra],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        time.sleep(stagger)
    res = [p.communicate(timeout=120) for p in ps]
    codes = [p.returncode for p in ps]
    assert codes.count(0) == 1, f"exit codes {codes}:\n" + "\n".join(e.decode() for _, e in res)
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    r = subprocess.CompletedProcess([], codes[loser], res[loser][0], res[loser][1])
    one_line_error(r, "another run|being written|same moment|already exists", url=url)
    ref = at("ref", "race.zarr")
    run_dsk("create", "random", ref, *shape, "--seed", str(winner + 1), "-q")
    assert_same_array(s3, url, ref)  # also: no marker or stray chunk left under the prefix


def test_shared_credentials_profile(s3, xin, tmp_path):
    """AWS_PROFILE picks a section of the shared credentials file; variables win over it; the
    config file gives the endpoint; a profile that does not exist is one line naming it."""
    creds, config = tmp_path / "credentials", tmp_path / "config"
    creds.write_text(f"[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n"
                     f"[lab]\naws_access_key_id = {s3util.KEY}\naws_secret_access_key = {s3util.SECRET}\n")
    config.write_text(f"[profile lab]\nregion = us-east-1\nendpoint_url = {s3.endpoint}\n")
    base = dict(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_ENDPOINT_URL=None,
                AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_CONFIG_FILE=str(config))
    ok = run_dsk("reduce", xin["s3"], "--op", "sum", env=s3.env(**base, AWS_PROFILE="lab"))
    ref = run_dsk("reduce", xin["local"], "--op", "sum")
    assert ok.stdout == ref.stdout
    # the default profile's keys are wrong (the endpoint comes from the variable here)
    r = run_dsk("info", xin["s3"], env=s3.env(**dict(base, AWS_ENDPOINT_URL=s3.endpoint)), ok=False)
    one_line_error(r, "access denied|secret|access key", url=xin["s3"])
    # variables win over the file
    r = run_dsk("info", xin["s3"], env=s3.env(**dict(base, AWS_ENDPOINT_URL=s3.endpoint,
                                                       AWS_ACCESS_KEY_ID=s3util.KEY, AWS_SECRET_ACCESS_KEY=s3util.SECRET)))
    assert r.returncode == 0
    r = run_dsk("info", xin["s3"], env=s3.env(**base, AWS_PROFILE="nosuch"), ok=False)
    one_line_error(r, "nosuch")
    assert b"wrong" not in r.stderr


def test_never_deletes_what_dsk_did_not_write(s3, at):
    """A stale marker with other objects beside it, a bucket root as output, an output that holds
    an input: refused, and every object stays."""
    dest = at("s3", "stale.zarr")
    owner = {"pid": 999999999, "host": os.uname().nodename, "started": 0, "command": "dsk create (killed)"}
    s3.put(f"{dest}/.dsk-partial", json.dumps(owner).encode())
    s3.put(f"{dest}/c/0/0", b"left by the killed run")
    s3.put(f"{dest}/notes/report.pdf", b"not dsk's")
    r = run_dsk("create", "ones", dest, "--shape", "4,4", "--chunks", "2,2", env=s3.env(), ok=False)
    one_line_error(r, "not part of a Zarr array", url=dest)
    r = run_dsk("create", "ones", dest, "--shape", "4,4", "--chunks", "2,2", "--overwrite", env=s3.env(), ok=False)
    one_line_error(r, "not part of a Zarr array", url=dest)
    assert "notes/report.pdf" in s3.keys(dest)
    # without the foreign object, the leftovers of the dead run are removed and the run succeeds
    s3.delete_prefix(f"{dest}/notes")
    run_dsk("create", "ones", dest, "--shape", "4,4", "--chunks", "2,2", env=s3.env())
    assert ".dsk-partial" not in s3.keys(dest)
    r = run_dsk("create", "ones", f"s3://{PUBLIC}", "--shape", "4,4", env=s3.env(), ok=False)
    one_line_error(r, "whole bucket")
    src = at("s3", "outer.zarr")
    run_dsk("create", "random", src, "--shape", "8,8", "--chunks", "4,4", env=s3.env())
    run_dsk("create", "random", f"{src}/c.zarr", "--shape", "8,8", "--chunks", "4,4", env=s3.env(), ok=False)
    inner = at("s3", "outer2.zarr")
    run_dsk("create", "random", inner, "--shape", "8,8", "--chunks", "4,4", env=s3.env())
    r = run_dsk("transform", inner, at("s3", ""), "--expr", "x+0", "--overwrite", env=s3.env(), ok=False)
    assert r.returncode != 0 and s3.exists(f"{inner}/zarr.json")


def test_keys_are_used_verbatim(s3, at):
    """A URL with '~' and non-ASCII names the objects it says (zarr-python finds them)."""
    dest = at("s3", "données/t~1.zarr")
    run_dsk("create", "arange", dest, "--stop", "12", "--shape", "3,4", "--chunks", "2,2", env=s3.env())
    a = s3.zarr_open(dest)
    assert np.array_equal(a[:], np.arange(12.0).reshape(3, 4))
    assert run_dsk("reduce", dest, "--op", "sum", env=s3.env()).stdout.strip() == b"66"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_input_replaced_while_read_gives_no_result(s3, at, where):
    """A reader racing an --overwrite of its input fails in one line instead of printing a number
    that mixes two arrays (or reads deleted chunks as the fill value)."""
    src = at(where, "rd.zarr")
    run_dsk("create", "random", src, "--shape", "200,200", "--chunks", "20,20", env=s3.env())
    env = s3.env(DSK_TEST_TASK_DELAY_MS="100")
    reader = subprocess.Popen([DSK, "eval", "x.sum()", f"x={src}", "--workers", "1", "--split-every", "2", "-q"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    run_dsk("create", "ones", src, "--shape", "10,10", "--chunks", "5,5", "--overwrite", env=s3.env())
    out, err = reader.communicate(timeout=60)
    r = subprocess.CompletedProcess(reader.args, reader.returncode, out, err)
    one_line_error(r, "replaced|disappeared", url=src)
    assert out == b""


def test_no_credentials_fails_at_once(s3, xin):
    t = time.time()
    r = run_dsk("info", xin["s3"], env=s3.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None), ok=False)
    one_line_error(r, "no AWS credentials")
    assert time.time() - t < 10
    r = run_dsk("info", xin["s3"], env=s3.env(AWS_SECRET_ACCESS_KEY=None), ok=False)
    one_line_error(r, "AWS_SECRET_ACCESS_KEY is not")


def test_leftovers_and_reused_pids(s3, at):
    """Chunks without metadata or marker need --overwrite; a marker naming a live process that is
    not the run that wrote it (its pid reused) counts as a dead run's."""
    dest = at("s3", "left.zarr")
    s3.put(f"{dest}/c/0/0", b"x")
    r = run_dsk("create", "ones", dest, "--shape", "4,4", "--chunks", "2,2", env=s3.env(), ok=False)
    one_line_error(r, "overwrite", url=dest)
    run_dsk("create", "zeros", dest, "--shape", "4,4", "--chunks", "2,2", "--overwrite", env=s3.env())
    assert s3.keys(dest) == ["zarr.json"]
    dest2 = at("s3", "reused.zarr")
    owner = {"pid": os.getpid(), "host": os.uname().nodename, "started": 1, "command": "dsk create (long gone)"}
    s3.put(f"{dest2}/.dsk-partial", json.dumps(owner).encode())
    s3.put(f"{dest2}/c/0/0", b"x")
    run_dsk("create", "zeros", dest2, "--shape", "4,4", "--chunks", "2,2", env=s3.env())
    assert s3.keys(dest2) == ["zarr.json"]


def test_more_workers_for_remote_arrays(s3, xin):
    """Tasks on object storage mostly wait on the network: at least 8 workers by default with the
    threads scheduler; an explicit --workers and local arrays are left alone."""
    def workers(*args):
        out = run_dsk("eval", "x.sum()", *args, "--explain", env=s3.env()).stdout.decode()
        return int(re.search(r"with (\d+) workers?", out).group(1))
    cores = os.cpu_count()
    assert workers(f"x={xin['s3']}") == max(cores, 8)
    assert workers(f"x={xin['local']}") == cores
    assert workers(f"x={xin['s3']}", "--workers", "3") == 3


def test_http_connection_failures_say_which(s3, http_static):
    """An unknown host and https:// to a plain-http server: one line each, saying which."""
    env = s3.env(DSK_STORAGE_RETRIES=0)
    r = run_dsk("info", "https://no-such-host.invalid/a.zarr", env=env, ok=False)
    one_line_error(r, "not known|dns")
    r = run_dsk("info", f"https://127.0.0.1:{http_static.port}/a.zarr", env=env, ok=False)
    one_line_error(r, "http://")


def test_json_summary_counts_requests(s3, xin, at):
    """--progress json: the summary says what the run sent (one GET per chunk read, one PUT per
    chunk written, with the metadata's and the marker's)."""
    out = at("s3", "counted.zarr")
    r = run_dsk("transform", xin["s3"], out, "--expr", "x * 2", "--progress", "json", "--workers", "2", env=s3.env())
    summary = json.loads([l for l in r.stderr.decode().splitlines() if '"summary"' in l][-1])
    st = summary["storage"]
    nchunks = 4 * 2  # (100, 70) in (30, 40) chunks
    assert st["get"] >= nchunks and st["put"] == nchunks + 2  # chunks, the marker, zarr.json
    assert st["bytes_written"] > 0 and st["bytes_read"] > 0 and st["head"] >= 2


def test_create_from_npy_and_sharded_on_s3(s3, at, tmp_path):
    """An imported .npy and a sharded array written to S3 equal the same written locally."""
    npy = tmp_path / "data.npy"
    a = np.random.default_rng(3).standard_normal((90, 61)).astype(np.float32)
    a[5, 7] = np.nan
    np.save(npy, a)
    # (the same --workers: a shard's bytes, not its values, differ with the concurrency zarrs encodes
    # it with — seen locally too, 2 workers against 8)
    for args in (["create", "from-npy", str(npy), "{out}", "--chunks", "20,16"],
                 ["create", "random", "{out}", "--shape", "100,70", "--chunks", "10,10", "--shard", "50,70"]):
        ref, dest = at("ref", f"{args[1]}.zarr"), at("s3", f"{args[1]}.zarr")
        run_dsk(*fill(args, out=ref), "-q", "--workers", "2")
        run_dsk(*fill(args, out=dest), "-q", "--workers", "2", env=s3.env())
        assert_same_array(s3, dest, ref)
