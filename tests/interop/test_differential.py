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
