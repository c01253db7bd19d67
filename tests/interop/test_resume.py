"""Nothing lost, nothing wrong: kill -9 at random moments, then --resume; concurrent writers.

The kill/resume campaign runs real dsk processes (and their `dsk worker` children), kills the
whole process group with SIGKILL at a random moment of a run (seeded), and checks after every kill
that the output is either absent or complete and equal to an uninterrupted run, then resumes
(sometimes with other --workers or another scheduler, sometimes killed again) until the run ends,
and requires the result to equal the uninterrupted run bit for bit, with nothing left behind (no
partial output, no hidden staging files, no work directories). DSK_KILLS (default 50) and
DSK_KILL_SEED (default 1) set the campaign's size and seed; docs/reliability.md quotes a longer one.
"""

import os
import random
import signal
import subprocess
import time

import numpy as np
import pytest
import zarr
from helpers import DSK, dsk

KILLS = int(os.environ.get("DSK_KILLS", "50"))
SEED = int(os.environ.get("DSK_KILL_SEED", "1"))

# each writes out.zarr from x.zarr (600 x 500 float64 in 50 x 50 chunks) or from nothing
COMMANDS = {
    "create": ["create", "random", "out.zarr", "--shape", "600,500", "--chunks", "50,50", "--seed", "7",
               "--codec", "gzip:6"],
    "transform": ["transform", "x.zarr", "out.zarr", "--expr", "cos(x)**2 + x", "--codec", "gzip:6"],
    "rechunk-2pass": ["rechunk", "x.zarr", "out.zarr", "--chunks", "600,3", "--memory", "1MiB"],
    "reduce-axis": ["reduce", "x.zarr", "out.zarr", "--op", "std", "--axis", "0", "--split-every", "2"],
    "cumsum": ["eval", "x.cumsum(axis=0)", "x=x.zarr", "-o", "out.zarr", "--memory", "2MiB"],
    "mirror": ["eval", "x * x[::-1, ::-1] - x.mean(axis=1, keepdims=True)", "x=x.zarr", "-o", "out.zarr"],
}
SCHEDULERS = ["threads", "processes", "sync"]


def leftovers(d):
    """Files dsk must not leave behind in the output directory."""
    return sorted(n for n in os.listdir(d) if n.endswith(".partial") or ".dsk-" in n or n.startswith(".out"))


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume-ref")
    dsk("create", "random", "x.zarr", "--shape", "600,500", "--chunks", "50,50", "--seed", "3", "--dist", "normal",
        cwd=d)
    out = {}
    for name, args in COMMANDS.items():
        t0 = time.time()
        dsk(*[a.replace("out.zarr", f"{name}.zarr") for a in args], "-q", cwd=d)
        out[name] = (zarr.open_array(str(d / f"{name}.zarr"), mode="r")[...], time.time() - t0)
    return d, out


