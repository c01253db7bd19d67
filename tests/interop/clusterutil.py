"""A real single-node Slurm and a real Dask distributed cluster on loopback, for the tests of
`--executor slurm` and `--executor dask`.

`slurm` (fixture, module scope): scripts/slurm-up.sh (installs slurm-wlm and munge when missing,
writes a slurm.conf into a temporary directory, starts munged, slurmctld and slurmd on free ports,
waits for the node to be idle); scripts/slurm-down.sh stops them by PID at the end.
`dask_cluster` (fixture, module scope): `dask scheduler` and two `dask worker` processes (2 threads,
resources memory=2e9 each) from the test venv, on free loopback ports; stopped by PID (TERM, then
KILL after 10 s).
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)

_LIVE = []


@atexit.register
def _stop_all():
    for c in list(_LIVE):
        c.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slurm:
    def __init__(self, root):
        self.dir = str(root)
        self.env = None

    def start(self):
        env = dict(os.environ, SLURMCTLD_PORT=str(free_port()), SLURMD_PORT=str(free_port()))
        r = subprocess.run([os.path.join(ROOT, "scripts", "slurm-up.sh"), self.dir], env=env, capture_output=True,
                           text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"scripts/slurm-up.sh failed:\n{r.stderr}")
        _LIVE.append(self)
        conf = r.stdout.strip().split("=", 1)[1]
        self.env = dict(os.environ, SLURM_CONF=conf)
        return self

    def stop(self):
        if self in _LIVE:
            _LIVE.remove(self)
            subprocess.run([os.path.join(ROOT, "scripts", "slurm-down.sh"), self.dir], capture_output=True, timeout=120)

    def queue(self):
        """Array jobs in the queue (pending or running), as 'ID STATE' lines."""
        r = subprocess.run(["squeue", "-h", "-o", "%F %T"], env=self.env, capture_output=True, text=True)
        return r.stdout.splitlines()

    def wait_idle(self, timeout=60):
        t = time.time()
        while self.queue() and time.time() - t < timeout:
            time.sleep(0.5)
        assert not self.queue(), self.queue()


def _kill(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


class DaskCluster:
    def __init__(self, root, workers=2, env=None):
        self.dir = str(root)
        self.n = workers
        self.procs = []
        self.address = None
        self.env = env or dict(os.environ)

    def start(self, timeout=60):
        port, dash = free_port(), free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        dask = os.path.join(BIN, "dask")
        log = lambda n: open(os.path.join(self.dir, n), "w")  # noqa: E731
        self.procs.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
             f"127.0.0.1:{dash}", "--no-show"], stdout=log("scheduler.log"), stderr=subprocess.STDOUT,
            env=self.env, start_new_session=True))
        _LIVE.append(self)
        for i in range(self.n):
            self.procs.append(subprocess.Popen(
                [dask, "worker", self.address, "--host", "127.0.0.1", "--name", f"w{i}", "--nthreads", "2",
                 "--memory-limit", "2GiB", "--resources", "memory=2e9", "--local-directory",
                 os.path.join(self.dir, f"w{i}"), "--death-timeout", "30"],
                stdout=log(f"worker{i}.log"), stderr=subprocess.STDOUT, env=self.env, start_new_session=True))
        from distributed import Client

        with Client(self.address, timeout=timeout) as c:
            c.wait_for_workers(self.n, timeout=timeout)
        return self

    def stop(self):
        if self not in _LIVE:
            return
        _LIVE.remove(self)
        # workers first (their nannies stop their children), then the scheduler
        for p in self.procs[1:] + self.procs[:1]:
            _kill(p.pid, signal.SIGTERM)
        for p in self.procs[1:] + self.procs[:1]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if not shutil.which("slurmctld") and os.geteuid() != 0:
        pytest.skip("Slurm is not installed and this is not root (CI installs it: .ci/run)")
    s = Slurm(tmp_path_factory.mktemp("slurm")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    c = DaskCluster(tmp_path_factory.mktemp("dask")).start()
    yield c
    c.stop()
