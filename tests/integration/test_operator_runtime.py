"""The operator and the runtime together: the Jobs the operator makes run for real.

kwok has no container runtime, so the test plays the kubelet (tests.cluster.kubelet): it
runs each Pod's command on this machine with only the Pod's env and volumes writable,
then writes how it ended into the Pod's status, as the kubelet would. Everything else is
real: the API server, the Job controller, the operator, the runtime, the data it ingests
and the stores it fills. The artifact root is a PersistentVolumeClaim, bound to a local
directory standing in for the volume.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flywheel.training.registry import TRAINING_REFERENCE
from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.cluster.controlplane import PLAYED_IMAGE
from tests.cluster.kubelet import ARTIFACT_CLAIM, Node, Run, end_pod, run_pod, running_pod
from tests.integration.test_operator import (
    Operator,
    condition,
    quickstart,
    running_operator,
)
from tests.s3server import S3Server
from tests.unit.drift.logs import customers, write_log

ROOT = Path(__file__).resolve().parents[2]
CLAIM = ARTIFACT_CLAIM


@pytest.fixture
def runtime_operator(
    control_plane: ControlPlane, namespace: str, flywheel_crds: list[str], tmp_path: Path
) -> Iterator[Operator]:
    """The operator with the claim as its artifact root, its Pods left to the test."""
    with running_operator(
        control_plane, namespace, tmp_path / "operator.log", f"pvc://{CLAIM}/", PLAYED_IMAGE
    ) as op:
        yield op


def run_job(kubectl: Kubectl, job: dict[str, Any], node: Node) -> Run:
    return run_pod(kubectl, running_pod(kubectl, job["metadata"]["name"]), node)


def test_dataset_and_featureview_run_the_runtime_commands(
    runtime_operator: Operator, kubectl: Kubectl, node: Node
) -> None:
    data = node.claim(CLAIM) / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/quickstart/generate_data.py"), "--customers", "300",
         "--out", str(data)],
        check=True, capture_output=True,
    )  # fmt: skip
    events = quickstart("Dataset", "customer-events")
    events["spec"]["source"]["uri"] = f"pvc://{CLAIM}/data/customer_events.csv"
    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    kubectl.apply(yaml.safe_dump_all([events, fv]))

    [ingest] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    run = run_job(kubectl, ingest, node)
    assert run.exit_code == 0, run.log[-3000:]
    result = json.loads(run.message)
    assert result["rows"] > 10_000 and result["badRows"] > 0, result
    ds = wait_for(
        lambda: kubectl.get("dataset", "customer-events"),
        lambda o: o.get("status", {}).get("phase") == "Ready",
        what="dataset/customer-events Ready",
        timeout=60,
    )
    assert ds["status"]["version"] == result["version"]
    assert ds["status"]["badRows"] == result["badRows"]
    # The snapshot is on the volume, where the Pod wrote it.
    assert list((node.claim(CLAIM) / "datasets").rglob("current.json"))

    [materialize] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="the materialization Job",
    )
    run = run_job(kubectl, materialize, node)
    assert run.exit_code == 0, run.log[-3000:]
    result = json.loads(run.message)
    assert result["onlineRows"] == 300, result
    kubectl.wait("--for=condition=Ready", "featureview/customer-features", timeout=60)
    fv_status = kubectl.get("featureview", "customer-features")["status"]
    assert fv_status["onlineRows"] == 300 and fv_status["watermark"]


def test_a_failing_run_is_retried_then_reported_with_its_error(
    runtime_operator: Operator, kubectl: Kubectl, node: Node
) -> None:
    events = quickstart("Dataset", "customer-events")
    events["spec"]["source"]["uri"] = f"pvc://{CLAIM}/data/missing.csv"
    kubectl.apply(yaml.safe_dump(events))
    [job] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    runs = []
    # backoffLimit 1: the Job controller starts a second Pod after the first fails.
    for _ in range(job["spec"]["backoffLimit"] + 1):
        runs.append(run_job(kubectl, job, node))
    assert all(r.exit_code != 0 for r in runs), [r.log[-1000:] for r in runs]
    assert len(kubectl.items("pod")) == 2
    failed = wait_for(
        lambda: kubectl.get("job", job["metadata"]["name"]),
        lambda j: condition(j, "Failed").get("status") == "True",
        what="the Job failed",
    )
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"
    ds = wait_for(
        lambda: kubectl.get("dataset", "customer-events"),
        lambda o: o.get("status", {}).get("phase") == "Failed",
        what="dataset/customer-events Failed",
        timeout=60,
    )
    ready = condition(ds, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "IngestFailed", ready
    assert "missing.csv" in ready["message"], ready


def test_a_crash_without_a_result_reports_the_log_tail(
    runtime_operator: Operator, kubectl: Kubectl, node: Node
) -> None:
    """A run that dies before writing its result: FallbackToLogsOnError puts the end of
    its log into the Pod's status, and the operator into the failure condition."""
    data = node.claim(CLAIM) / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/quickstart/generate_data.py"), "--customers", "20",
         "--out", str(data)],
        check=True, capture_output=True,
    )  # fmt: skip
    events = quickstart("Dataset", "customer-events")
    events["spec"]["source"]["uri"] = f"pvc://{CLAIM}/data/customer_events.csv"
    kubectl.apply(yaml.safe_dump(events))
    [ingest] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    assert run_job(kubectl, ingest, node).exit_code == 0
    kubectl.wait("--for=condition=Ready", "dataset/customer-events", timeout=60)
    # Someone truncates every file of the published snapshot on the volume.
    for path in (node.claim(CLAIM) / "datasets").rglob("versions/*/**/*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[:11])

    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    kubectl.apply(yaml.safe_dump(fv))
    [materialize] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="the materialization Job",
    )
    runs = [run_job(kubectl, materialize, node) for _ in range(2)]  # backoffLimit 1
    for run in runs:
        # No result: the message is the end of the log, the exception's last line included.
        assert run.exit_code != 0 and run.message, run.log[-2000:]
        assert run.log.rstrip().endswith(run.message.rstrip()), (run.message, run.log[-2000:])
        assert "Parquet magic bytes not found" in run.message.splitlines()[-1], run.message
        assert len(run.message.encode()) <= 2048 and len(run.message.splitlines()) <= 80
    fv_obj = wait_for(
        lambda: kubectl.get("featureview", "customer-features"),
        lambda o: o.get("status", {}).get("phase") == "Failed",
        what="featureview/customer-features Failed",
        timeout=60,
    )
    ready = condition(fv_obj, "Ready")
    assert ready["reason"] == "MaterializationFailed", ready
    # The condition keeps the end of the log: the exception.
    assert ready["message"].endswith(runs[-1].message.strip().splitlines()[-1]), ready


