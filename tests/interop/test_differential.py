"""Differential test: 2,400 random expressions (seed 20240601) evaluated by `dsk eval` under every
scheduler (60% threads, 20% sync, 20% processes; random --workers, --memory, --split-every) and by
the NumPy oracle of difftest.py with its per-element error bound, plus the regression expressions of
difftest_cases.txt. A failure lists every shrunk reproducer. Longer campaigns:
`python tests/interop/difftest.py --n 100000 --seed S` (or `make fuzz-diff`)."""

import os

import pytest

import difftest

pytestmark = pytest.mark.filterwarnings("ignore")

SEED = 20240601
N = 2400
SCHEDULERS = [("threads", 60), ("sync", 20), ("processes", 20)]


def test_differential_against_numpy():
    if not os.path.exists(difftest.DSK):
        pytest.skip(f"no dsk binary at {difftest.DSK}")
    res = difftest.run_campaign(
        N, SEED, jobs=os.cpu_count() or 4, schedulers=SCHEDULERS, max_shrinks=40, shrink_budget=80,
        shrink_seconds=12, extra_exprs=difftest.load_cases(os.path.join(os.path.dirname(__file__), "difftest_cases.txt")))
    print(res.summary())
    assert res.stats["budget_skips"] <= N // 20, res.summary()
    assert res.stats["unstable"] <= res.stats["elements"] // 20, res.summary()
    if res.failures:
        pytest.fail(f"{res.summary()}\n\n{res.report()}", pytrace=False)


def test_oracle_text_means_what_the_oracle_evaluates():
    """The text sent to dsk, evaluated by Python + NumPy, equals the oracle's value (printer
    precedence, weak literals, method forms)."""
    problems = difftest.selftest_render(1500, seed=SEED)
    assert not problems, "\n".join(problems[:20])


def test_error_bounds_admit_another_valid_implementation():
    """libm math functions, float64 math for float32, reversed-order float64 reductions and scans
    all stay within the oracle's error bounds (the bounds are not too tight)."""
    problems = difftest.selftest_bounds(2000, seed=SEED)
    assert not problems, "\n".join(problems[:20])


def test_mutated_expressions_never_crash_the_parser_or_planner():
    """The generator's expressions, mutated byte by byte (characters inserted, deleted or replaced,
    non-ASCII included), planned with --explain: dsk succeeds or refuses with a one-line error (exit
    1 or 2) — never a panic, an internal error or a crash."""
    import random
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    if not os.path.exists(difftest.DSK):
        pytest.skip(f"no dsk binary at {difftest.DSK}")
    root = os.path.join(tempfile.gettempdir(), "dsk-difftest")
    sets = difftest.build_input_sets(SEED, 4, root)
    alphabet = list("()[],:.=+-*/%<>&|~^'\"0123456789exyzuvw_ .") + ["**", "//", "...", "é", "∞", "\t"]
    cases = []
    for i in range(600):
        rng = random.Random(f"mutate{SEED}:{i}")
        iset = sets[rng.randrange(len(sets))]
        text = difftest.Gen(rng, iset).expr().text()
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(chars) + 1)
            op = rng.random()
            if op < 0.35 and chars:
                del chars[min(pos, len(chars) - 1)]
            elif op < 0.7:
                chars.insert(pos, rng.choice(alphabet))
            elif chars:
                chars[min(pos, len(chars) - 1)] = rng.choice(alphabet)
        names = [f"{n}={s.path}" for n, s in iset.arrays.items()]
        cases.append(("".join(chars), names))

    def run(case):
        text, names = case
        p = subprocess.run([difftest.DSK, "eval", text, *names, "--explain"], capture_output=True, timeout=60)
        err = p.stderr.decode(errors="replace")
        bad = p.returncode not in (0, 1, 2) or "internal error" in err or "panicked" in err
        if p.returncode != 0 and not err.startswith("dsk: error: "):
            bad = True
        return None if not bad else f"{text!r}: exit {p.returncode}: {err.strip()[:300]}"

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        problems = [r for r in ex.map(run, cases) if r]
    assert not problems, "\n".join(problems[:20])
