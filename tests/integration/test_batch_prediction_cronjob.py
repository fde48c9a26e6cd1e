"""spec.batchPrediction in a cluster: the operator's CronJob `<md>-batch`, its Job's
Pod run for real (the test plays the kubelet), and the run reported in the status."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from flywheel.api import FeatureView, ModelDeployment
from flywheel.api.modeldeployment import predictions_view
from flywheel.data import snapshots
from flywheel.entrypoints import RunContext
from flywheel.features import runner as features
from flywheel.serving import predictor
from flywheel.storage import uris
from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.cluster.controlplane import PLAYED_IMAGE
from tests.cluster.kubelet import ARTIFACT_CLAIM, Node, Run, end_pod, run_pod, running_pod
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

    # Without spec.batchPrediction the CronJob goes, and so does the condition.
    kubectl.run("patch", "md", "churn", "--type=json",
                "-p", '[{"op": "remove", "path": "/spec/batchPrediction"}]')  # fmt: skip
    wait_for(
        lambda: kubectl.items("cronjob", "-l", "app.kubernetes.io/component=batch"),
        lambda items: not items,
        what="the batch CronJob removed",
    )
    wait_for(
        lambda: kubectl.get("md", "churn"),
        lambda o: not condition(o, "BatchPredicted"),
        what="BatchPredicted gone",
    )


ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["plan", "monthly_charges", "tenure_days"]


def run_job(kubectl: Kubectl, name: str, node: Node) -> Run:
    return run_pod(kubectl, running_pod(kubectl, name), node)


def write_model_version(claim: Path, namespace: str) -> Path:
    """A registry version on the volume: a logistic model over three of the view's
    features, with preprocessing fitted on the ingested events."""
    import torch

    from flywheel.api.trainingjob import ModelSpec
    from flywheel.features.preprocess import Preprocessor
    from flywheel.training import export, models

    events = uris.resolve(str(claim / "datasets" / namespace / "customer-events"))
    pre = Preprocessor.fit(snapshots.current_table(events), FEATURES, {"plan": 8})
    torch.manual_seed(0)
    spec = ModelSpec.model_validate({"type": "logistic"})
    module = models.Serving(models.build(spec, pre.width), True).eval()
    where = claim / "models" / "churn" / "versions" / "v1"
    where.mkdir(parents=True)
    export.export(module, pre.width, where, "churn", gpu=False)
    (where / "preprocessing.json").write_text(json.dumps(pre.to_json()))
    (where / "signature.json").write_text(json.dumps({"features": FEATURES}))
    (where / "manifest.json").write_text(json.dumps({"version": "v1"}))
    return where


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_scheduled_run_scores_every_customer_into_the_online_store(
    runtime_operator: Operator, kubectl: Kubectl, node: Node, namespace: str
) -> None:
    """Everything real: the ingest, the materialization and the batch run are the Pods'
    own commands; the predictions the application looks up are the model's scores of
    each customer's latest online features."""
    claim = node.claim(ARTIFACT_CLAIM)
    subprocess.run(
        [sys.executable, str(ROOT / "examples/quickstart/generate_data.py"), "--customers", "200",
         "--out", str(claim / "data")],
        check=True, capture_output=True,
    )  # fmt: skip
    events = quickstart("Dataset", "customer-events")
    events["spec"]["source"]["uri"] = f"pvc://{ARTIFACT_CLAIM}/data/customer_events.csv"
    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    fv["spec"]["ttl"] = "36500d"  # the generated January stays fresh today
    kubectl.apply(yaml.safe_dump_all([events, fv]))
    [ingest] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    assert run_job(kubectl, ingest["metadata"]["name"], node).exit_code == 0
    [materialize] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="the materialization Job",
    )
    done = run_job(kubectl, materialize["metadata"]["name"], node)
    assert done.exit_code == 0, done.log[-2000:]
    kubectl.wait("--for=condition=Ready", "featureview/customer-features", timeout=60)
    write_model_version(claim, namespace)

    md: dict[str, Any] = quickstart("ModelDeployment", "churn")
    md["spec"] = {
        "backend": "triton",
        "stable": {"modelName": "churn", "version": "v1"},
        "batchPrediction": {
            "schedule": "0 3 * * *",
            "featureViewRef": {"name": "customer-features"},
        },
    }
    kubectl.apply(yaml.safe_dump(md))
    wait_for(
        lambda: kubectl.items("cronjob", "-l", "app.kubernetes.io/component=batch"),
        what="the batch CronJob",
    )
    kubectl.run("create", "job", "churn-batch-now", "--from=cronjob/churn-batch")
    run = run_job(kubectl, "churn-batch-now", node)
    assert run.exit_code == 0, run.log[-3000:]
    obj = wait_condition(kubectl, "md/churn", "BatchPredicted", timeout=90)
    reported = obj["status"]["batchPrediction"]
    assert reported["rows"] == 200 and reported["modelVersion"] == "v1", reported
    assert reported["view"] == "churn-predictions" and reported["scoreName"] == "churn_score"
    assert reported["outputUri"].startswith(f"pvc://{ARTIFACT_CLAIM}/featureviews/")

    # The application's lookup, on the volume the Pod wrote, equals the model's scores.
    context = RunContext(artifact_root=claim, namespace=namespace)
    view = FeatureView.model_validate(fv)
    deployment = ModelDeployment.model_validate(md)
    entities = [{"customer_id": f"C{i:06d}"} for i in range(0, 200, 7)]
    stored = features.get_online_features(predictions_view(deployment, view), entities, context)
    rows = features.get_online_features(view, entities, context)
    model = predictor.load_predictor(str(claim / "models" / "churn" / "versions" / "v1"))
    columns = {
        "plan": np.array([r["plan"] for r in rows if r], dtype=object),
        "monthly_charges": np.array([r["monthly_charges"] for r in rows if r], dtype=np.float64),
        "tenure_days": np.array([r["tenure_days"] for r in rows if r], dtype=np.float64),
    }
    expected = np.asarray(model.predict_columns(columns)).reshape(-1)
    np.testing.assert_allclose([s["churn_score"] for s in stored if s], expected, rtol=1e-6)
    assert len(expected) == len(entities)