def same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def start(args, cwd):
    return subprocess.Popen([DSK, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()
    # and every process of the group is gone (worker children included)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def kill_midway(p, partial):
    """Kill the run of `p` once it has recorded a finished task in `partial` (not at a time that a
    faster machine would miss)."""
    done = partial / ".dsk-done"
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        if done.is_dir() and any(f.stat().st_size > 0 for f in done.iterdir()):
            break
        time.sleep(0.005)
    kill_group(p)


def test_kill_and_resume_campaign(refs, tmp_path):
    src, ref = refs
    os.symlink(src / "x.zarr", tmp_path / "x.zarr")
    work = tmp_path / "work"
    work.mkdir()
    rng = random.Random(SEED)
    kills = finished_before_kill = resumes = 0
    names = list(COMMANDS)
    while kills < KILLS:
        name = names[kills % len(names)]
        expect, took = ref[name]
        base = COMMANDS[name] + ["--work-dir", str(work), "-q"]
        first = True
        attempts = 0
        while True:
            attempts += 1
            sched = rng.choice(SCHEDULERS)
            args = base + ["--scheduler", sched, "--workers", str(rng.choice([1, 2, 4]))]
            if not first:
                args.append("--resume")
            p = start(args, tmp_path)
            # kill somewhere in the run (a resumed run is shorter); sometimes let it finish, and
            # always the fourth attempt: every run is killed at most three times
            time.sleep(rng.uniform(0.0, took * (1.2 if first else 0.8)))
            if attempts < 4 and p.poll() is None:
                kill_group(p)
                kills += 1
                if (tmp_path / "out.zarr").exists():
                    got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
                    assert same(got, expect), f"{name}: a killed run left a complete-looking wrong output"
                    if not (tmp_path / "out.zarr.partial").exists():
                        # killed after its commit: nothing to resume
                        finished_before_kill += 1
                        dsk("info", "out.zarr", cwd=tmp_path)  # reclaims nothing, reads fine
                        dsk("create", "ones", "probe.zarr", "--shape", "1", "--work-dir", str(work), "--scheduler",
                            "processes", cwd=tmp_path)  # a run with a work dir reclaims the killed one's
                        dsk_rm(tmp_path / "probe.zarr")
                        break
                first = False
                continue
            p.wait(timeout=120)
            err = p.stderr.read().decode()
            assert p.returncode == 0, f"{name} {' '.join(args)} failed after {kills} kills:\n{err}"
            if first:
                finished_before_kill += 1
            else:
                resumes += 1
            break
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert same(got, expect), f"{name}: the resumed output differs from an uninterrupted run"
        assert leftovers(tmp_path) == [], f"{name}: left behind {leftovers(tmp_path)}"
        assert os.listdir(work) == [], f"{name}: work directories left: {os.listdir(work)}"
        dsk_rm(tmp_path / "out.zarr")
    print(f"{kills} kills, {resumes} runs finished by --resume, {finished_before_kill} finished before the kill")
    assert resumes >= KILLS // 10


def dsk_rm(p):
    import shutil
    shutil.rmtree(p)


def test_a_second_writer_is_refused_and_the_first_finishes_intact(refs, tmp_path):
    src, ref = refs
    slow = ["create", "random", "out.zarr", "--shape", "1200,1000", "--chunks", "100,100", "--seed", "7",
            "--codec", "gzip:9", "--workers", "1", "-q"]
    p = start(slow, tmp_path)
    marker = tmp_path / "out.zarr.partial" / ".dsk-partial"
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.01)
    assert p.poll() is None, "the first run ended before the second could start: make it slower"
    r = dsk(*[("8" if a == "7" else a) for a in slow], cwd=tmp_path, ok=False)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "being written by another run" in err and f"pid {p.pid}" in err, err
    assert p.wait() == 0, p.stderr.read().decode()
    dsk("create", "random", "ref.zarr", *slow[3:], cwd=tmp_path)
    a = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    b = zarr.open_array(str(tmp_path / "ref.zarr"), mode="r")[...]
    assert same(a, b)


def test_resume_refuses_another_computation_and_runs_when_there_is_nothing(refs, tmp_path):
    args = ["create", "random", "out.zarr", "--shape", "1200,1000", "--chunks", "50,50", "--codec", "gzip:9",
            "--workers", "1", "-q"]
    # nothing to resume: simply runs
    dsk(*args, "--seed", "1", "--resume", cwd=tmp_path)
    dsk_rm(tmp_path / "out.zarr")
    p = start(args + ["--seed", "1"], tmp_path)
    kill_midway(p, tmp_path / "out.zarr.partial")
    assert (tmp_path / "out.zarr.partial").exists()
    r = dsk(*args, "--seed", "2", "--resume", cwd=tmp_path, ok=False)
    assert r.returncode == 1 and "different computation" in r.stderr.decode(), r.stderr.decode()
    assert (tmp_path / "out.zarr.partial").exists(), "a refused resume must keep the partial output"
    # without --resume the stale partial is replaced, with a note
    r = dsk(*args, "--seed", "2", cwd=tmp_path)
    assert "left by an earlier run that stopped" in r.stderr.decode()
    assert leftovers(tmp_path) == []


def test_a_killed_overwrite_never_loses_the_old_array(refs, tmp_path):
    src, ref = refs
    rng = random.Random(SEED + 1)
    dsk("create", "ones", "out.zarr", "--shape", "600,500", "--chunks", "50,50", cwd=tmp_path)
    args = ["create", "random", "out.zarr", "--shape", "600,500", "--chunks", "50,50", "--seed", "7",
            "--codec", "gzip:6", "--overwrite", "-q"]
    new = ref["create"][0]
    for _ in range(8):
        p = start(args, tmp_path)
        time.sleep(rng.uniform(0, ref["create"][1] * 1.1))
        kill_group(p)
        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
        assert same(got, new) or (got == 1).all(), "the output is neither the old array nor the new one"
    dsk(*args, cwd=tmp_path)
    assert leftovers(tmp_path) == []


def test_work_directories_of_killed_runs_are_reclaimed(refs, tmp_path):
    src, ref = refs
    os.symlink(src / "x.zarr", tmp_path / "x.zarr")
    work = tmp_path / "work"
    work.mkdir()
    args = COMMANDS["rechunk-2pass"] + ["--work-dir", str(work), "-q"]
    p = start(args, tmp_path)
    time.sleep(ref["rechunk-2pass"][1] * 0.5)
    kill_group(p)
    if (tmp_path / "out.zarr").exists():  # it finished before the kill
        dsk_rm(tmp_path / "out.zarr")
    # a foreign directory that only looks like dsk's is left alone
    (work / "dsk-notes").mkdir()
    # another run's output: the killed run's work dir is kept while its partial can be resumed…
    dsk("rechunk", "x.zarr", "other.zarr", "--chunks", "600,3", "--memory", "1MiB", "--work-dir", str(work), "-q",
        cwd=tmp_path)
    kept = [n for n in os.listdir(work) if n.startswith("dsk-") and n != "dsk-notes"]
    if (tmp_path / "out.zarr.partial").exists():
        assert len(kept) <= 1
    # …and removed once that partial is replaced by a run without --resume
    dsk(*args, cwd=tmp_path)
    assert sorted(os.listdir(work)) == ["dsk-notes"]
    assert leftovers(tmp_path) == []


def test_resume_accepts_another_spelling_of_the_same_paths_and_refuses_a_linked_partial(refs, tmp_path):
    args = ["--shape", "1200,1000", "--chunks", "50,50", "--seed", "1", "--codec", "gzip:9", "--workers", "1", "-q"]
    p = start(["create", "random", "out.zarr", *args], tmp_path)
    kill_midway(p, tmp_path / "out.zarr.partial")
    assert (tmp_path / "out.zarr.partial").exists()
    r = dsk("create", "random", str(tmp_path / "out.zarr"), *args, "--resume", cwd=tmp_path)
    assert "different computation" not in r.stderr.decode()
    dsk("create", "random", "ref.zarr", *args, cwd=tmp_path)
    a = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    assert same(a, zarr.open_array(str(tmp_path / "ref.zarr"), mode="r")[...])
    # a staging directory that is a link is refused, and neither the link nor its target removed
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "l.zarr.partial")
    r = dsk("create", "random", "l.zarr", *args, cwd=tmp_path, ok=False)
    assert r.returncode == 1 and "symbolic link" in r.stderr.decode(), r.stderr.decode()
    assert (tmp_path / "l.zarr.partial").is_symlink() and (tmp_path / "elsewhere").is_dir()


def test_foreign_directories_named_like_work_dirs_are_never_removed(tmp_path):
    work = tmp_path / "work"
    (work / "dsk-999999-abcdef" / "sub").mkdir(parents=True)
    (work / "dsk-999999-abcdef" / "sub" / "data.txt").write_text("precious")
    dsk("create", "zeros", "z.zarr", "--shape", "10", "--chunks", "5", "--work-dir", str(work), "--scheduler",
        "processes", cwd=tmp_path)
    assert (work / "dsk-999999-abcdef" / "sub" / "data.txt").read_text() == "precious"
