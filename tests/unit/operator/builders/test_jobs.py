"""Jobs and CronJobs running one `flywheel ...` command on one object."""

from __future__ import annotations

import json

from flywheel_operator.builders import jobs
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import owners


def test_a_job_runs_the_command_on_the_owner_and_reports_by_termination_message(
    settings: Settings,
) -> None:
    owner = owners()["Dataset/customer-events"]
    job = jobs.runtime_job(owner, "x-ingest", "ingest", ["dataset", "ingest"], settings)
    assert job["spec"]["backoffLimit"] == 1 and "activeDeadlineSeconds" not in job["spec"]
    [c] = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["flywheel"]
    assert c["args"] == [
        "dataset",
        "ingest",
        "--artifact-root",
        "s3://ml/flywheel",
        "--result",
        "/dev/termination-log",
    ]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    manifest = json.loads(c["env"][0]["value"])
    assert manifest["metadata"] == {"name": "customer-events", "namespace": "ml"}
    assert [e["name"] for e in c["env"]] == ["FLYWHEEL_MANIFEST"]  # no inputs: none passed


def test_a_cronjob_runs_one_at_a_time_and_keeps_a_few_jobs(settings: Settings) -> None:
    owner = owners()["Dataset/customer-events"]
    cron = jobs.runtime_cronjob(
        owner, "x-refresh", "ingest", "@hourly", ["dataset", "ingest"], settings, {"a": {}}
    )
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 3
    [c] = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "FLYWHEEL_INPUTS", "value": '{"a": {}}'} in c["env"]
