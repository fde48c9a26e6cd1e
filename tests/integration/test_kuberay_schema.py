"""The RayJobs and RayServices the operator builds, against KubeRay's own CRDs.

The API server drops every field a CRD's schema does not know (a create or update prunes
it; a server-side apply, the operator's write, is refused) and may rewrite values (defaults,
formats). So each object the builders make, in every shape they make it, is applied to the
real API server with KubeRay's CRDs installed, and what the server keeps must be what was
sent.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flywheel.serving.versions import ServedVersion
from flywheel_operator.builders import modeldeployment, trainingjob
from flywheel_operator.settings import Settings
from tests.cluster import CommandError, Kubectl, kuberay
from tests.unit.operator.conftest import model, owners

V1 = ServedVersion("churn", "v1", "pvc://flywheel-artifacts/models/churn/v1")
V2 = ServedVersion("churn", "v2", "pvc://flywheel-artifacts/models/churn/v2")
INPUTS = {"FeatureView/customer-features": {"offlineUri": "pvc://flywheel-artifacts/fv/x"}}
PVC_SETTINGS = Settings(runtime_image="flywheel/runtime:test")
S3_SETTINGS = Settings(
    runtime_image="flywheel/runtime:test",
    artifact_root="s3://ml/flywheel",
    runtime_service_account="flywheel-runtime",
    ray_image="rayproject/ray:2.50.0-py311",
)


def owner(key: str, namespace: str) -> dict[str, Any]:
    body = owners()[key]
    body["metadata"]["namespace"] = namespace
    return body


def rayjobs(namespace: str) -> dict[str, dict[str, Any]]:
    plain = owner("TrainingJob/churn-logistic", namespace)
    gpu = owner("TrainingJob/churn-mlp", namespace)
    gpu["spec"]["scaling"] = {
        "numWorkers": 2,
        "resourcesPerWorker": {
            "cpu": "4",
            "memory": "16Gi",
            "gpu": 1,
            "gpuType": "NVIDIA-A10G",
            "tolerations": [{"key": "team", "operator": "Equal", "value": "ml",
                             "effect": "NoSchedule"}],
        },
    }  # fmt: skip
    gpu["spec"]["activeDeadlineSeconds"] = 7200
    return {
        "rayjob-on-a-pvc-root": trainingjob.build(plain, model(plain), PVC_SETTINGS, INPUTS),
        "rayjob-gpu-workers-s3-root": trainingjob.build(gpu, model(gpu), S3_SETTINGS, INPUTS),
    }


def rayservices(namespace: str) -> dict[str, dict[str, Any]]:
    md = owner("ModelDeployment/churn", namespace)
    gpu = owner("ModelDeployment/churn", namespace)
    gpu["spec"]["resources"] = {"cpu": "2", "memory": "8Gi", "gpu": 0.5}
    split = {"v1": 90.0, "v2": 10.0}
    return {
        "rayservice-canary-on-a-pvc-root": modeldeployment.build(
            md, model(md), PVC_SETTINGS, [V1, V2], split
        )[0],
        "rayservice-stable-only": modeldeployment.build(
            md, model(md), PVC_SETTINGS, [V1], {"v1": 100.0}
        )[0],
        "rayservice-fractional-gpu-s3-root": modeldeployment.build(
            gpu, model(gpu), S3_SETTINGS, [V1, V2], split
        )[0],
    }


def as_stored(kubectl: Kubectl, obj: dict[str, Any]) -> dict[str, Any]:
    """What the server keeps of `obj`, applied as the operator applies it (server-side,
    no strict field validation), without storing it."""
    out = kubectl.apply(
        json.dumps(obj),
        dry_run="server",
        extra=["--validate=false", "--force-conflicts", "-o", "json"],
    ).stdout
    stored: dict[str, Any] = json.loads(out)
    return stored


@pytest.mark.parametrize("make", [rayjobs, rayservices])
def test_the_server_keeps_every_field_the_builders_write(
    kuberay_crds: None, kubectl: Kubectl, namespace: str, make: Any
) -> None:
    built = make(namespace)
    lost = {name: kuberay.pruned(obj, as_stored(kubectl, obj)) for name, obj in built.items()}
    assert lost == {name: [] for name in built}, lost


def test_a_field_kuberay_does_not_know_is_refused_or_pruned(
    kuberay_crds: None, kubectl: Kubectl, namespace: str
) -> None:
    """Under these CRDs an unknown field never passes: a server-side apply (the operator's
    write) is refused, a plain create keeps the object and drops the field."""
    obj = rayjobs(namespace)["rayjob-on-a-pvc-root"]
    obj["spec"]["submitterTemplate"] = obj["spec"]["submitterPodTemplate"]  # a typo
    obj["spec"]["rayClusterSpec"]["headGroupSpec"]["replicas"] = 1  # not a head field
    with pytest.raises(CommandError) as refused:
        as_stored(kubectl, obj)
    assert ".spec.submitterTemplate: field not declared in schema" in str(refused.value)
    created = kubectl.run(
        "create", "--dry-run=server", "--validate=false", "-o", "json", "-f", "-",
        input=json.dumps(obj),
    ).stdout  # fmt: skip
    assert sorted(kuberay.pruned(obj, json.loads(created))) == [
        ".spec.rayClusterSpec.headGroupSpec.replicas",
        ".spec.submitterTemplate",
    ]
