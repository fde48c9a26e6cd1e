"""Metrics, calibration, slices and gates: numbers checked against direct definitions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from flywheel.api.trainingjob import Gate, Metric
from flywheel.training import evaluate


def brute_auc(y: list[int], p: list[float]) -> float:
    pos = [s for s, t in zip(p, y, strict=True) if t]
    neg = [s for s, t in zip(p, y, strict=True) if not t]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_counting_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).tolist()
    p = np.round(rng.random(200), 1).tolist()  # many ties
    assert evaluate.auc(y, p) == pytest.approx(brute_auc(y, p))
    assert np.isnan(evaluate.auc([1, 1], [0.2, 0.3]))


def test_classification_metrics() -> None:
    m = evaluate.classification_metrics([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6])
    assert m["accuracy"] == 0.5
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.4]))
    assert m["logloss"] == pytest.approx(expected)


def test_regression_metrics() -> None:
    m = evaluate.regression_metrics([1.0, 2.0, 3.0], [1.0, 4.0, 3.0])
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3))


def test_calibration_error_is_zero_when_rates_match_and_large_when_not() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(50_000)
    y = (rng.random(50_000) < p).astype(float)
    ece, bins = evaluate.reliability(y, p)
    assert ece < 0.01
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 50_000
    overconfident, _ = evaluate.reliability(y, np.where(p > 0.5, 1.0, 0.0))
    assert overconfident > 0.2


def test_weak_slices_are_flagged() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    good = np.where(y == 1, 0.8, 0.2)
    p = good.copy()
    p[:100] = rng.random(100)  # slice "b" is noise
    groups = ["b"] * 100 + ["a"] * 300
    found = evaluate.evaluate(y, p, True, ["auc"], {"g": groups})
    weak = {s["value"]: s["weak"] for s in found.slices}
    assert weak == {"a": False, "b": True}
    assert found.primary == "auc"


def test_gates_and_the_deployed_baseline() -> None:
    metrics = {"auc": 0.8, "logloss": 0.5}
    gates = [Gate(metric=Metric.AUC, min=0.7), Gate(metric=Metric.LOGLOSS, max=0.4)]
    results = evaluate.check_gates(metrics, gates, None)
    assert [r.passed for r in results] == [True, False]
    assert "logloss=0.5000 fails <= 0.4" in results[1].describe()
    base = {"metric": "auc", "tolerance": 0.01, "value": 0.82, "version": "v1"}
    [worse] = evaluate.check_gates(metrics, [], base)
    assert not worse.passed and "deployed version v1" in worse.bound
    [close] = evaluate.check_gates(metrics, [], {**base, "tolerance": 0.03})
    assert close.passed
    assert not evaluate.check_gates({}, [Gate(metric=Metric.AUC, min=0.1)], None)[0].passed
