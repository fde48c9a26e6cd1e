"""TrainingJob -> a KubeRay RayJob: the entrypoint, GPU workers, the submitter."""

from __future__ import annotations

import json

import yaml

from flywheel_operator.builders import trainingjob
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import model, owners


def test_rayjob_for_gpu_workers(settings: Settings) -> None:
    body = owners()["TrainingJob/churn-mlp"]
    body["spec"]["scaling"] = {
        "numWorkers": 3,
        "resourcesPerWorker": {
            "cpu": "4",
            "memory": "16Gi",
            "gpu": 1,
            "gpuType": "NVIDIA-A10G",
            "tolerations": [
                {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
            ],
        },
    }
    body["spec"]["activeDeadlineSeconds"] = 7200
    rayjob = trainingjob.build(
        body, model(body), settings, {"FeatureView/customer-features": {"offlineUri": "x"}}
    )
    spec = rayjob["spec"]
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 3600 and spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["entrypoint"].startswith("flywheel train run")
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert json.loads(env["FLYWHEEL_INPUTS"]) == {
        "FeatureView/customer-features": {"offlineUri": "x"}
    }
    [group] = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    pod = group["template"]["spec"]
    res = pod["containers"][0]["resources"]
    assert res["requests"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert res["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A10G"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert (
        "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["requests"]
    )
    submitter = spec["submitterPodTemplate"]["spec"]["containers"][0]
    assert submitter["args"][:2] == ["train", "submit"]


def test_ray_clusters_run_the_runtime_image_unless_told_otherwise(settings: Settings) -> None:
    tj = owners()["TrainingJob/churn-logistic"]
    head = trainingjob.build(tj, model(tj), settings, {})["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["template"]["spec"]["containers"][0]["image"] == "flywheel/runtime:test"
    tj["spec"]["ray"] = {"image": "registry.example/ml/ray-flywheel:2.60.0"}
    head = trainingjob.build(tj, model(tj), settings, {})["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert (
        head["template"]["spec"]["containers"][0]["image"]
        == "registry.example/ml/ray-flywheel:2.60.0"
    )


def test_the_submitter_submits_the_rayjobs_own_entrypoint_and_runtime_env(
    settings: Settings,
) -> None:
    from flywheel.training import submit

    body = owners()["TrainingJob/churn-mlp"]
    rayjob = trainingjob.build(body, model(body), settings, {"Dataset/churn-labels": {"v": 1}})
    spec = rayjob["spec"]
    [container] = spec["submitterPodTemplate"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    command, runtime_env = submit.submission("ignored", env)
    assert command == spec["entrypoint"] == submit.entrypoint(settings.artifact_root)
    assert runtime_env == yaml.safe_load(spec["runtimeEnvYAML"])
