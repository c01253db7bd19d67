"""Run the stages of a dsk plan on a Dask distributed cluster.

``dsk … --executor dask --scheduler-address tcp://HOST:PORT`` starts ``python -m dsk_dask run -``
and sends it the run as JSON (see ``submit_run``). Each range of a stage's tasks becomes one Dask
task that runs ``dsk worker`` as a subprocess on whichever Dask worker gets it; tasks of a stage
depend on every task of the stage before. Ranges are idempotent (a task rewrites the same chunks,
and ``--skip-done`` skips tasks already recorded), so Dask's retries and work stealing are safe.

Only the client (the machine running dsk) needs this package; the Dask workers need the ``dsk``
binary at the same path (or ``dsk = …`` in the ``[dask]`` section of the cluster config).

Memory: each task asks for the resource ``memory`` (the task's projected peak, in bytes) when
the cluster's workers declare it (``dask worker --resources memory=16e9``), so Dask runs no more
dsk tasks on a worker than its memory holds. Workers that declare no ``memory`` resource run up
to ``nthreads`` dsk tasks at once (a warning says so).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

__all__ = ["run_range", "submit_run", "DskTaskError"]
__version__ = "0.1.0"


class DskTaskError(RuntimeError):
    """A range of tasks failed on a Dask worker; the message says which task and why."""


def _die_with_parent():
    """In the child: get SIGKILL when the worker thread that started it goes away (a killed Dask
    worker must not leave a ``dsk worker`` writing behind it)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # not Linux: nothing to do
        pass


def _stop_requested(cancel):
    """Whether the run was cancelled (the driver set the Dask Event ``cancel``), or the scheduler
    cannot be asked (then stop too: nobody is left to want the result)."""
    if cancel is None:
        return False
    try:
        from distributed import Event

        return Event(cancel).is_set()
    except Exception:
        return True


def run_range(dsk, plan, stage, first, count, records, cwd=None, io="auto", after=None, name=None, retries=0,
              cancel=None):
    """Run tasks ``first .. first+count`` of stage ``stage`` of the plan file ``plan`` with
    ``dsk worker`` (the body of one Dask task). ``after`` is ignored: passing the previous
    stage's futures there makes this task wait for them. When the Dask Event named ``cancel`` is
    set, the worker is stopped (it finishes its current task) and ``{"cancelled": True}``
    returned. Returns what the worker reported."""
    if _stop_requested(cancel):
        return {"cancelled": True, "stage": stage, "first": first, "count": count}
    cmd = [
        str(dsk), "worker", str(plan), "--stage", str(stage), "--first", str(first),
        "--count", str(count), "--skip-done", "--records", str(records), "--io", io,
    ]
    workdir = cwd if cwd and os.path.isdir(cwd) else None
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir,
        stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if _stop_requested(cancel):
                    proc.terminate()  # dsk worker stops before its next task
                    try:
                        proc.communicate(timeout=120)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.communicate()
                    return {"cancelled": True, "stage": stage, "first": first, "count": count}
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    running, done, nbytes, peak = None, 0, 0, None
    for line in out.splitlines():
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if "start" in v:
            running = v["start"]
        if "done" in v:
            running = None
            done += 1
            nbytes += v.get("bytes", 0)
        if "peak_rss" in v:
            peak = v["peak_rss"]
    host = socket.gethostname()
    if proc.returncode != 0:
        lines = [l for l in err.splitlines() if l.strip()]
        why = next((l[len("dsk: error: "):] for l in reversed(lines) if l.startswith("dsk: error: ")), None)
        if why is None:
            why = lines[-1] if lines else "no message"
        code = proc.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        at = f"task {running} " if running is not None else ""
        tried = f", after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        raise DskTaskError(
            f"stage {name or stage}: {at}failed on Dask worker {host} (tasks {first}..{first + count}, {how}{tried}): {why}"
        )
    return {"stage": stage, "first": first, "count": count, "done": done, "bytes": nbytes,
            "peak_rss": peak, "host": host}


