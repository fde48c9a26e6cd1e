"""Drift statistics: 1M live rows x 50 features against a 1M-row reference, one core.

Side by side in one run, per method the total over the 50 features:

    KS    Flywheel (reference prepared once) | scipy.stats.ks_2samp | numpy textbook
          (sort both, searchsorted both into the union, as scipy does)
    PSI   Flywheel (compare-and-count per decile edge) | numpy searchsorted + bincount |
          np.histogram on the same edges
    floor one np.sum pass over the same live values (the memory floor)

Goals from the issue: PSI >= 100M values/s per core; KS >= 3x scipy. Preparing the
reference is printed apart: it happens once per reference version, not per run.
Evidently's data drift preset runs when $FLYWHEEL_EVIDENTLY_PYTHON names a Python that
has it, in an environment of its own (evidently 0.7.23 fails to import with pandas 3,
which its requirements allow):

    python3 -m venv /tmp/evidently && .venv/bin/uv pip install \
        --python /tmp/evidently/bin/python "evidently==0.7.23" "pandas<3"

    .venv/bin/pytest -m bench -s tests/bench/test_bench_drift.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats as sps  # type: ignore[import-untyped]

from flywheel.api.driftmonitor import DriftTests
from flywheel.drift import compare, reference, stats, workers
from tests.bench.common import best_of, report, scaled

pytestmark = pytest.mark.bench

FEATURES = 50
REPEATS = 3


def ks_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS as numpy code usually writes it: both sorted, both searched."""
    a, b = np.sort(a), np.sort(b)
    union = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, union, side="right") / a.size
    cdf_b = np.searchsorted(b, union, side="right") / b.size
    return float(np.abs(cdf_a - cdf_b).max())


def psi_flywheel(prepared: stats.NumericReference, live: np.ndarray) -> float:
    return stats.psi(prepared.bin_counts, stats.numeric_bin_counts(prepared, live)).score


def psi_searchsorted(edges: np.ndarray, ref_counts: np.ndarray, live: np.ndarray) -> float:
    counts = np.bincount(np.searchsorted(edges, live, side="left"), minlength=edges.size + 1)
    return stats.psi(ref_counts, counts).score


def psi_histogram(edges: np.ndarray, ref_counts: np.ndarray, live: np.ndarray) -> float:
    counts, _ = np.histogram(live, bins=np.concatenate([[-np.inf], edges, [np.inf]]))
    return stats.psi(ref_counts, counts).score


@pytest.mark.timeout(3600)  # scipy's share alone is minutes on a busy 2-core machine
def test_drift_statistics_throughput() -> None:
    n = scaled(1_000_000)
    rng = np.random.default_rng(0)
    totals: dict[str, float] = {}

    def add(name: str, seconds: float) -> None:
        totals[name] = totals.get(name, 0.0) + seconds

    for f in range(FEATURES):
        ref = rng.normal(size=n)
        live = rng.normal(loc=0.01 * (f % 5), size=n)  # some features drift a little
        t, prepared = best_of(1, partial(stats.numeric_reference, ref))
        add("prepare reference", t)

        t, ours = best_of(REPEATS, partial(stats.ks, prepared, live))
        add("KS flywheel", t)
        t, theirs = best_of(REPEATS, partial(sps.ks_2samp, ref, live))
        add("KS scipy.stats.ks_2samp", t)
        t, textbook = best_of(REPEATS, partial(ks_numpy, ref, live))
        add("KS numpy (sort both + searchsorted)", t)
        assert ours.score == pytest.approx(theirs.statistic, abs=1e-12)
        assert textbook == pytest.approx(theirs.statistic, abs=1e-12)
        assert ours.p_value == pytest.approx(theirs.pvalue, abs=0.01)

        t, ours_psi = best_of(REPEATS, partial(psi_flywheel, prepared, live))
        add("PSI flywheel", t)
        edges, counts = prepared.edges, prepared.bin_counts
        t, sorted_psi = best_of(REPEATS, partial(psi_searchsorted, edges, counts, live))
        add("PSI numpy searchsorted + bincount", t)
        t, hist_psi = best_of(REPEATS, partial(psi_histogram, edges, counts, live))
        add("PSI numpy histogram", t)
        assert ours_psi == pytest.approx(sorted_psi, rel=1e-12)
        assert ours_psi == pytest.approx(hist_psi, rel=1e-12)

        t, _ = best_of(REPEATS, partial(np.sum, live))
        add("np.sum pass (floor)", t)

    values = n * FEATURES
    floor = totals["np.sum pass (floor)"]
    rows = []
    for name, seconds in totals.items():
        scipy_ratio = totals["KS scipy.stats.ks_2samp"] / seconds if name.startswith("KS") else None
        rows.append(
            [
                name,
                f"{seconds:.3f}",
                f"{values / seconds / 1e6:.1f}",
                f"{scipy_ratio:.2f}x" if scipy_ratio else "",
                f"{seconds / floor:.1f}",
            ]
        )
    report(
        f"Drift statistics, {n:,} live rows x {FEATURES} features vs a {n:,}-row reference, "
        "one core (best of 3 per feature)",
        ["method", "seconds", "M values/s", "vs scipy", "np.sum passes"],
        rows,
    )
    psi_rate = values / totals["PSI flywheel"] / 1e6
    ks_ratio = totals["KS scipy.stats.ks_2samp"] / totals["KS flywheel"]
    print(
        f"  goals: PSI >= 100 M values/s per core: {psi_rate:.0f}; KS >= 3x scipy: {ks_ratio:.1f}x"
    )


