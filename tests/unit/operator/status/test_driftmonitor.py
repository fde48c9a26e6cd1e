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


def _retrained(
    phase: str = "Succeeded", version: str | None = "v3", aliases: tuple[str, ...] = ("candidate",)
) -> dict[str, object]:
    status: dict[str, object] = {"phase": phase, "modelName": "churn", "aliases": list(aliases)}
    if version:
        status["modelVersion"] = version
    if phase == "Failed":
        status["conditions"] = [
            {"type": "Succeeded", "status": "False", "reason": "GateFailed",
             "message": "auc 0.55 < 0.60", "lastTransitionTime": "2026-05-01T00:00:00Z"},
        ]  # fmt: skip
    return {"spec": {"output": {"modelName": "churn"}}, "status": status}


def _deployment(
    candidate: object = None, stable: str = "v2", **status: object
) -> dict[str, object]:
    spec: dict[str, object] = {"stable": {"modelName": "churn", "alias": "champion"}}
    spec["candidate"] = candidate or {"modelName": "churn", "alias": "candidate"}
    return {
        "metadata": {"name": "churn"},
        "spec": spec,
        "status": {"stableVersion": stable, **status},
    }


def _promoted() -> list[dict[str, str]]:
    return [{"type": "Promoted", "status": "True", "reason": "AnalysisPassed", "message": "ok"}]


def _rolled_back() -> list[dict[str, str]]:
    return [{"type": "RolledBack", "status": "True", "reason": "AnalysisFailed",
             "message": "v3: error rate 0.2 > 0.01"}]  # fmt: skip


def test_the_retrain_is_followed_through_training_canary_and_promotion() -> None:
    s = DriftMonitorStatus(last_retrain_job="churn-drift-retrain-1")
    outcome = driftmonitor.retrain_outcome
    assert outcome(DriftMonitorStatus(), _retrained(), _deployment()) is None  # no retrain yet
    training = outcome(s, _retrained("Running", None, ()), _deployment())
    assert training is not None and (training.status, training.reason) == ("Unknown", "Training")
    registered = outcome(s, _retrained(), _deployment())
    assert registered is not None and registered.reason == "Registered"
    assert registered.version == "v3"
    canary = outcome(
        s, _retrained(), _deployment(candidateVersion="v3", trafficSummary="v2=90 v3=10")
    )
    assert canary is not None and (canary.status, canary.reason) == ("Unknown", "Canary")
    assert canary.message == "md/churn rolls v3 out: v2=90 v3=10"
    promoted = outcome(s, _retrained(), _deployment(stable="v3", conditions=_promoted()))
    assert promoted is not None and (promoted.status, promoted.reason) == ("True", "Promoted")


def test_a_failed_retrain_or_a_rolled_back_one_leaves_stable_serving_and_says_so() -> None:
    s = DriftMonitorStatus(last_retrain_job="churn-drift-retrain-1")
    failed = driftmonitor.retrain_outcome(s, _retrained("Failed", None, ()), _deployment())
    assert failed is not None and (failed.status, failed.reason) == ("False", "GateFailed")
    assert failed.message == (
        "tj/churn-drift-retrain-1 failed: auc 0.55 < 0.60; stable v2 keeps serving"
    )
    back = driftmonitor.retrain_outcome(
        s,
        _retrained(),
        _deployment(candidateVersion="v3", phase="RolledBack", conditions=_rolled_back()),
    )
    assert back is not None and (back.status, back.reason) == ("False", "RolledBack")
    assert back.message.endswith("; stable v2 keeps serving") and "error rate" in back.message
    followed = driftmonitor.follow_retrain(s, back, T0)
    assert conds(followed)["RetrainPromoted"] == ("False", "RolledBack")
    assert followed.last_retrain_version == "v3"


def test_a_deployment_that_does_not_name_the_candidate_alias_is_told_not_patched() -> None:
    s = DriftMonitorStatus(last_retrain_job="churn-drift-retrain-1")
    pinned = {"trainingJobRef": {"name": "churn-mlp"}}
    found = driftmonitor.retrain_outcome(s, _retrained(), _deployment(candidate=pinned))
    assert found is not None and (found.status, found.reason) == ("False", "NotFollowed")
    assert "v3 waits in the registry as candidate" in found.message
    same = driftmonitor.retrain_outcome(s, _retrained(aliases=()), _deployment())
    assert same is not None and same.reason == "NotACandidate"


def test_each_step_of_the_retrain_is_told_once() -> None:
    s = DriftMonitorStatus(last_retrain_job="churn-drift-retrain-1")
    registered = driftmonitor.retrain_outcome(s, _retrained(), _deployment())
    new = driftmonitor.follow_retrain(s, registered, T0)
    assert driftmonitor.retrain_event(s, new) == (
        "Normal",
        "RetrainRegistered",
        "v3 has the alias candidate; waiting for md/churn to pick it up",
    )
    assert driftmonitor.retrain_event(new, driftmonitor.follow_retrain(new, registered, T0)) is None
    failed = driftmonitor.retrain_outcome(s, _retrained("Failed", None, ()), _deployment())
    told = driftmonitor.retrain_event(new, driftmonitor.follow_retrain(new, failed, T0))
    assert told is not None and told[:2] == ("Warning", "RetrainGateFailed")


def test_the_drift_event_names_the_monitor_run_and_features() -> None:
    body = owners()["DriftMonitor/churn-drift"]
    s = driftmonitor.status(DriftMonitorStatus(), 1, Run("j", RunState.SUCCEEDED, DRIFTED), T0)
    event = driftmonitor.drift_event(model(body), s)
    assert event.to_wire() == {
        "monitor": "churn-drift",
        "time": "2026-05-01T00:00:00Z",
        "driftedFeatures": ["plan"],
    }


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


def test_each_drift_run_and_each_change_of_verdict_is_an_event() -> None:
    def ran(previous: DriftMonitorStatus, minutes: int, **result: object) -> DriftMonitorStatus:
        at = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
        out = {"lastRun": at, "samples": 2000, "referenceVersion": "ModelVersion/churn@v1"}
        run = Run(f"j{minutes}", RunState.SUCCEEDED, {**out, **result})
        return driftmonitor.status(previous, 1, run, T0)

    quiet = ran(DriftMonitorStatus(), 0, verdict="NoDrift")
    assert driftmonitor.verdict_event(DriftMonitorStatus(), quiet) == (
        "Normal",
        "NoDrift",
        "no drift over 2000 requests against ModelVersion/churn@v1",
    )
    again = ran(quiet, 10, verdict="NoDrift")
    assert driftmonitor.verdict_event(quiet, again) is None  # the same verdict: no Event
    drift = {"verdict": "Drift", "driftedFeatures": ["plan"], "maxScore": 0.4}
    drifted = ran(again, 20, **drift)
    assert driftmonitor.verdict_event(again, drifted) == (
        "Warning",
        "DriftDetected",
        "plan drifted over 2000 requests against ModelVersion/churn@v1; max score 0.4",
    )
    still = ran(drifted, 30, **drift)
    assert driftmonitor.verdict_event(drifted, still) is not None  # every drifted run
    assert driftmonitor.verdict_event(still, still) is None  # no new run: nothing to tell