def test_an_s3_source_is_read_with_the_secret_the_job_mounts(
    runtime_operator: Operator,
    kubectl: Kubectl,
    namespace: str,
    node: Node,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    """The ingest Pod reads an s3:// source from a real S3-compatible server with the key
    of the Dataset's credentialsSecretRef, which only the Job's Secret volume brings."""
    subprocess.run(
        [sys.executable, str(ROOT / "examples/quickstart/generate_data.py"), "--customers", "20",
         "--out", str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    bucket = f"raw-{namespace}"[:63]
    store = s3_server.filesystem()
    store.create_dir(bucket)
    with store.open_output_stream(f"{bucket}/customer_events.csv") as f:
        f.write((tmp_path / "customer_events.csv").read_bytes())
    kubectl.run(
        "create", "secret", "generic", "store-credentials",
        f"--from-literal=credentials.json={json.dumps(s3_server.credentials())}",
        "--from-literal=unrelated=not-for-this-pod",
    )  # fmt: skip
    events = quickstart("Dataset", "customer-events")
    events["spec"]["source"]["uri"] = f"s3://{bucket}/customer_events.csv"
    events["spec"]["source"]["credentialsSecretRef"] = {
        "name": "store-credentials", "key": "credentials.json"}  # fmt: skip
    kubectl.apply(yaml.safe_dump(events))

    [ingest] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    pod = running_pod(kubectl, ingest["metadata"]["name"])
    # The key reaches the Pod as a file, never as an env value of the Pod's spec.
    assert s3_server.secret_key not in json.dumps(pod["spec"])
    run = run_pod(kubectl, pod, node)
    assert run.exit_code == 0, run.log[-3000:]
    result = json.loads(run.message)
    assert result["rows"] > 100, result
    ds = wait_for(
        lambda: kubectl.get("dataset", "customer-events"),
        lambda o: o.get("status", {}).get("phase") == "Ready",
        what="dataset/customer-events Ready",
        timeout=60,
    )
    assert ds["status"]["version"] == result["version"]
    assert list((node.claim(CLAIM) / "datasets").rglob("current.json"))


def test_a_failing_monitor_run_is_retried_then_reported_as_check_failed(
    runtime_operator: Operator, kubectl: Kubectl, node: Node
) -> None:
    """A DriftMonitor whose reference Dataset reports a version that is not on the volume:
    each run of the monitor's Job fails with the runtime's error, as many times as the
    CronJob's Job template allows, and the monitor reports CheckFailed with that error."""
    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {"backend": "triton", "stable": {"modelName": "churn", "version": "v1"}}
    dm = quickstart("DriftMonitor", "churn-drift")
    dm["spec"]["reference"] = {"datasetRef": {"name": "churn-labels"}}
    kubectl.apply(yaml.safe_dump_all([quickstart("Dataset", "churn-labels"), md, dm]))
    [ingest] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    # The ingest's end is played: it reports a version, and publishes nothing.
    end_pod(kubectl, running_pod(kubectl, ingest["metadata"]["name"]), {"version": "v1", "rows": 1})
    [cron] = wait_for(lambda: kubectl.items("cronjob"), what="the monitor CronJob")
    kubectl.wait("--for=condition=Ready", "dm/churn-drift", timeout=60)

    name = cron["metadata"]["name"]
    kubectl.run("create", "job", f"{name}-manual", f"--from=cronjob/{name}")
    job = kubectl.get("job", f"{name}-manual")
    # As many runs as the builder allows: the first and backoffLimit retries.
    assert job["spec"]["backoffLimit"] == cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 1
    runs = [run_job(kubectl, job, node) for _ in range(job["spec"]["backoffLimit"] + 1)]
    for run in runs:
        assert run.exit_code != 0, run.log[-2000:]
        error = json.loads(run.message)["error"]  # the runtime's result, not the log tail
        assert error.startswith("ReferenceNotReady: ") and "no snapshot" in error, error
    assert len(kubectl.items("pod", "-l", f"batch.kubernetes.io/job-name={name}-manual")) == 2
    failed = wait_for(
        lambda: kubectl.get("job", f"{name}-manual"),
        lambda j: condition(j, "Failed").get("status") == "True",
        what="the monitor Job failed",
    )
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"
    # The monitor learns of the Job's end a moment later (a child's changes are coalesced):
    # until then it says the run is under way.
    dm_obj = wait_for(
        lambda: kubectl.get("dm", "churn-drift"),
        lambda o: condition(o, "Ready").get("reason") not in (None, "Scheduled", "Checking"),
        what="dm/churn-drift reporting the failed run",
    )
    ready = condition(dm_obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "CheckFailed"), ready
    # The runtime's own words, after its reason.
    assert error.split(": ", 1)[1][:60] in ready["message"], (ready, error)


def test_the_quickstart_monitor_compares_with_the_serving_versions_training_set(
    runtime_operator: Operator, kubectl: Kubectl, node: Node, namespace: str
) -> None:
    """The quickstart's DriftMonitor as written (`reference: {servingVersion: {}}`): its
    CronJob's run finds the version serving the window in the request log, and that
    version's training reference in the registry on the volume, through the deployment
    among its inputs; the prices risen since that training are found."""
    volume = node.claim(CLAIM)
    version = volume / "models" / "churn" / "versions" / "v1"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text(json.dumps({"version": "v1", "files": {}}))
    rng = np.random.default_rng(1)
    pq.write_table(pa.table(customers(rng, 5000)), version / TRAINING_REFERENCE)
    # Within the monitor's one-hour window of the run's clock: 2000 requests, v1 answering.
    start = datetime.now(UTC) - timedelta(minutes=40)
    live = customers(np.random.default_rng(3), 2000, shift=0.6)
    log = volume / "request-logs" / namespace / "churn"
    write_log(log, live, start, step=timedelta(milliseconds=500), version="v1")

    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {"backend": "triton", "stable": {"modelName": "churn", "version": "v1"}}
    dm = quickstart("DriftMonitor", "churn-drift")
    assert dm["spec"]["reference"] == {"servingVersion": {}}
    dm["spec"]["action"] = {"type": "alert"}  # the retrain's own path is test_operator_loop's
    kubectl.apply(yaml.safe_dump_all([md, dm]))
    [cron] = wait_for(lambda: kubectl.items("cronjob"), what="the monitor CronJob")
    kubectl.wait("--for=condition=Ready", "dm/churn-drift", timeout=60)
    name = cron["metadata"]["name"]
    kubectl.run("create", "job", f"{name}-manual", f"--from=cronjob/{name}")
    run = run_job(kubectl, kubectl.get("job", f"{name}-manual"), node)
    assert run.exit_code == 0, run.log[-3000:]
    result = json.loads(run.message)
    assert result["referenceVersion"] == "ModelVersion/churn@v1", result
    assert result["modelVersion"] == "v1"
    assert "monthly_charges" in result["driftedFeatures"], result
    dm_obj = wait_for(
        lambda: kubectl.get("dm", "churn-drift"),
        lambda o: o.get("status", {}).get("referenceVersion") == "ModelVersion/churn@v1",
        what="dm/churn-drift reporting the serving version's reference",
    )
    assert "monthly_charges" in dm_obj["status"]["driftedFeatures"]
