"""Jobs and CronJobs running one `flywheel ...` command on one object."""

from __future__ import annotations

import json

from flywheel import entrypoints
from flywheel_operator.builders import jobs, pods
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


def test_a_job_gets_the_manifests_of_its_inputs_beside_their_statuses(
    settings: Settings,
) -> None:
    found = owners()
    owner = found["FeatureView/customer-features"]
    dataset = {**found["Dataset/customer-events"], "status": {"version": "v1"}}
    given = pods.input_manifests({"Dataset/customer-events": dataset})
    job = jobs.runtime_job(
        owner, "x", "materialize", ["features", "materialize"], settings, {"a": {}},
        manifests=given,
    )  # fmt: skip
    [c] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    [manifest] = json.loads(env[entrypoints.INPUT_MANIFESTS_ENV])
    assert manifest["kind"] == "Dataset" and "status" not in manifest
    assert manifest["spec"] == found["Dataset/customer-events"]["spec"]


def test_a_secret_the_spec_names_is_mounted_where_the_runtime_reads_it(
    settings: Settings,
) -> None:
    owner = owners()["Dataset/customer-events"]
    owner = {**owner, "spec": {**owner["spec"], "source": {
        **owner["spec"]["source"], "uri": "s3://raw/events.csv",
        "credentialsSecretRef": {"name": "store", "key": "creds.json"}}}}  # fmt: skip
    job = jobs.runtime_job(owner, "x-ingest", "ingest", ["dataset", "ingest"], settings)
    spec = job["spec"]["template"]["spec"]
    [c] = spec["containers"]
    # Only the named key, read-only, at $FLYWHEEL_SECRETS_DIR/<secret>/<key>.
    assert {"name": "secret-store", "secret": {
        "secretName": "store", "items": [{"key": "creds.json", "path": "creds.json"}]}
    } in spec["volumes"]  # fmt: skip
    assert {
        "name": "secret-store", "mountPath": "/var/run/secrets/flywheel/store", "readOnly": True
    } in c["volumeMounts"]  # fmt: skip
    assert {"name": "FLYWHEEL_SECRETS_DIR", "value": "/var/run/secrets/flywheel"} in c["env"]
    # The same in a scheduled refresh; none where no secret is named.
    cron = jobs.runtime_cronjob(owner, "r", "ingest", "@daily", ["dataset", "ingest"], settings)
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"] == spec["volumes"]
    plain = jobs.runtime_job(owners()["Dataset/customer-events"], "y", "ingest", [], settings)
    assert not any("secret" in v for v in plain["spec"]["template"]["spec"]["volumes"])
