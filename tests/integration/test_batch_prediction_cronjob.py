"""spec.batchPrediction in a cluster: the operator's CronJob `<md>-batch`, its Job's
Pod run for real (the test plays the kubelet), and the run reported in the status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.cluster.controlplane import PLAYED_IMAGE
from tests.cluster.kubelet import ARTIFACT_CLAIM, Node, end_pod, run_pod, running_pod
from tests.integration.test_operator import (
    Operator,
    condition,
    quickstart,
    running_operator,
    wait_condition,
)


@pytest.fixture
def runtime_operator(
    control_plane: ControlPlane, namespace: str, flywheel_crds: list[str], tmp_path: Path
) -> Iterator[Operator]:
    with running_operator(
        control_plane, namespace, tmp_path / "operator.log", f"pvc://{ARTIFACT_CLAIM}/",
        PLAYED_IMAGE,
    ) as op:  # fmt: skip
        yield op


def test_the_batch_cronjob_runs_the_command_and_reports_its_error(
    runtime_operator: Operator, kubectl: Kubectl, node: Node
) -> None:
    """The FeatureView's runs are played (they report, and publish nothing); the batch
    run is real: the model version it is given is not on the volume, so it fails with the
    runtime's words, and the deployment says so in BatchPredicted while it serves on."""
    events = quickstart("Dataset", "customer-events")
    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {
        "backend": "triton",
        "stable": {"modelName": "churn", "version": "v1"},
        "batchPrediction": {
            "schedule": "0 3 * * *",
            "featureViewRef": {"name": "customer-features"},
        },
    }
    kubectl.apply(yaml.safe_dump_all([events, fv, md]))
    [ingest] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    end_pod(kubectl, running_pod(kubectl, ingest["metadata"]["name"]), {"version": "d1", "rows": 1})
    [materialize] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="the materialization Job",
    )
    played = {"offlineVersion": "f1", "sourceVersion": "d1", "onlineRows": 0}
    end_pod(kubectl, running_pod(kubectl, materialize["metadata"]["name"]), played)

    [cron] = wait_for(
        lambda: kubectl.items("cronjob", "-l", "app.kubernetes.io/component=batch"),
        what="the batch CronJob",
    )
    assert cron["metadata"]["name"] == "churn-batch"
    assert cron["spec"]["schedule"] == "0 3 * * *"
    [container] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    model = f"pvc://{ARTIFACT_CLAIM}/models/churn/versions/v1"
    assert container["args"][:3] == ["batch-predict", "--model", model]
    wait_condition(kubectl, "md/churn", "BatchPredicted", status="Unknown")

    kubectl.run("create", "job", "churn-batch-manual", "--from=cronjob/churn-batch")
    job = kubectl.get("job", "churn-batch-manual")
    run = run_pod(kubectl, running_pod(kubectl, "churn-batch-manual"), node)
    assert run.exit_code == 1, run.log[-2000:]
    error = json.loads(run.message)["error"]
    assert error.startswith("ModelNotFound: no model version v1 at "), error
    # backoffLimit 1: the Job controller tries once more; that run fails the same way.
    assert job["spec"]["backoffLimit"] == 1
    again = run_pod(kubectl, running_pod(kubectl, "churn-batch-manual"), node)
    assert again.exit_code == 1, again.log[-2000:]
    obj = wait_condition(kubectl, "md/churn", "BatchPredicted", status="False", timeout=90)
    said = condition(obj, "BatchPredicted")
    assert said["reason"] == "BatchFailed" and "ModelNotFound" in said["message"], said
    assert "batchPrediction" not in obj["status"]  # nothing was published
