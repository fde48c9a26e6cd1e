"""Drift gauges come from the statuses at scrape time; Insufficient exports no verdict."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from flywheel.api import driftmonitor as dm
from flywheel.api.driftmonitor import DriftMonitorStatus, FeatureScore, Verdict
from flywheel.drift import metrics


def _status(verdict: Verdict, p: float | None) -> DriftMonitorStatus:
    score = FeatureScore(
        feature="plan",
        method=dm.TestMethod.CHI2,
        score=None if p is None else 0.2,
        p_value=p,
        threshold=0.05,
        verdict=verdict,
        drifted=verdict == Verdict.DRIFT,
    )
    return DriftMonitorStatus(
        verdict=verdict, scores=[score], samples=10, last_run=datetime(2026, 5, 1, tzinfo=UTC)
    )


def test_collector_reads_statuses_at_each_scrape() -> None:
    current = [("ml", "churn", _status(Verdict.NO_DRIFT, 0.4))]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.DriftCollector(lambda: current))
    labels = {"namespace": "ml", "monitor": "churn", "feature": "plan", "method": "chi2"}
    assert registry.get_sample_value("flywheel_drift_p_value", labels) == 0.4
    assert registry.get_sample_value("flywheel_drift_drifted", labels) == 0.0
    current[0] = ("ml", "churn", _status(Verdict.DRIFT, 0.001))
    assert registry.get_sample_value("flywheel_drift_drifted", labels) == 1.0
    verdict = {"namespace": "ml", "monitor": "churn", "verdict": "Drift"}
    assert registry.get_sample_value("flywheel_drift_verdict", verdict) == 1.0
    stamp = registry.get_sample_value(
        "flywheel_drift_last_run_timestamp_seconds", {"namespace": "ml", "monitor": "churn"}
    )
    assert stamp == datetime(2026, 5, 1, tzinfo=UTC).timestamp()


def test_insufficient_has_no_score_and_no_drifted_sample() -> None:
    text = metrics.exposition([("ml", "churn", _status(Verdict.INSUFFICIENT, None))]).decode()
    assert "flywheel_drift_threshold{" in text
    assert "flywheel_drift_score{" not in text and "flywheel_drift_drifted{" not in text
    assert generate_latest(CollectorRegistry()) == b""
