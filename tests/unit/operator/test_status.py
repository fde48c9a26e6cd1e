"""Status logic is pure: observed children in, conditions and phase out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.api.dataset import DatasetStatus
from flywheel.api.driftmonitor import DriftMonitorStatus
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.status import kinds, observe
from flywheel_operator.status.observe import Run, RunState

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def job(name: str, condition: str | None = None, active: int = 0) -> dict[str, Any]:
    conds = (
        [{"type": condition, "status": "True", "message": "BackoffLimitExceeded"}]
        if condition
        else []
    )
    return {"metadata": {"name": name}, "status": {"conditions": conds, "active": active}}


def pod(message: str, finished: str = "2026-05-01T00:00:00Z") -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, "message": message, "finishedAt": finished}}
    return {"status": {"containerStatuses": [{"name": "c", "state": state}]}}


def conds(status: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


def test_job_run_reads_the_result_from_the_termination_message() -> None:
    run = observe.job_run(job("j", "Complete"), [pod('{"version": "v1", "rows": 5}')])
    assert run == Run("j", RunState.SUCCEEDED, {"version": "v1", "rows": 5}, "")
    assert observe.job_run(None, []).state == RunState.MISSING
    running = {"status": {"phase": "Running"}}
    assert observe.job_run(job("j", active=1), [running]).state == RunState.RUNNING
    unschedulable = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": 'persistentvolumeclaim "flywheel-artifacts" not found'}]}}  # fmt: skip
    run = observe.job_run(job("j", active=1), [unschedulable])
    assert run.state == RunState.PENDING
    assert run.message == 'Unschedulable: persistentvolumeclaim "flywheel-artifacts" not found'
    s = kinds.dataset(DatasetStatus(), 1, run, T0)
    assert "flywheel-artifacts" in s.conditions[0].message


def test_failed_job_reports_the_log_tail_when_there_is_no_json() -> None:
    run = observe.job_run(job("j", "Failed"), [pod("Traceback ...\nValueError: column x")])
    assert run.state == RunState.FAILED and run.message.endswith("ValueError: column x")
    run = observe.job_run(
        job("j", "Failed"), [pod('{"error": "3 rows fail regex on customer_id"}')]
    )
    assert run.message == "3 rows fail regex on customer_id"


def test_newest_pod_wins() -> None:
    pods = [
        pod('{"version": "old"}', "2026-05-01T00:00:00Z"),
        pod('{"version": "new"}', "2026-05-01T01:00:00Z"),
    ]
    assert observe.job_run(job("j", "Complete"), pods).result == {"version": "new"}


def test_dataset_lifecycle_keeps_the_good_version_on_a_failed_rerun() -> None:
    s = kinds.dataset(DatasetStatus(), 1, Run("j1", RunState.RUNNING), T0)
    assert s.phase == "Ingesting" and conds(s)["Ready"] == ("False", "Ingesting")
    s = kinds.dataset(s, 1, Run("j1", RunState.SUCCEEDED, {"version": "v1", "rows": 10}), T0)
    assert (s.phase, s.version, s.rows) == ("Ready", "v1", 10)
    assert conds(s)["Ready"] == ("True", "Published")
    s = kinds.dataset(s, 2, Run("j2", RunState.FAILED, None, "bad rows 40%"), T0 + timedelta(1))
    assert s.phase == "Degraded" and s.version == "v1" and s.observed_generation == 2
    assert conds(s)["Ready"] == ("True", "Published")
    assert conds(s)["Degraded"] == ("True", "IngestFailed")
    ready = next(c for c in s.conditions if c.type == "Ready")
    assert ready.last_transition_time == T0  # no flip, no new transition time


def test_a_result_cannot_overwrite_operator_fields() -> None:
    s = kinds.dataset(
        DatasetStatus(),
        3,
        Run("j", RunState.SUCCEEDED, {"version": "v", "phase": "Hacked", "observedGeneration": 99}),
        T0,
    )
    assert s.phase == "Ready" and s.observed_generation == 3


def test_trainingjob_is_terminal() -> None:
    s = kinds.trainingjob(TrainingJobStatus(), 1, Run("r", RunState.RUNNING), T0)
    assert s.phase == "Running" and conds(s)["Succeeded"][0] == "Unknown"
    s = kinds.trainingjob(
        s,
        1,
        Run(
            "r",
            RunState.SUCCEEDED,
            {"modelVersion": "v3", "metrics": {"auc": 0.8}, "primaryMetric": "auc=0.800"},
        ),
        T0,
    )
    assert (s.phase, s.model_version, s.metrics) == ("Succeeded", "v3", {"auc": 0.8})
    assert conds(s)["Succeeded"] == ("True", "Trained")
    again = kinds.trainingjob(s, 2, Run("", RunState.MISSING), T0 + timedelta(1))
    assert again.phase == "Succeeded" and kinds.terminal(again)


def test_trainingjob_failure_says_why() -> None:
    s = kinds.trainingjob(
        TrainingJobStatus(), 1, Run("r", RunState.FAILED, None, "gate auc 0.55 < 0.6"), T0
    )
    assert s.phase == "Failed" and conds(s)["Succeeded"] == ("False", "TrainingFailed")
    assert s.conditions[0].message == "gate auc 0.55 < 0.6"


def test_driftmonitor_drift_and_retrain_cooldown() -> None:
    result = {"lastRun": "2026-05-01T00:00:00Z", "driftedFeatures": ["plan"], "maxScore": 0.4}
    s = kinds.driftmonitor(DriftMonitorStatus(), 1, Run("", RunState.MISSING), T0)
    assert s.phase == "Scheduled" and conds(s)["DriftDetected"][0] == "Unknown"
    s = kinds.driftmonitor(s, 1, Run("j", RunState.SUCCEEDED, result), T0)
    assert conds(s)["DriftDetected"] == ("True", "Drift")
    assert kinds.retrain_due(s, 3600, T0)
    s.last_retrain = T0
    assert not kinds.retrain_due(s, 3600, T0 + timedelta(minutes=5))  # same run
    s.last_run = T0 + timedelta(minutes=10)
    assert not kinds.retrain_due(s, 3600, T0 + timedelta(minutes=10))  # cooldown
    assert kinds.retrain_due(s, 60, T0 + timedelta(minutes=10))


def test_credentials_in_results_are_redacted() -> None:
    result = {"version": "v", "snapshotUri": "s3://AKIA123:s3cr3t@bucket/ds/v/"}
    s = kinds.dataset(DatasetStatus(), 1, Run("j", RunState.SUCCEEDED, result), T0)
    assert s.snapshot_uri == "s3://***@bucket/ds/v/"
    run = observe.job_run(job("j", "Failed"), [pod("cannot open https://user:pw@host/x.csv")])
    assert "pw" not in run.message and "https://***@host/x.csv" in run.message
