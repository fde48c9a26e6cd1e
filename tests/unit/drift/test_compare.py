"""Verdicts: Insufficient is never a verdict, corrections change which features drift."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.api import driftmonitor as dm
from flywheel.api.driftmonitor import Correction, DriftTest, DriftTests, Verdict
from flywheel.drift import compare, stats
from flywheel.drift.compare import Check, ColumnReference


def _check(p: float | None, score: float | None = 0.1, level: float = 0.05) -> Check:
    verdict = Verdict.INSUFFICIENT
    return Check("f", dm.TestMethod.KS, level, verdict, 100, 100, score, p, p)


def test_correction_changes_the_verdicts() -> None:
    checks = [_check(0.01), _check(0.03), _check(0.04), _check(0.5)]
    none = compare.correct(checks, Correction.NONE)
    assert [c.verdict for c in none] == ["Drift", "Drift", "Drift", "NoDrift"]
    bh = compare.correct(checks, Correction.BENJAMINI_HOCHBERG)
    assert [c.drifted for c in bh] == [True, False, False, False]  # 0.04, 0.0533, 0.0533
    bonferroni = compare.correct(checks, Correction.BONFERRONI)
    assert [c.p_value for c in bonferroni] == pytest.approx([0.04, 0.12, 0.16, 1.0])
    assert bonferroni[0].raw_p_value == 0.01


def test_distances_meet_their_threshold_and_are_not_corrected() -> None:
    psi = Check("g", dm.TestMethod.PSI, 0.2, Verdict.INSUFFICIENT, 100, 100, score=0.2)
    [judged] = compare.correct([psi], Correction.BONFERRONI)
    assert judged.verdict == Verdict.DRIFT and judged.p_value is None


def test_overall_verdict() -> None:
    drift = Check("a", dm.TestMethod.KS, 0.05, Verdict.DRIFT, 1, 1)
    fine = Check("b", dm.TestMethod.KS, 0.05, Verdict.NO_DRIFT, 1, 1)
    unknown = Check("c", dm.TestMethod.KS, 0.05, Verdict.INSUFFICIENT, 1, 1)
    assert compare.overall([fine, unknown, drift]) == Verdict.DRIFT
    assert compare.overall([fine, fine]) == Verdict.NO_DRIFT
    assert compare.overall([fine, unknown]) == Verdict.INSUFFICIENT
    assert compare.overall([]) == Verdict.INSUFFICIENT


def test_too_few_reference_or_live_values_is_insufficient() -> None:
    rng = np.random.default_rng(0)
    small = ColumnReference(
        "x", compare.NUMERIC, numeric=stats.numeric_reference(rng.normal(size=50))
    )
    big = ColumnReference(
        "x", compare.NUMERIC, numeric=stats.numeric_reference(rng.normal(size=5000))
    )
    test = DriftTest(method=dm.TestMethod.KS)
    live = compare.live_numbers(rng.normal(5, 1, size=1000))
    assert compare.check_feature(small, live, test, 100).verdict == Verdict.INSUFFICIENT
    few = compare.live_numbers(np.concatenate([rng.normal(5, 1, 99), [np.nan] * 50]))
    check = compare.check_feature(big, few, test, 100)
    assert check.verdict == Verdict.INSUFFICIENT and check.score is None and check.samples == 99
    assert compare.correct([compare.check_feature(big, live, test, 100)], Correction.NONE)[
        0
    ].drifted


def test_defaults_by_type_and_overrides() -> None:
    tests = DriftTests.model_validate({"overrides": [{"feature": "plan", "method": "psi"}]})
    assert compare.choose_test(tests, "plan", compare.CATEGORICAL).method == "psi"
    assert compare.choose_test(tests, "region", compare.CATEGORICAL).method == "chi2"
    assert compare.choose_test(tests, "charges", compare.NUMERIC).method == "ks"
    ref = ColumnReference(
        "plan", compare.CATEGORICAL, categorical=stats.categorical_reference({"a": 1})
    )
    with pytest.raises(compare.MethodMismatch):
        compare.check_feature(
            ref, compare.live_categories({"a": 1}), DriftTest(method=dm.TestMethod.KS), 1
        )


def test_max_score_prefers_distances() -> None:
    a = Check("a", dm.TestMethod.KS, 0.05, Verdict.NO_DRIFT, 1, 1, score=0.9, raw_p_value=0.2)
    b = Check("b", dm.TestMethod.PSI, 0.2, Verdict.NO_DRIFT, 1, 1, score=0.1)
    assert compare.max_score([a, b]) == 0.1 and compare.max_score([a]) == 0.9
    assert compare.max_score([]) is None
