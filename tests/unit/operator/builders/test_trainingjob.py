"""TrainingJob -> a KubeRay RayJob: the entrypoint, GPU workers, the submitter."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from flywheel import entrypoints
from flywheel.api import FeatureView
from flywheel_operator.builders import pods, trainingjob
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


def test_the_ray_job_gets_its_inputs_manifests_and_reads_them_as_its_context(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = owners()
    body = found["TrainingJob/churn-logistic"]
    upstream = {
        key: {**found[key], "status": {"phase": "Ready", "version": "v1"}}
        for key in ("FeatureView/customer-features", "Dataset/churn-labels")
    }
    rayjob = trainingjob.build(body, model(body), settings, {}, pods.input_manifests(upstream))
    env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])["env_vars"]
    given = json.loads(env[entrypoints.INPUT_MANIFESTS_ENV])
    # Kind, name, namespace and spec; no status, uid or other metadata.
    assert [m["kind"] for m in given] == ["Dataset", "FeatureView"]
    assert all(set(m) == {"apiVersion", "kind", "metadata", "spec"} for m in given)
    assert given[1]["metadata"] == {"name": "customer-features", "namespace": "ml"}

    # What the Ray job's `train run` does with that env.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = argparse.Namespace(filename=None, name=None, namespace="ml", artifact_root="/tmp/a")
    job, context = entrypoints.select_object(args, "TrainingJob")
    assert job.name == "churn-logistic"
    view = context.input_resource("FeatureView", "customer-features")
    assert (
        isinstance(view, FeatureView)
        and view.spec.features == model(found["FeatureView/customer-features"]).spec.features
    )
    assert context.input_resource("Dataset", "churn-labels") is not None


def test_inputs_too_large_for_a_process_environment_are_refused_by_name(
    settings: Settings,
) -> None:
    found = owners()
    body = found["TrainingJob/churn-logistic"]
    view = found["FeatureView/customer-features"]
    view["spec"]["description"] = "x" * (entrypoints.ENV_VALUE_LIMIT_BYTES + 1)
    with pytest.raises(pods.EnvTooLarge, match=r"\$FLYWHEEL_RAY_RUNTIME_ENV_YAML would be"):
        trainingjob.build(
            body, model(body), settings, {}, pods.input_manifests({"FeatureView/x": view})
        )
