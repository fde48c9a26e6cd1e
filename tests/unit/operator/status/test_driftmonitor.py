"""DriftMonitor status, and when drift creates a retrain."""

from __future__ import annotations

from datetime import timedelta

from flywheel.api.driftmonitor import DriftMonitorStatus
from flywheel_operator.status import driftmonitor
from flywheel_operator.status.observe import Run, RunState
from tests.unit.operator.conftest import model, owners
from tests.unit.operator.status.helpers import T0, conds

DRIFTED = {"lastRun": "2026-05-01T00:00:00Z", "driftedFeatures": ["plan"], "maxScore": 0.4}


def test_driftmonitor_drift_and_retrain_cooldown() -> None:
    s = driftmonitor.status(DriftMonitorStatus(), 1, Run("", RunState.MISSING), T0)
    assert s.phase == "Scheduled" and conds(s)["DriftDetected"][0] == "Unknown"
    s = driftmonitor.status(s, 1, Run("j", RunState.SUCCEEDED, DRIFTED), T0)
    assert conds(s)["DriftDetected"] == ("True", "Drift")
    assert driftmonitor.retrain_due(s, 3600, T0)
    s.last_retrain = T0
    assert not driftmonitor.retrain_due(s, 3600, T0 + timedelta(minutes=5))  # same run
    s.last_run = T0 + timedelta(minutes=10)
    assert not driftmonitor.retrain_due(s, 3600, T0 + timedelta(minutes=10))  # cooldown
    assert driftmonitor.retrain_due(s, 60, T0 + timedelta(minutes=10))


def test_a_retrain_is_numbered_recorded_and_waits_out_its_cooldown() -> None:
    body = owners()["DriftMonitor/churn-drift"]
    resource = model(body)
    s = driftmonitor.status(DriftMonitorStatus(), 1, Run("j", RunState.SUCCEEDED, DRIFTED), T0)
    retrain = driftmonitor.retrain(resource, s, T0)
    assert retrain == driftmonitor.Retrain(1)
    s = driftmonitor.record_retrain(s, retrain, "churn-drift-retrain-1", T0)
    assert (s.retrains_triggered, s.last_retrain, s.last_retrain_job) == (
        1,
        T0,
        "churn-drift-retrain-1",
    )
    assert driftmonitor.retrain(resource, s, T0 + timedelta(minutes=1)) is None  # same run
    s.last_run = T0 + timedelta(days=30)
    assert driftmonitor.retrain(resource, s, T0 + timedelta(days=30)) == driftmonitor.Retrain(2)


def test_no_retrain_without_the_retrain_action() -> None:
    body = owners()["DriftMonitor/churn-drift"]
    body["spec"]["action"] = {"type": "alert"}
    s = driftmonitor.status(DriftMonitorStatus(), 1, Run("j", RunState.SUCCEEDED, DRIFTED), T0)
    assert driftmonitor.retrain(model(body), s, T0) is None


def test_the_verdict_decides_drift_and_insufficient_is_neither() -> None:
    base = {"lastRun": "2026-05-01T00:00:00Z", "samples": 12}
    insufficient = {**base, "verdict": "Insufficient"}
    s = driftmonitor.status(DriftMonitorStatus(), 1, Run("j", RunState.SUCCEEDED, insufficient), T0)
    assert conds(s)["DriftDetected"] == ("Unknown", "Insufficient")
    assert not driftmonitor.retrain_due(s, 0, T0)
    drift = {**base, "verdict": "Drift", "driftedFeatures": ["plan"]}
    s = driftmonitor.status(s, 1, Run("k", RunState.SUCCEEDED, drift), T0)
    assert conds(s)["DriftDetected"] == ("True", "Drift")
    assert driftmonitor.retrain_due(s, 0, T0)
    no_drift = {**base, "verdict": "NoDrift"}
    s = driftmonitor.status(s, 1, Run("l", RunState.SUCCEEDED, no_drift), T0)
    assert conds(s)["DriftDetected"] == ("False", "NoDrift")


def _retrained(phase: str = "Succeeded", version: str | None = "v3") -> dict[str, object]:
    status = {
        "phase": phase,
        "modelName": "churn",
        **({"modelVersion": version} if version else {}),
    }
    return {"spec": {"output": {"modelName": "churn"}}, "status": status}


def _serving(stable: str | None = "v2", candidate: object = None) -> dict[str, object]:
    spec: dict[str, object] = {"stable": {"trainingJobRef": {"name": "churn-mlp"}}}
    if candidate is not None:
        spec["candidate"] = candidate
    return {"spec": spec, "status": {"stableVersion": stable} if stable else {}}


def test_a_retrained_version_goes_out_as_the_canary_of_what_serves() -> None:
    s = DriftMonitorStatus(last_retrain_job="churn-drift-retrain-1")
    patch = driftmonitor.rollout_of_retrain(s, _retrained(), _serving())
    assert patch == {
        "spec": {
            "stable": {"modelName": "churn", "version": "v2", "trainingJobRef": None},
            "candidate": {
                "trainingJobRef": {"name": "churn-drift-retrain-1"},
                "modelName": None,
                "version": None,
            },
        }
    }


def test_nothing_rolls_out_before_success_or_twice() -> None:
    s = DriftMonitorStatus(last_retrain_job="churn-drift-retrain-1")
    assert driftmonitor.rollout_of_retrain(DriftMonitorStatus(), _retrained(), _serving()) is None
    assert driftmonitor.rollout_of_retrain(s, None, _serving()) is None
    assert driftmonitor.rollout_of_retrain(s, _retrained("Running", None), _serving()) is None
    # A failed gate registers no version: nothing to roll out.
    assert driftmonitor.rollout_of_retrain(s, _retrained("Failed", None), _serving()) is None
    assert driftmonitor.rollout_of_retrain(s, _retrained(), _serving(stable=None)) is None
    # Already the candidate, or already promoted.
    named = {"trainingJobRef": {"name": "churn-drift-retrain-1"}}
    assert driftmonitor.rollout_of_retrain(s, _retrained(), _serving(candidate=named)) is None
    assert driftmonitor.rollout_of_retrain(s, _retrained(), _serving(stable="v3")) is None


def test_drift_held_back_by_the_cooldown_asks_to_be_looked_at_when_it_ends() -> None:
    body = owners()["DriftMonitor/churn-drift"]
    resource = model(body)
    s = driftmonitor.status(DriftMonitorStatus(), 1, Run("j", RunState.SUCCEEDED, DRIFTED), T0)
    assert driftmonitor.cooldown_ends(resource, s) is None  # nothing retrained yet
    s = driftmonitor.record_retrain(s, driftmonitor.Retrain(1), "churn-drift-retrain-1", T0)
    assert driftmonitor.cooldown_ends(resource, s) is None  # this run triggered it
    s.last_run = T0 + timedelta(minutes=5)  # a later run drifts again, in the cooldown
    ends = driftmonitor.cooldown_ends(resource, s)
    assert ends is not None and ends > s.last_run
    assert driftmonitor.retrain(resource, s, ends - timedelta(seconds=1)) is None
    assert driftmonitor.retrain(resource, s, ends) == driftmonitor.Retrain(2)