def _memory_resources(client, need, emit):
    """The resources to ask of Dask for a task needing ``need`` bytes (``None`` when no worker
    declares ``memory``); an error when no worker has enough."""
    workers = client.scheduler_info().get("workers", {})
    have = [w.get("resources", {}).get("memory") for w in workers.values()]
    have = [h for h in have if h is not None]
    if not have:
        emit({"warning": "the Dask workers declare no 'memory' resource: each runs up to nthreads dsk tasks "
                         "at once — start them with --resources memory=BYTES so Dask packs tasks by memory"})
        return None
    if max(have) < need:
        raise DskTaskError(
            f"no Dask worker declares enough memory for a task: the largest has {int(max(have))} bytes, "
            f"a task needs {need} — lower --memory, or start workers with more (--resources memory=BYTES)"
        )
    return {"memory": need}


def submit_run(client, spec, emit=lambda v: None):
    """Submit every stage of ``spec`` (the JSON ``dsk`` sends) to ``client`` and wait for them;
    ``emit`` receives ``{"stage_done": S}`` as stages end. Raises ``DskTaskError`` when a range
    fails after its retries (the other tasks are cancelled)."""
    # the workers need dsk on their PATH (or at spec["dsk"]), not this package: its functions
    # travel by value
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    from distributed import Event, as_completed, wait

    # set when the run stops early: every range still running stops its dsk worker, and the
    # driver returns only once none runs (nothing may write into an output being removed)
    cancel = f"dsk-cancel-{spec['run']}"
    stop = Event(cancel, client=client)
    futures = []
    try:
        stop.clear()
        prev = []
        stage_of = {}
        left = {}
        for st in spec["stages"]:
            res = _memory_resources(client, st["memory"], emit)
            futs = []
            for i in range(st["indices"]):
                first = i * st["per"]
                count = min(st["per"], st["tasks"] - first)
                key = f"dsk-{st['name']}-{spec['run']}-{first}"
                f = client.submit(
                    run_range, spec["dsk"], spec["plan"], st["stage"], first, count, spec["records"],
                    spec.get("cwd"), spec.get("io", "auto"), prev, st["name"], spec.get("retries", 0), cancel,
                    key=key, retries=spec.get("retries", 0), resources=res, pure=False,
                )
                futs.append(f)
                futures.append(f)
                stage_of[f.key] = st["stage"]
            left[st["stage"]] = len(futs)
            prev = futs
        for f in as_completed(futures):
            if f.status == "error":
                raise DskTaskError(str(f.exception())) from None
            r = f.result()
            if r.get("cancelled"):
                raise DskTaskError(
                    f"stage {r['stage'] + 1}: tasks {r['first']}..{r['first'] + r['count']} were cancelled")
            if r.get("peak_rss"):
                emit({"peak_rss": r["peak_rss"]})
            s = stage_of[f.key]
            left[s] -= 1
            if left[s] == 0:
                emit({"stage_done": s})
    except BaseException:
        # stop every range and wait for them, whatever signal comes meanwhile: nothing may
        # write into the output once the driver removes it
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            stop.set()
            wait(futures, timeout=300)
        finally:
            client.cancel(futures)
        raise


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "run":
        print("usage: python -m dsk_dask run SPEC.json|-   (started by dsk --executor dask)", file=sys.stderr)
        return 2
    text = sys.stdin.read() if argv[1] == "-" else open(argv[1]).read()
    spec = json.loads(text)

    def emit(v):
        print(json.dumps(v), flush=True)

    from distributed import Client

    # SIGTERM (the driver died: PR_SET_PDEATHSIG, or `timeout`) and SIGHUP (a lost terminal)
    # stop the run as Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    addr = spec["scheduler_address"]
    try:
        client = Client(addr, timeout="10s")
    except Exception as e:  # OSError, TimeoutError
        print(f"dsk: error: --scheduler-address: cannot connect to the Dask scheduler at {addr}: {e}", file=sys.stderr)
        return 1
    try:
        submit_run(client, spec, emit)
    except DskTaskError as e:
        emit({"error": str(e)})
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()
    return 0