EVIDENTLY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset
    n, k = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(k)})
    cur = pd.DataFrame({f"f{i}": rng.normal(0.01 * (i % 5), size=n) for i in range(k)})
    wall, cpu = time.perf_counter(), time.process_time()
    Report([DataDriftPreset(method="ks")]).run(cur, ref)
    print(json.dumps({"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
    """
)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds (all of the process's threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


@pytest.mark.timeout(3600)
def test_against_evidently(tmp_path: Path) -> None:
    """What `flywheel drift run` does with a window, timed against Evidently's preset:
    cold (the reference prepared in the timing, `reference.prepare`) and warm (a
    scheduled run: the reference of this version already prepared), both through
    `compare.check_all`, which tests the features on a thread per usable CPU.

    Wall time is what a run waits; CPU time is the work, and the fairer ratio when other
    processes share the machine (Evidently runs on one core, Flywheel on all it may use).
    """
    python = os.environ.get("FLYWHEEL_EVIDENTLY_PYTHON")
    if not python:
        pytest.skip("set FLYWHEEL_EVIDENTLY_PYTHON to a Python with evidently installed")
    n, k = scaled(200_000), FEATURES
    script = tmp_path / "evidently_bench.py"
    script.write_text(EVIDENTLY_SCRIPT)
    before = load()
    out = subprocess.run(
        [python, str(script), str(n), str(k)], capture_output=True, text=True, check=True
    )
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    rng = np.random.default_rng(0)
    ref = pa.table({f"f{i}": rng.normal(size=n) for i in range(k)})
    cur = {f"f{i}": compare.live_numbers(rng.normal(0.01 * (i % 5), size=n)) for i in range(k)}
    tests = DriftTests.model_validate({"numerical": {"method": "ks", "alpha": 0.05}})

    def cold() -> list[compare.Check]:
        return compare.check_all(reference.prepare(ref), cur, tests, 100)

    prepared = reference.prepare(ref)

    def warm() -> list[compare.Check]:
        return compare.check_all(prepared, cur, tests, 100)

    # The same statistic as scipy's, which Evidently's preset calls per column.
    checks = warm()
    for i in (0, 1, k - 1):
        a = ref.column(f"f{i}").to_numpy()
        want = sps.ks_2samp(a, cur[f"f{i}"].values).statistic
        assert checks[i].score == pytest.approx(want, abs=1e-12)
    runs = {"cold": [timed(cold) for _ in range(REPEATS)]}
    runs["warm"] = [timed(warm) for _ in range(REPEATS)]
    after = load()
    best = {name: (min(w for w, _ in t), min(c for _, c in t)) for name, t in runs.items()}
    rows = [
        [
            "Evidently DataDriftPreset (method ks)",
            f"{theirs['seconds']:.2f}",
            f"{theirs['cpu']:.2f}",
            "1",
            "1",
        ]
    ]
    for name, label in (
        ("cold", "Flywheel, reference prepared in the timing"),
        ("warm", "Flywheel, reference prepared before (a run)"),
    ):
        wall, cpu = best[name]
        rows.append(
            [
                label,
                f"{wall:.3f}",
                f"{cpu:.3f}",
                f"{theirs['seconds'] / wall:.0f}x",
                f"{theirs['cpu'] / cpu:.0f}x",
            ]
        )
    report(
        f"Data drift, {n:,} rows x {k} numeric features, KS on each; "
        f"{workers.usable_cpus()} usable CPUs; best of {REPEATS}; {before} -> {after}",
        ["tool", "wall s", "CPU s", "wall: Evidently / this", "CPU: Evidently / this"],
        rows,
    )
    print(f"  ({sys.executable} vs {python})")
