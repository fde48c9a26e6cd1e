"""Pod pieces: Pod Security "restricted" everywhere, GPUs, PVC claims."""

from __future__ import annotations

import pytest

from flywheel.api.common import ResourceRequirements
from flywheel.api.modeldeployment import ServingResources
from flywheel_operator.builders import dataset, pods, trainingjob
from flywheel_operator.settings import Settings
from tests.unit.operator.children import all_children, pod_specs
from tests.unit.operator.conftest import model, owners


def test_every_pod_is_restricted(settings: Settings) -> None:
    specs = pod_specs(all_children(settings))
    assert len(specs) >= 10
    for spec in specs:
        sc = spec["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["scratch"]
        for c in spec["containers"] + spec.get("initContainers", []):
            csc = c["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False
            assert csc["readOnlyRootFilesystem"] is True
            assert csc["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "scratch", "mountPath": "/tmp"} in c["volumeMounts"]


@pytest.mark.parametrize("gpu", [0, 2])
def test_resources_request_whole_gpus(gpu: int) -> None:
    res = pods.resources(ResourceRequirements(gpu=gpu))
    assert ("nvidia.com/gpu" in res["requests"]) == bool(gpu)


def test_a_fraction_of_a_gpu_is_no_pod_request_but_tolerates_gpu_nodes() -> None:
    spec = ServingResources(gpu=0.25, gpu_type="NVIDIA-L4")
    assert "nvidia.com/gpu" not in pods.resources(spec)["requests"]
    placed = pods.placement(spec)
    assert placed["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert placed["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_claims_are_found_anywhere_once() -> None:
    found = pods.claims_in("pvc://a/x", {"k": ["pvc://b/y", "s3://c/z"]}, None, "pvc://a/w")
    assert found == ["a", "b"]


def test_pvc_uris_are_mounted_where_the_runtime_looks() -> None:
    settings = Settings(
        runtime_image="flywheel/runtime:test", artifact_root="pvc://flywheel-artifacts/"
    )
    body = owners()["Dataset/customer-events"]
    body["spec"]["source"]["uri"] = "pvc://raw-data/events/*.csv"
    [job] = dataset.build(body, model(body), settings)
    spec = job["spec"]["template"]["spec"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"flywheel-artifacts", "raw-data"}
    [c] = spec["containers"]
    assert {"name": "pvc-raw-data", "mountPath": "/mnt/pvc/raw-data"} in c["volumeMounts"]
    assert {"name": "FLYWHEEL_PVC_ROOT", "value": "/mnt/pvc"} in c["env"]
    tj = owners()["TrainingJob/churn-logistic"]
    rayjob = trainingjob.build(tj, model(tj), settings, {})
    for template in (
        rayjob["spec"]["submitterPodTemplate"],
        rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"],
        rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"],
    ):
        mounts = template["spec"]["containers"][0]["volumeMounts"]
        assert {
            "name": "pvc-flywheel-artifacts",
            "mountPath": "/mnt/pvc/flywheel-artifacts",
        } in mounts
