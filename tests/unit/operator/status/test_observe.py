"""Reading children's status: runs and their results, readiness."""

from __future__ import annotations

from flywheel.api.dataset import DatasetStatus
from flywheel_operator.status import dataset, observe
from flywheel_operator.status.observe import Run, RunState
from tests.unit.operator.status.helpers import T0, job, pod


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
    s = dataset.status(DatasetStatus(), 1, run, T0)
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


def test_credentials_in_a_failure_message_are_redacted() -> None:
    run = observe.job_run(job("j", "Failed"), [pod("cannot open https://user:pw@host/x.csv")])
    assert "pw" not in run.message and "https://***@host/x.csv" in run.message


def test_rayjob_run_follows_the_ray_job_and_reads_the_submitter() -> None:
    rayjob = {"metadata": {"name": "r"}, "status": {"jobStatus": "RUNNING"}}
    assert observe.rayjob_run(rayjob, []).state == RunState.RUNNING
    rayjob["status"] = {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}
    run = observe.rayjob_run(rayjob, [pod('{"modelVersion": "v3"}')])
    assert (run.state, run.result) == (RunState.SUCCEEDED, {"modelVersion": "v3"})
    rayjob["status"] = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Failed", "message": "x"}
    assert observe.rayjob_run(rayjob, []) == Run("r", RunState.FAILED, None, "x")


def test_the_newest_finished_cronjob_run_counts() -> None:
    older = {**job("a", "Complete"), "metadata": {"name": "a", "creationTimestamp": "1"}}
    newer = {**job("b", active=1), "metadata": {"name": "b", "creationTimestamp": "2"}}
    run = observe.last_cronjob_run([newer, older], {"a": [pod('{"lastRun": "x"}')]})
    assert (run.name, run.state) == ("a", RunState.SUCCEEDED)
    assert observe.last_cronjob_run([], {}).state == RunState.MISSING


def test_readiness_of_deployments_and_rayservices() -> None:
    deployment = {"spec": {"replicas": 2}, "status": {"availableReplicas": 1}}
    assert observe.deployment_ready(deployment) == (False, "1/2 replicas available")
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "R"}]}}
    assert observe.rayservice_ready(ready) == (True, "R")
    assert observe.rayservice_ready({"status": {"serviceStatus": "Running"}}) == (True, "")
    assert observe.rayservice_ready(None)[0] is False


def test_a_rayjob_retrying_under_its_backoff_limit_is_not_finished() -> None:
    """KubeRay writes a failed attempt with retries left as Retrying in the same update."""
    rayjob = {
        "metadata": {"name": "r"},
        "status": {"jobStatus": "FAILED", "jobDeploymentStatus": "Retrying", "failed": 1},
    }
    run = observe.rayjob_run(rayjob, [pod('{"phase": "Failed", "error": "old attempt"}')])
    assert run == Run("r", RunState.PENDING, None, "retrying after 1 failed attempt(s)")
    rayjob["status"] = {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed", "failed": 3}
    run = observe.rayjob_run(rayjob, [pod('{"phase": "Failed", "error": "NaNLoss: epoch 2"}')])
    assert (run.state, run.message) == (RunState.FAILED, "NaNLoss: epoch 2")


def test_the_dashboard_of_a_rayjob_once_kuberay_set_it() -> None:
    status = {"dashboardURL": "r-head-svc.ns.svc.cluster.local:8265", "jobId": "r-abc"}
    assert observe.rayjob_dashboard({"status": status}) == (
        "r-head-svc.ns.svc.cluster.local:8265",
        "r-abc",
    )
    assert observe.rayjob_dashboard({"status": {"jobId": "r-abc"}}) is None


def test_a_serve_application_runs_when_kuberay_reports_it_running() -> None:
    rs = {"status": {"activeServiceStatus": {"applicationStatuses": {
        "churn-v1": {"status": "RUNNING"},
        "churn-v2": {"status": "DEPLOYING", "message": "1/1 replicas starting"},
    }}}}  # fmt: skip
    assert observe.serve_application(rs, "churn-v1") == (True, "")
    ready, why = observe.serve_application(rs, "churn-v2")
    assert not ready and why == "Serve application churn-v2 is DEPLOYING: 1/1 replicas starting"
    assert observe.serve_application(None, "churn-v2") == (
        False,
        "Serve application churn-v2 is NOT_STARTED",
    )
