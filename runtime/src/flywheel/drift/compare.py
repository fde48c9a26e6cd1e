"""Verdicts: each feature's test chosen, run, corrected for many features and judged.

Pure: prepared references and live values in, frozen `Check`s out. The verdict rules:

    too few live or reference values       Insufficient (no score)
    ks, chi2                              Drift when the corrected p-value < alpha
    psi, wasserstein, js                  Drift when score >= threshold
    the run                               Drift if any feature drifted; NoDrift if every
                                          feature had a verdict and none drifted;
                                          otherwise Insufficient
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flywheel.api.driftmonitor import (
    CATEGORICAL_METHODS,
    NUMERICAL_METHODS,
    Correction,
    DriftTest,
    DriftTests,
    TestMethod,
    Verdict,
)
from flywheel.drift import stats, workers

NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclasses.dataclass(frozen=True, eq=False)
class ColumnReference:
    """One feature's reference, prepared: numbers or category counts."""

    name: str
    kind: str  # NUMERIC or CATEGORICAL
    numeric: stats.NumericReference | None = None
    categorical: stats.CategoricalReference | None = None

    @property
    def count(self) -> int:
        prepared = self.numeric if self.kind == NUMERIC else self.categorical
        return prepared.count if prepared is not None else 0


@dataclasses.dataclass(frozen=True)
class LiveColumn:
    """One feature's live values: numbers (nulls as NaN), or category -> count."""

    values: np.ndarray | None = None
    counts: Mapping[str, int] | None = None


@dataclasses.dataclass(frozen=True)
class Check:
    feature: str
    method: TestMethod
    level: float  # alpha for ks and chi2, else the threshold
    verdict: Verdict
    samples: int
    reference_samples: int
    score: float | None = None
    p_value: float | None = None  # after the correction
    raw_p_value: float | None = None
    statistic: float | None = None

    @property
    def drifted(self) -> bool:
        return self.verdict == Verdict.DRIFT


class MethodMismatch(ValueError):
    """A method asked of a feature whose type it cannot test."""


def choose_test(tests: DriftTests, feature: str, kind: str) -> DriftTest:
    """The feature's override, else the default of its type."""
    for override in tests.overrides:
        if override.feature == feature:
            return override
    return tests.numerical if kind == NUMERIC else tests.categorical


def check_feature(
    reference: ColumnReference, live: LiveColumn, test: DriftTest, min_samples: int
) -> Check:
    """One feature's test; its p-value is not yet corrected for the other features."""
    method = TestMethod(test.method)
    allowed = NUMERICAL_METHODS if reference.kind == NUMERIC else CATEGORICAL_METHODS
    if method not in allowed:
        raise MethodMismatch(
            f"{method} cannot test {reference.kind} feature {reference.name!r}; "
            f"use one of {', '.join(sorted(allowed))}"
        )
    if reference.kind == NUMERIC:
        result, samples = _numeric(reference, live, method)
    else:
        result, samples = _categorical(reference, live, method)
    base = Check(
        feature=reference.name,
        method=method,
        level=test.level(),
        verdict=Verdict.INSUFFICIENT,
        samples=samples,
        reference_samples=reference.count,
    )
    if samples < min_samples or reference.count < min_samples or math.isnan(result.score):
        return base
    return dataclasses.replace(
        base,
        score=result.score,
        raw_p_value=result.p_value,
        p_value=result.p_value,
        statistic=result.statistic,
    )


def _numeric(
    reference: ColumnReference, live: LiveColumn, method: TestMethod
) -> tuple[stats.Result, int]:
    prepared = reference.numeric
    assert prepared is not None and live.values is not None
    values = live.values
    if method in (TestMethod.PSI, TestMethod.JS):
        counts = stats.numeric_bin_counts(prepared, values)
        samples = int(counts.sum())
        if method == TestMethod.PSI:
            return stats.psi(prepared.bin_counts, counts), samples
        return stats.jensen_shannon(prepared.bin_counts, counts), samples
    samples = int(np.count_nonzero(np.isfinite(values)))
    if method == TestMethod.KS:
        return stats.ks(prepared, values), samples
    return stats.wasserstein(prepared, values), samples


def _categorical(
    reference: ColumnReference, live: LiveColumn, method: TestMethod
) -> tuple[stats.Result, int]:
    prepared = reference.categorical
    assert prepared is not None and live.counts is not None
    counts = stats.counts_on(prepared, live.counts)
    samples = int(counts.sum())
    if method == TestMethod.CHI2:
        return stats.chi2(prepared, counts), samples
    if method == TestMethod.PSI:
        return stats.psi(prepared.counts, counts), samples
    return stats.jensen_shannon(prepared.counts, counts), samples


def correct(checks: Sequence[Check], correction: Correction) -> list[Check]:
    """Adjust the p-values of the checks that have one, then give every check its verdict."""
    tested = [i for i, c in enumerate(checks) if c.raw_p_value is not None]
    raw = [checks[i].raw_p_value or 0.0 for i in tested]
    if correction == Correction.BONFERRONI:
        adjusted = stats.bonferroni(raw)
    elif correction == Correction.BENJAMINI_HOCHBERG:
        adjusted = stats.benjamini_hochberg(raw)
    else:
        adjusted = list(raw)
    out = list(checks)
    for i, p in zip(tested, adjusted, strict=True):
        out[i] = dataclasses.replace(out[i], p_value=p)
    return [_judged(c) for c in out]


def _judged(check: Check) -> Check:
    if check.score is None:
        return check
    if check.p_value is not None:
        drifted = check.p_value < check.level
    else:
        drifted = check.score >= check.level
    return dataclasses.replace(check, verdict=Verdict.DRIFT if drifted else Verdict.NO_DRIFT)


def check_all(
    references: Mapping[str, ColumnReference],
    live: Mapping[str, LiveColumn],
    tests: DriftTests,
    min_samples: int,
) -> list[Check]:
    """Every feature present on both sides, in the order of `live`, with verdicts."""

    def check(name: str) -> Check:
        reference = references[name]
        return check_feature(
            reference, live[name], choose_test(tests, name, reference.kind), min_samples
        )

    checks = workers.map_features(check, [name for name in live if name in references])
    return correct(checks, Correction(tests.correction))


def overall(checks: Sequence[Check]) -> Verdict:
    """Drift if any check drifted; NoDrift only if every check had a verdict."""
    if any(c.drifted for c in checks):
        return Verdict.DRIFT
    if checks and all(c.verdict == Verdict.NO_DRIFT for c in checks):
        return Verdict.NO_DRIFT
    return Verdict.INSUFFICIENT


def max_score(checks: Sequence[Check]) -> float | None:
    """The largest distance score (psi, wasserstein, js), else the largest ks/chi2 score."""
    distances = [c.score for c in checks if c.score is not None and c.raw_p_value is None]
    tests = [c.score for c in checks if c.score is not None and c.raw_p_value is not None]
    pool = distances or tests
    return max(pool) if pool else None


def live_numbers(values: Any) -> LiveColumn:
    return LiveColumn(values=np.asarray(values, dtype=np.float64))


def live_categories(counts: Mapping[Any, int]) -> LiveColumn:
    return LiveColumn(counts={str(k): int(v) for k, v in counts.items()})
