"""A DriftMonitor run end to end: a real Dataset snapshot as the reference, a request log."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import cli, entrypoints
from flywheel.api import driftmonitor as dm
from flywheel.api.common import ConditionStatus
from flywheel.api.dataset import Dataset
from flywheel.api.driftmonitor import DriftMonitor, DriftMonitorStatus, FeatureScore, Verdict
from flywheel.data import runner as datasets
from flywheel.drift import reference, runner
from flywheel.entrypoints import RunContext
from tests.unit.drift.logs import T0, customers, write_log

NOW = T0 + timedelta(days=1)


def _dataset(tmp_path: Path) -> Dataset:
    rng = np.random.default_rng(1)
    table = pa.table(
        {
            "customer_id": [f"C{i:06d}" for i in range(5000)],
            "event_time": pa.array([T0] * 5000, pa.timestamp("us", "UTC")),
            **customers(rng, 5000),
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    return Dataset.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "events"},
            "spec": {
                "source": {"uri": "./events.parquet", "format": "parquet"},
                "timestampColumn": "event_time",
                "schema": {
                    "columns": [
                        {"name": "customer_id", "type": "string"},
                        {"name": "event_time", "type": "timestamp"},
                        {"name": "plan", "type": "string"},
                        {"name": "monthly_charges", "type": "float64"},
                        {"name": "tenure_days", "type": "int64"},
                    ]
                },
            },
        }
    )


def _monitor(**spec: Any) -> DriftMonitor:
    return DriftMonitor.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": "churn-drift", "namespace": "ml"},
            "spec": {
                "deploymentRef": {"name": "churn"},
                "reference": {"datasetRef": {"name": "events"}},
                "window": {"size": 2000},
                **spec,
            },
        }
    )


@pytest.fixture
def context(tmp_path: Path) -> RunContext:
    reference._MEMORY.clear()
    ds = _dataset(tmp_path)
    ctx = RunContext(artifact_root=tmp_path / "artifacts", base_dir=tmp_path, namespace="ml")
    assert datasets.run_dataset(ds, ctx).phase == "Ready"
    return ctx.replace(resources={ds.key: ds})


def _log_dir(context: RunContext) -> Path:
    return context.artifact_root / "request-logs" / "ml" / "churn"


def _conditions(status: DriftMonitorStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def _scores(status: DriftMonitorStatus) -> dict[str, FeatureScore]:
    return {s.feature: s for s in status.scores}


def test_no_drift(context: RunContext) -> None:
    write_log(_log_dir(context), customers(np.random.default_rng(2), 2000), T0)
    status = runner.run_driftmonitor(_monitor(prediction=False), context, NOW)
    assert status.phase == "Ready" and status.verdict == Verdict.NO_DRIFT
    assert _conditions(status)["DriftDetected"] == (ConditionStatus.FALSE, "NoDrift")
    scores = _scores(status)
    assert set(scores) == {"plan", "monthly_charges", "tenure_days"}  # not the identifier
    assert scores["plan"].method == "chi2" and scores["monthly_charges"].method == "ks"
    assert all(s.p_value is not None and s.p_value >= 0.05 for s in scores.values())
    assert status.samples == 2000 and status.drifted_features == []
    assert status.window is not None and status.window.start == T0
    assert status.reference_version is not None
    assert status.reference_version.startswith("Dataset/events@")


def test_shifted_numbers_and_categories_drift(context: RunContext) -> None:
    live = customers(np.random.default_rng(3), 2000, shift=0.2, plans=[0.4, 0.3, 0.3])
    write_log(_log_dir(context), live, T0)
    status = runner.run_driftmonitor(_monitor(prediction=False), context, NOW)
    assert status.verdict == Verdict.DRIFT
    assert status.drifted_features == ["plan", "monthly_charges"]
    assert _conditions(status)["DriftDetected"] == (ConditionStatus.TRUE, "Drift")
    scores = _scores(status)
    assert scores["monthly_charges"].verdict == Verdict.DRIFT
    assert scores["tenure_days"].verdict == Verdict.NO_DRIFT


def test_thresholds_per_feature(context: RunContext) -> None:
    live = customers(np.random.default_rng(3), 2000, shift=0.2)
    write_log(_log_dir(context), live, T0)
    tests = {
        "overrides": [
            {"feature": "monthly_charges", "method": "psi", "threshold": 5},
            {"feature": "tenure_days", "method": "wasserstein"},
            {"feature": "plan", "method": "js", "threshold": 0.5},
        ]
    }
    status = runner.run_driftmonitor(_monitor(tests=tests, prediction=False), context, NOW)
    scores = _scores(status)
    assert scores["monthly_charges"].method == "psi" and scores["monthly_charges"].threshold == 5
    assert scores["monthly_charges"].p_value is None
    assert scores["tenure_days"].threshold == 0.1
    assert status.verdict == Verdict.NO_DRIFT  # a 0.2-sigma shift is far below PSI 5


def test_too_few_requests_is_insufficient(context: RunContext) -> None:
    write_log(_log_dir(context), customers(np.random.default_rng(4), 50, shift=3), T0)
    status = runner.run_driftmonitor(_monitor(), context, NOW)
    assert status.phase == "Ready" and status.verdict == Verdict.INSUFFICIENT
    assert _conditions(status)["DriftDetected"][0] == ConditionStatus.UNKNOWN
    assert all(s.score is None and s.verdict == Verdict.INSUFFICIENT for s in status.scores)
    assert status.drifted_features == []


def test_nothing_logged_yet(context: RunContext) -> None:
    status = runner.run_driftmonitor(_monitor(), context, NOW)
    assert status.phase == "Ready" and status.verdict == Verdict.INSUFFICIENT
    assert status.samples == 0
    detected = next(c for c in status.conditions if c.type == "DriftDetected")
    assert detected.message.startswith("no requests logged yet under file://")
    assert detected.message.endswith("/request-logs/ml/churn")


def test_a_watched_feature_missing_from_the_log_is_named(context: RunContext) -> None:
    write_log(_log_dir(context), customers(np.random.default_rng(2), 2000), T0)
    monitor = _monitor(features=["plan", "country"], prediction=False)
    status = runner.run_driftmonitor(monitor, context, NOW)
    assert _scores(status)["country"].verdict == Verdict.INSUFFICIENT
    assert status.verdict == Verdict.INSUFFICIENT


def test_prediction_drift_against_the_versions_first_window(context: RunContext) -> None:
    rng = np.random.default_rng(5)
    features = customers(rng, 2000)
    write_log(_log_dir(context), features, T0, prediction=rng.beta(2, 5, 2000), part="a")
    later = T0 + timedelta(hours=2)
    shifted = rng.beta(3, 4, 2000)
    write_log(_log_dir(context), features, later, prediction=shifted, part="b")
    status = runner.run_driftmonitor(_monitor(), context, NOW)
    assert _scores(status)["prediction"].verdict == Verdict.DRIFT
    assert "prediction" in status.drifted_features and status.model_version == "v1"


def test_prediction_of_a_new_version_is_insufficient(context: RunContext) -> None:
    rng = np.random.default_rng(6)
    write_log(_log_dir(context), customers(rng, 2000), T0, prediction=rng.random(2000))
    status = runner.run_driftmonitor(_monitor(), context, NOW)
    # Its whole log is its first window: nothing after it to compare yet.
    assert _scores(status)["prediction"].verdict == Verdict.INSUFFICIENT


def test_missing_reference_fails_with_the_reason(context: RunContext) -> None:
    monitor = _monitor(reference={"featureViewRef": {"name": "nope"}})
    status = runner.run_driftmonitor(monitor, context, NOW)
    assert status.phase == "Failed"
    assert _conditions(status)["Ready"] == (ConditionStatus.FALSE, "ReferenceNotFound")


def test_method_that_does_not_fit_fails(context: RunContext) -> None:
    write_log(_log_dir(context), customers(np.random.default_rng(2), 2000), T0)
    tests = {"overrides": [{"feature": "plan", "method": "ks"}]}
    status = runner.run_driftmonitor(_monitor(tests=tests), context, NOW)
    assert _conditions(status)["Ready"] == (ConditionStatus.FALSE, "MethodMismatch")


def test_report_metrics_and_cache(context: RunContext, tmp_path: Path) -> None:
    live = customers(np.random.default_rng(3), 2000, shift=0.5)
    write_log(_log_dir(context), live, T0)
    status = runner.run_driftmonitor(_monitor(prediction=False), context, NOW)
    out = context.artifact_root / "drift" / "monitors" / "ml" / "churn-drift"
    assert status.report_uri is not None and status.report_uri.endswith("report.html")
    html = (out / "report.html").read_text()
    assert html.count("<img") == 3 and "monthly_charges" in html
    full = json.loads((out / "report.json").read_text())
    assert len(full["scores"]) == 3
    metrics = (out / "metrics.prom").read_text()
    assert (
        'flywheel_drift_drifted{feature="monthly_charges",method="ks",monitor="churn-drift"'
        in metrics
    )
    assert (
        'flywheel_drift_verdict{monitor="churn-drift",namespace="ml",verdict="Drift"} 1.0'
        in metrics
    )
    # The prepared reference is on disk; a new process reads it instead of the snapshot.
    cached = list((context.artifact_root / "drift" / "references").rglob("columns.json"))
    assert len(cached) == 1
    reference._MEMORY.clear()
    for part in (context.artifact_root / "datasets").rglob("*.parquet"):
        part.unlink()
    again = runner.run_driftmonitor(_monitor(prediction=False), context, NOW)
    assert again.scores == status.scores


def test_result_fits_a_termination_message() -> None:
    many = [
        FeatureScore(
            feature=f"feature_{i:03d}",
            method=dm.TestMethod.KS,
            score=0.1,
            p_value=0.5,
            threshold=0.05,
            verdict=Verdict.DRIFT if i == 200 else Verdict.NO_DRIFT,
            drifted=i == 200,
            samples=1000,
        )
        for i in range(256)
    ]
    status = DriftMonitorStatus(scores=many, drifted_features=["feature_200"])
    from flywheel.drift import commands

    fitted = runner.fit_result(status, commands.fits_result)
    assert commands.fits_result(fitted) and fitted.scores_omitted > 200
    assert "feature_200" in [s.feature for s in fitted.scores]
    assert len(fitted.scores) + fitted.scores_omitted == 256


def test_command_runs_as_the_cronjob_does(
    context: RunContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_log(_log_dir(context), customers(np.random.default_rng(2), 2000), T0)
    manifest = tmp_path / "manifests.yaml"
    ds = context.resources["Dataset/events"]
    docs = [ds.to_wire(), _monitor(prediction=False).to_wire()]
    manifest.write_text("\n---\n".join(json.dumps(d) for d in docs))
    result = tmp_path / "result.json"
    argv = ["drift", "run", "-f", str(manifest), "--name", "churn-drift"]
    argv += ["--artifact-root", str(context.artifact_root), "--result", str(result)]
    assert entrypoints.ENTRYPOINTS["DriftMonitor"].command == ("drift", "run")
    assert cli.main(argv) == 0
    body = json.loads(result.read_text())
    assert body["samples"] == 2000 and body["verdict"] in ("NoDrift", "Drift")
