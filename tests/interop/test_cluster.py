"""dsk on the cluster engines users already have: `--executor slurm` on a real single-node Slurm
(Debian's slurm-wlm, started by the test) and `--executor dask` on a real Dask scheduler with two
workers on loopback.

Every result is compared byte for byte (every file of the output array) with the same command run
locally; failures, cancellation, retries, resume and detached runs are driven through the real
schedulers (squeue/scancel, Dask futures). Paths are relative to the test's directory, so the
plan's paths must survive workers that run elsewhere.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import zarr

import s3util
from clusterutil import dask_cluster, slurm  # noqa: F401 (fixtures)
from helpers import DSK

s3 = s3util.s3  # fixture (module scope)

pytestmark = pytest.mark.timeout(300)

X_ARGS = ["--shape", "300,250", "--chunks", "40,50", "--dist", "normal", "--seed", "5"]

COMPUTATIONS = {
    "cos2": ["transform", "x.zarr", "OUT", "--expr", "cos(x)**2"],
    "mirror": ["eval", "x * x[::-1, ::-1]", "x=x.zarr", "-o", "OUT"],
    "rowmean": ["reduce", "x.zarr", "OUT", "--op", "mean", "--axis", "1"],
    # several stages: a reduction whose result feeds another (partials, merge, then again)
    "centered-std": ["eval", "(x - x.mean()).std(axis=0)", "x=x.zarr", "-o", "OUT", "--split-every", "2"],
    "cumsum": ["eval", "x.cumsum(axis=0)", "x=x.zarr", "-o", "OUT", "--memory", "2MiB"],
    "rechunk-2pass": ["rechunk", "x.zarr", "OUT", "--chunks", "300,3", "--memory", "1MiB"],
}
SCALAR = ["eval", "(x * x[::-1, ::-1]).mean()", "x=x.zarr"]


def run(*args, cwd, env=None, ok=True, timeout=240):
    r = subprocess.run([DSK, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok and r.returncode != 0:
        raise AssertionError(f"dsk {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r


_STARTED = []


def popen(*a, **kw):
    """A dsk driver started in the background; killed when its test ends, whatever happened."""
    p = subprocess.Popen(*a, **kw)
    _STARTED.append(p)
    return p


@pytest.fixture(autouse=True)
def _no_driver_outlives_its_test():
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


def tree(d):
    """Every file of a directory tree: relative path -> sha256."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, d)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def leftovers(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".partial") or ".dsk-" in n)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """x.zarr and every computation run locally (the reference)."""
    d = tmp_path_factory.mktemp("cluster-ref")
    run("create", "random", "x.zarr", *X_ARGS, "-q", cwd=d)
    for name, args in COMPUTATIONS.items():
        run(*[a.replace("OUT", f"{name}.zarr") for a in args], "-q", cwd=d)
    scalar = run(*SCALAR, cwd=d).stdout
    return d, scalar


@pytest.fixture
def work(ref, tmp_path):
    """A test directory with its own copy of x.zarr and a work dir (shared by the jobs: one node)."""
    os.symlink(ref[0] / "x.zarr", tmp_path / "x.zarr")
    (tmp_path / "wd").mkdir()
    return tmp_path


def stages_of(args, cwd):
    """The stages a cluster runs (the plan of the processes scheduler)."""
    plan = json.loads(run(*args, "--scheduler", "processes", "--explain", "json", cwd=cwd).stdout)
    return [s for s in plan["stages"] if not s.get("local")]


# ------------------------------------------------------------------------------------------- Slurm


@pytest.mark.parametrize("name", list(COMPUTATIONS))
def test_slurm_results_equal_the_local_run_byte_for_byte(slurm, ref, work, name):
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS[name]]
    r = run(*args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "7", "--progress", "json",
            cwd=work, env=slurm.env)
    assert tree(work / "out.zarr") == tree(ref[0] / f"{name}.zarr")
    assert leftovers(work) == [] and os.listdir(work / "wd") == []
    summary = [json.loads(line) for line in r.stderr.splitlines() if '"summary"' in line][-1]
    assert summary["executor"] == "slurm" and summary["workers_peak_rss"] > 0
    # progress came from the completion records, stage by stage
    done = [json.loads(line) for line in r.stderr.splitlines() if '"stage_end"' in line]
    assert len(done) == len(stages_of(args, work))
    slurm.wait_idle()


def test_slurm_prints_a_scalar_like_the_local_run(slurm, ref, work):
    r = run(*SCALAR, "--executor", "slurm", "--work-dir", "wd", cwd=work, env=slurm.env)
    assert r.stdout == ref[1]


def test_slurm_explain_prints_the_chained_submissions_and_submits_nothing(slurm, ref, work):
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["centered-std"]]
    r = run(*args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "4", "--partition", "debug",
            "--sbatch-arg=--comment=dsk", "--explain", cwd=work, env=slurm.env)
    subs = [line for line in r.stdout.splitlines() if line.startswith("JOB_")]
    n = len(stages_of(args, work))
    assert len(subs) == n >= 3
    assert "--dependency" not in subs[0]
    for k in range(1, n):
        assert f"--dependency=afterok:$JOB_{k - 1}" in subs[k] and "--kill-on-invalid-dep=yes" in subs[k]
    assert all("--partition=debug" in s and "--comment=dsk" in s and "--mem=" in s for s in subs)
    assert slurm.queue() == [] and not os.path.exists(work / "out.zarr")


def test_slurm_failed_task_is_named_with_its_array_index_and_log(slurm, ref, work):
    os.unlink(work / "x.zarr")
    run("create", "random", "x.zarr", *X_ARGS, "-q", cwd=work)
    with open(work / "x.zarr" / "c" / "3" / "2", "wb") as f:
        f.write(b"not zstd at all")
    r = run("transform", "x.zarr", "out.zarr", "--expr", "x + 1", "--executor", "slurm", "--work-dir", "wd",
            "--tasks-per-job", "5", "--retries", "1", cwd=work, env=slurm.env, ok=False)
    assert r.returncode == 1, r.stderr
    err = r.stderr.strip().splitlines()
    assert any("submitting them again" in line for line in err), r.stderr
    last = err[-1]
    # chunk (3, 2) is task 3*5+2 = 17 of a 8×5 grid: array index 3 (tasks 15..20)
    assert "task 17 failed in Slurm job" in last and "array index 3, tasks 15..20" in last, last
    assert "chunk (3, 2)" in last and "after 1 retry" in last, last
    log = last.rsplit("log: ", 1)[1]
    assert os.path.exists(log) and "chunk (3, 2)" in open(log).read()
    assert not os.path.exists(work / "out.zarr") and leftovers(work) == []
    slurm.wait_idle()


def test_slurm_cancelled_run_resumes_without_redoing_finished_tasks(slurm, ref, work):
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
    env = dict(slurm.env, DSK_TEST_TASK_DELAY_MS="150")
    p = popen([DSK, *args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "4",
                          "--resume"], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    t = time.time()
    records = work / "out.zarr.partial" / ".dsk-done"
    while time.time() - t < 60:
        done = sum(len(open(records / f).read().splitlines()) for f in os.listdir(records)) \
            if records.is_dir() else 0
        if done >= 4:
            break
        time.sleep(0.2)
    ids = {line.split()[0] for line in slurm.queue()}
    assert ids, "no job in the queue"
    subprocess.run(["scancel", *ids], env=slurm.env, check=True)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "cancelled (scancel)" in err, err
    assert os.path.isdir(work / "out.zarr.partial")
    slurm.wait_idle()
    r = run(*args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "4", "--resume", cwd=work,
            env=slurm.env)
    left = [line for line in r.stderr.splitlines() if "tasks left" in line]
    assert left and int(left[0].split("resuming out.zarr.partial: ")[1].split()[0]) < 40, r.stderr
    assert tree(work / "out.zarr") == tree(ref[0] / "cos2.zarr")
    assert leftovers(work) == []


def test_slurm_detached_run_is_followed_with_status_and_published_by_resume(slurm, ref, work):
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["centered-std"]]
    env = dict(slurm.env, DSK_TEST_TASK_DELAY_MS="100")
    r = run(*args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "6", "--detach", cwd=work, env=env)
    status_cmd = next(line for line in r.stderr.splitlines() if "dsk status " in line)
    wd = status_cmd.split("dsk status ", 1)[1].strip()
    assert not os.path.exists(work / "out.zarr") and os.path.isdir(work / "out.zarr.partial")
    # a resume while the jobs are queued would run them twice: refused
    early = run(*args, "--executor", "slurm", "--work-dir", "wd", "--resume", cwd=work, env=slurm.env, ok=False)
    assert early.returncode == 2 and "still queued or running" in early.stderr, early.stderr
    st = run("status", wd, cwd=work, env=slurm.env).stdout
    assert "Slurm array job" in st and "running" in st, st
    st = run("status", "wd", "--wait", cwd=work, env=slurm.env, timeout=180).stdout
    assert "every task is done" in st and wd in st, st
    slurm.wait_idle()
    r = run(*args, "--executor", "slurm", "--work-dir", "wd", "--resume", cwd=work, env=slurm.env)
    assert "0 of" in r.stderr and "tasks left" in r.stderr, r.stderr
    assert tree(work / "out.zarr") == tree(ref[0] / "centered-std.zarr")
    assert leftovers(work) == [] and os.listdir(work / "wd") == []


def test_slurm_options_from_a_config_file_and_sbatch_refusals(slurm, ref, work):
    cfg = work / "cluster.ini"
    cfg.write_text("[slurm]\npartition = debug\ntime = 10\nsbatch_args = --comment=from-config\ntasks_per_job = 9\n")
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
    ex = run(*args, "--executor", "slurm", "--cluster-config", cfg, "--explain", cwd=work, env=slurm.env).stdout
    assert "--partition=debug" in ex and "--time=10" in ex and "--comment=from-config" in ex and "*9))" in ex
    run(*args, "--executor", "slurm", "--work-dir", "wd", "--cluster-config", cfg, cwd=work, env=slurm.env)
    assert tree(work / "out.zarr") == tree(ref[0] / "cos2.zarr")
    # a key the file cannot have, a partition the cluster does not have: one line each, nothing left
    cfg.write_text("[slurm]\npartitoin = debug\n")
    r = run(*args, "--executor", "slurm", "--cluster-config", cfg, "--overwrite", cwd=work, env=slurm.env, ok=False)
    assert r.returncode == 1 and "[slurm] has no key partitoin" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run("transform", "x.zarr", "o2.zarr", "--expr", "x", "--executor", "slurm", "--work-dir", "wd",
            "--partition", "nosuch", cwd=work, env=slurm.env, ok=False)
    assert r.returncode == 1 and "cannot submit stage" in r.stderr and "partition" in r.stderr.lower(), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not os.path.exists(work / "o2.zarr")
    assert os.listdir(work / "wd") == []


def test_slurm_needs_slurm_and_cluster_flags_need_an_executor(ref, work):
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env["PATH"] = "/nonexistent"
    r = run("transform", "x.zarr", "o.zarr", "--expr", "x", "--executor", "slurm", "--work-dir", "wd", cwd=work,
            env=env, ok=False)
    assert r.returncode == 1 and "sbatch is not installed here" in r.stderr, r.stderr
    r = run("transform", "x.zarr", "o.zarr", "--expr", "x", "--tasks-per-job", "3", cwd=work, ok=False)
    assert r.returncode == 2 and "--tasks-per-job" in r.stderr and "--executor" in r.stderr
    assert leftovers(work) == [] and not os.path.exists(work / "o.zarr")


def test_slurm_with_arrays_and_work_dir_on_s3(slurm, s3, ref, tmp_path):
    env = dict(s3util.s3_env(s3.endpoint, tmp_path), SLURM_CONF=slurm.env["SLURM_CONF"])
    base = f"s3://{s3util.BUCKET}/cluster-slurm"
    s3.delete_prefix(base)
    run("create", "random", f"{base}/x.zarr", *X_ARGS, "-q", cwd=tmp_path, env=env)
    r = run("eval", "(x - x.mean()).std(axis=0)", f"x={base}/x.zarr", "-o", f"{base}/out.zarr", "--split-every", "2",
            "--executor", "slurm", "--work-dir", f"{base}/work", "--tasks-per-job", "7", cwd=tmp_path, env=env)
    s3.download_dir(f"{base}/out.zarr", str(tmp_path / "out.zarr"))
    assert tree(tmp_path / "out.zarr") == tree(ref[0] / "centered-std.zarr"), r.stderr
    assert s3.keys(f"{base}/work") == []
    slurm.wait_idle()


# -------------------------------------------------------------------------------------------- Dask


@pytest.mark.parametrize("name", ["cos2", "mirror", "rowmean", "centered-std", "rechunk-2pass"])
def test_dask_results_equal_the_local_run_byte_for_byte(dask_cluster, ref, work, name):
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS[name]]
    env = dict(os.environ, DSK_PYTHON=sys.executable)
    r = run(*args, "--executor", "dask", "--scheduler-address", dask_cluster.address, "--tasks-per-job", "7",
            "--progress", "json", cwd=work, env=env)
    assert tree(work / "out.zarr") == tree(ref[0] / f"{name}.zarr")
    summary = [json.loads(line) for line in r.stderr.splitlines() if '"summary"' in line][-1]
    assert summary["executor"] == "dask" and summary["workers_peak_rss"] > 0
    assert leftovers(work) == []


def test_dask_tasks_show_in_the_scheduler_and_scalars_print(dask_cluster, ref, work):
    env = dict(os.environ, DSK_PYTHON=sys.executable)
    r = run(*SCALAR, "--executor", "dask", "--scheduler-address", dask_cluster.address, cwd=work, env=env)
    assert r.stdout == ref[1]
    from distributed import Client

    with Client(dask_cluster.address) as c:
        prefixes = c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert any(p.startswith("dsk-") for p in prefixes), prefixes


def test_dask_failed_task_is_named(dask_cluster, ref, work):
    os.unlink(work / "x.zarr")
    run("create", "random", "x.zarr", *X_ARGS, "-q", cwd=work)
    with open(work / "x.zarr" / "c" / "3" / "2", "wb") as f:
        f.write(b"not zstd at all")
    env = dict(os.environ, DSK_PYTHON=sys.executable)
    r = run("transform", "x.zarr", "out.zarr", "--expr", "x + 1", "--executor", "dask", "--scheduler-address",
            dask_cluster.address, "--tasks-per-job", "5", "--retries", "2", cwd=work, env=env, ok=False)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "stage transform: task 17 failed on Dask worker" in last and "tasks 15..20" in last, last
    assert "chunk (3, 2)" in last and "after 2 retries" in last, last
    assert not os.path.exists(work / "out.zarr") and leftovers(work) == []


def test_dask_errors_say_what_to_install_or_fix(dask_cluster, ref, work, tmp_path_factory):
    bare = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    env = dict(os.environ, DSK_PYTHON=str(bare / "bin" / "python"))
    r = run("transform", "x.zarr", "o.zarr", "--expr", "x", "--executor", "dask", "--scheduler-address",
            dask_cluster.address, cwd=work, env=env, ok=False)
    assert r.returncode == 1 and "dsk_dask is not installed" in r.stderr, r.stderr
    r = run("transform", "x.zarr", "o.zarr", "--expr", "x", "--executor", "dask", cwd=work, ok=False)
    assert r.returncode == 2 and "--scheduler-address" in r.stderr
    env = dict(os.environ, DSK_PYTHON=sys.executable)
    dead = f"tcp://127.0.0.1:{__import__('clusterutil').free_port()}"
    r = run("transform", "x.zarr", "o.zarr", "--expr", "x", "--executor", "dask", "--scheduler-address", dead,
            cwd=work, env=env, ok=False)
    assert r.returncode == 1 and "cannot connect to the Dask scheduler" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert leftovers(work) == [] and not os.path.exists(work / "o.zarr")


def test_dask_with_arrays_and_work_dir_on_s3(dask_cluster, s3, ref, tmp_path):
    # the Dask workers were started without the S3 settings: dsk worker gets them from... the
    # workers' environment, as on a real cluster; here a second cluster started with them
    env = dict(s3util.s3_env(s3.endpoint, tmp_path), DSK_PYTHON=sys.executable)
    from clusterutil import DaskCluster

    (tmp_path / "dask").mkdir()
    c = DaskCluster(tmp_path / "dask", workers=1, env=env).start()
    try:
        base = f"s3://{s3util.BUCKET}/cluster-dask"
        s3.delete_prefix(base)
        run("create", "random", f"{base}/x.zarr", *X_ARGS, "-q", cwd=tmp_path, env=env)
        run("rechunk", f"{base}/x.zarr", f"{base}/out.zarr", "--chunks", "300,3", "--memory", "1MiB",
            "--executor", "dask", "--scheduler-address", c.address, "--work-dir", f"{base}/work",
            "--tasks-per-job", "9", cwd=tmp_path, env=env)
        s3.download_dir(f"{base}/out.zarr", str(tmp_path / "out.zarr"))
        assert tree(tmp_path / "out.zarr") == tree(ref[0] / "rechunk-2pass.zarr")
        assert s3.keys(f"{base}/work") == []
    finally:
        c.stop()


# ------------------------------------------------------------------- a run stopped while jobs run


def wait_for_records(partial, n, timeout=60):
    records = partial / ".dsk-done"
    t = time.time()
    while time.time() - t < timeout:
        if records.is_dir() and sum(len(open(records / f).read().splitlines()) for f in os.listdir(records)) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} tasks recorded in {records}")


def test_slurm_output_of_a_killed_driver_is_not_reused_while_its_jobs_run(slurm, ref, work):
    """kill -9 of the driver leaves its jobs writing into OUT.partial: another run of the output
    is refused until they are gone, then starts over and is right."""
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
    env = dict(slurm.env, DSK_TEST_TASK_DELAY_MS="200")
    p = popen([DSK, *args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "5",
                          "--max-running", "1"], cwd=work, env=env, stderr=subprocess.DEVNULL)
    wait_for_records(work / "out.zarr.partial", 2)
    p.kill()
    p.wait()
    other = ["transform", "x.zarr", "out.zarr", "--expr", "x * 0"]
    r = run(*other, "--executor", "slurm", "--work-dir", "wd", cwd=work, env=slurm.env, ok=False)
    assert r.returncode == 2 and "still queued or running" in r.stderr and "scancel" in r.stderr, r.stderr
    r = run(*other, cwd=work, env=slurm.env, ok=False)  # a local run too
    assert r.returncode == 2 and "still queued or running" in r.stderr, r.stderr
    r = run(*other, cwd=work, ok=False)  # where Slurm cannot be asked
    assert r.returncode == 2 and "Slurm cannot be asked" in r.stderr, r.stderr
    subprocess.run(["scancel", *{line.split()[0] for line in slurm.queue()}], env=slurm.env)
    slurm.wait_idle()
    run(*other, "-q", cwd=work, env=slurm.env)
    out = zarr.open_array(str(work / "out.zarr"), mode="r")[...]
    assert (out == 0).all()


def test_slurm_interrupted_run_leaves_nothing_behind(slurm, ref, work):
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
    env = dict(slurm.env, DSK_TEST_TASK_DELAY_MS="200")
    p = popen([DSK, *args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "5"],
                         cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    wait_for_records(work / "out.zarr.partial", 2)
    p.send_signal(signal.SIGINT)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)  # impatient: dsk still waits for its jobs to stop
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert slurm.queue() == []
    time.sleep(2)  # a job that outlived the driver would write now
    assert leftovers(work) == [] and not os.path.exists(work / "out.zarr")


def test_dask_interrupted_run_stops_its_workers(ref, work, tmp_path_factory):
    from clusterutil import DaskCluster

    d = tmp_path_factory.mktemp("dask-slow")
    c = DaskCluster(d, workers=1, env=dict(os.environ, DSK_TEST_TASK_DELAY_MS="200")).start()
    try:
        env = dict(os.environ, DSK_PYTHON=sys.executable)
        args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
        p = popen([DSK, *args, "--executor", "dask", "--scheduler-address", c.address,
                              "--tasks-per-job", "5"], cwd=work, env=env, stderr=subprocess.PIPE, text=True)
        wait_for_records(work / "out.zarr.partial", 2)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 130, err
        time.sleep(2)  # a dsk worker that outlived the run would write now
        assert leftovers(work) == [] and not os.path.exists(work / "out.zarr")
        # and the next run of the output is all its own
        run("transform", "x.zarr", "out.zarr", "--expr", "x * 0", "--executor", "dask", "--scheduler-address",
            c.address, "--tasks-per-job", "5", cwd=work, env=env)
        assert (zarr.open_array(str(work / "out.zarr"), mode="r")[...] == 0).all()
    finally:
        c.stop()


def test_odd_paths_configs_and_sbatch_args(slurm, ref, tmp_path):
    d = tmp_path / "pct%j it's"
    (d / "wd").mkdir(parents=True)
    os.symlink(ref[0] / "x.zarr", d / "x.zarr")
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
    run(*args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "20", cwd=d, env=slurm.env)
    assert tree(d / "out.zarr") == tree(ref[0] / "cos2.zarr")
    # a cluster config never breaks a local run, even a broken one
    (tmp_path / "bad.ini").write_text("[slurm]\npartiton = x\n")
    env = dict(os.environ, DSK_CLUSTER_CONFIG=str(tmp_path / "bad.ini"))
    run("transform", "x.zarr", "local.zarr", "--expr", "x", "-q", cwd=d, env=env)
    for bad in ["--array=0", "--arr=0", "-a0", "--output=x"]:
        r = run(*args, "--executor", "slurm", f"--sbatch-arg={bad}", cwd=d, env=slurm.env, ok=False)
        assert r.returncode == 2 and "dsk sets -" in r.stderr and "for every job" in r.stderr, r.stderr
    # a resume from another directory, with the paths spelled from there
    env = dict(slurm.env, DSK_TEST_TASK_DELAY_MS="100")
    r = run("transform", "x.zarr", "o2.zarr", "--expr", "x + 1", "--executor", "slurm", "--work-dir", "wd",
            "--tasks-per-job", "8", "--detach", cwd=d, env=env)
    run("status", d / "wd", "--wait", cwd=tmp_path, env=slurm.env, timeout=180)
    run("transform", d / "x.zarr", d / "o2.zarr", "--expr", "x + 1", "--executor", "slurm", "--work-dir", d / "wd",
        "--resume", cwd=tmp_path, env=slurm.env)
    assert zarr.open_array(str(d / "o2.zarr"), mode="r")[0, 0] == \
        zarr.open_array(str(ref[0] / "x.zarr"), mode="r")[0, 0] + 1


@pytest.fixture(scope="module")
def slow_dask(tmp_path_factory):
    """A Dask cluster whose dsk workers take 200 ms per task."""
    from clusterutil import DaskCluster

    c = DaskCluster(tmp_path_factory.mktemp("dask-slow"), workers=1,
                    env=dict(os.environ, DSK_TEST_TASK_DELAY_MS="200")).start()
    yield c
    c.stop()


@pytest.mark.parametrize("how", ["kill -9 of dsk", "TERM to the process group"])
def test_dask_driver_killed_leaves_no_writer_behind(slow_dask, ref, work, how):
    env = dict(os.environ, DSK_PYTHON=sys.executable)
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
    p = popen([DSK, *args, "--executor", "dask", "--scheduler-address", slow_dask.address,
                          "--work-dir", "wd", "--tasks-per-job", "5"], cwd=work, env=env,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_records(work / "out.zarr.partial", 2)
    if how == "kill -9 of dsk":
        p.kill()
    else:
        os.killpg(p.pid, signal.SIGTERM)
    p.wait()
    # another run of the output: refused while the ranges of the first one are being stopped,
    # then all its own
    t = time.time()
    while True:
        r = run("transform", "x.zarr", "out.zarr", "--expr", "x * 0", "-q", cwd=work, ok=False)
        if r.returncode == 0:
            break
        assert r.returncode == 2 and "still queued or running" in r.stderr, r.stderr
        assert time.time() - t < 60
        time.sleep(0.5)
    time.sleep(2)  # a range that outlived its run would write now
    assert (zarr.open_array(str(work / "out.zarr"), mode="r")[...] == 0).all()
    assert leftovers(work) == []


def test_a_detached_run_survives_other_spellings_of_its_work_dir(slurm, ref, work):
    args = [a.replace("OUT", "out.zarr") for a in COMPUTATIONS["cos2"]]
    env = dict(slurm.env, DSK_TEST_TASK_DELAY_MS="100")
    run(*args, "--executor", "slurm", "--work-dir", "wd", "--tasks-per-job", "10", "--detach", cwd=work, env=env)
    (work / "sub").mkdir()
    os.symlink(work / "wd", work / "wdlink")
    # other runs reclaim the work dirs of runs that are gone: not this one, however spelled
    run("create", "ones", "a.zarr", "--shape", "4", "--work-dir", "../wd", "-q", cwd=work / "sub", env=slurm.env)
    run("create", "ones", "b.zarr", "--shape", "4", "--work-dir", "wdlink", "-q", cwd=work, env=slurm.env)
    run("status", "wd", "--wait", cwd=work, env=slurm.env, timeout=180)
    run(*args, "--executor", "slurm", "--work-dir", "wd", "--resume", cwd=work, env=slurm.env)
    assert tree(work / "out.zarr") == tree(ref[0] / "cos2.zarr")
