"""Dataset -> an ingest Job keyed by the spec, and a refresh CronJob when scheduled."""

from __future__ import annotations

import json

from flywheel_operator.builders import dataset
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import model, owners


def test_dataset_job_runs_ingest(settings: Settings) -> None:
    body = owners()["Dataset/customer-events"]
    [job] = dataset.build(body, model(body), settings)
    assert job["kind"] == "Job" and job["metadata"]["name"].startswith("customer-events-ingest-")
    [c] = job["spec"]["template"]["spec"]["containers"]
    assert c["args"][:2] == ["dataset", "ingest"]
    manifest = json.loads(c["env"][0]["value"])
    assert manifest["spec"]["source"]["uri"] == "./data/customer_events.csv"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_dataset_job_name_changes_with_the_spec() -> None:
    body = owners()["Dataset/customer-events"]
    changed = {**body, "spec": {**body["spec"], "validation": {"onError": "fail"}}}
    assert dataset.ingest_job_name(body) != dataset.ingest_job_name(changed)
    assert dataset.ingest_job_name(body) == dataset.ingest_job_name(
        owners()["Dataset/customer-events"]
    )


def test_a_refresh_schedule_adds_a_cronjob(settings: Settings) -> None:
    body = owners()["Dataset/customer-events"]
    body["spec"]["refresh"] = {"schedule": "@daily"}
    job, cron = dataset.build(body, model(body), settings)
    assert job["kind"] == "Job"
    assert cron["kind"] == "CronJob" and cron["metadata"]["name"] == "customer-events-refresh"
    assert cron["spec"]["schedule"] == "@daily"
