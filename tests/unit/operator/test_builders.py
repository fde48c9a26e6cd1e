"""Builders are pure: the produced manifests, asserted as plain dicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from flywheel_operator.builders import (
    dataset,
    driftmonitor,
    featureview,
    modeldeployment,
    pods,
    trainingjob,
)
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import model, owners

V1 = modeldeployment.ServedVersion("churn", "v1", "s3://ml/flywheel/models/churn/v1")
V2 = modeldeployment.ServedVersion("churn", "v2", "s3://ml/flywheel/models/churn/v2")


def pod_specs(obj: Any) -> list[dict[str, Any]]:
    """Every pod spec inside a manifest, wherever it is nested."""
    found: list[dict[str, Any]] = []
    if isinstance(obj, dict):
        if "containers" in obj:
            found.append(obj)
        for value in obj.values():
            found += pod_specs(value)
    elif isinstance(obj, list):
        for value in obj:
            found += pod_specs(value)
    return found


def all_children(settings: Settings) -> list[dict[str, Any]]:
    o = owners()
    ds, fv = o["Dataset/customer-events"], o["FeatureView/customer-features"]
    tj, md, dm = (
        o["TrainingJob/churn-mlp"],
        o["ModelDeployment/churn"],
        o["DriftMonitor/churn-drift"],
    )
    triton = {**md, "spec": {**md["spec"], "backend": "triton"}}
    return [
        *dataset.build(ds, model(ds), settings),
        *featureview.build(fv, model(fv), settings, {"Dataset/customer-events": {"version": "a"}}),
        trainingjob.build(tj, model(tj), settings, {}),
        *modeldeployment.build(md, model(md), settings, [V1, V2], {"v1": 90, "v2": 10}),
        *modeldeployment.build(triton, model(triton), settings, [V1, V2], {"v1": 90, "v2": 10}),
        *driftmonitor.build(dm, model(dm), settings, {}),
    ]


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


def test_children_carry_owner_reference_and_labels(settings: Settings) -> None:
    for child in all_children(settings):
        meta = child["metadata"]
        [ref] = meta["ownerReferences"]
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        assert ref["uid"].startswith("uid-")
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "flywheel-operator"
        assert meta["namespace"] == "ml"
        assert len(meta["name"]) <= 63


def test_dataset_job_runs_ingest_and_reports_by_termination_message(settings: Settings) -> None:
    body = owners()["Dataset/customer-events"]
    [job] = dataset.build(body, model(body), settings)
    assert job["kind"] == "Job" and job["metadata"]["name"].startswith("customer-events-ingest-")
    [c] = job["spec"]["template"]["spec"]["containers"]
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
    assert manifest["spec"]["source"]["uri"] == "./data/customer_events.csv"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_dataset_job_name_changes_with_the_spec(settings: Settings) -> None:
    body = owners()["Dataset/customer-events"]
    changed = {**body, "spec": {**body["spec"], "validation": {"onError": "fail"}}}
    assert dataset.ingest_job_name(body) != dataset.ingest_job_name(changed)
    assert dataset.ingest_job_name(body) == dataset.ingest_job_name(
        owners()["Dataset/customer-events"]
    )


def test_featureview_rematerializes_on_a_new_source_version(settings: Settings) -> None:
    body = owners()["FeatureView/customer-features"]
    a = featureview.build(
        body, model(body), settings, {"Dataset/customer-events": {"version": "a"}}
    )
    b = featureview.build(
        body, model(body), settings, {"Dataset/customer-events": {"version": "b"}}
    )
    assert a[0]["metadata"]["name"] != b[0]["metadata"]["name"]
    cron = a[1]
    assert cron["kind"] == "CronJob" and cron["spec"]["schedule"] == "0 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cron["metadata"]["name"]) <= 52


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


def test_rayservice_router_and_one_deployment_per_version(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    body["spec"]["resources"] = {"cpu": "500m", "memory": "1Gi", "gpu": 0.25}
    [svc] = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90.0, "v2": 10.0})
    assert svc["kind"] == "RayService"
    [app] = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"]
    names = [d["name"] for d in app["deployments"]]
    assert names == ["Router", "model-v1", "model-v2"]
    router = app["deployments"][0]["user_config"]
    assert router["traffic"] == {"v1": 90.0, "v2": 10.0} and router["strategy"] == "canary"
    assert app["deployments"][1]["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.25}
    assert app["deployments"][1]["autoscaling_config"]["max_replicas"] == 4
    worker = svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_a_traffic_step_changes_only_the_router_config(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    a = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})[0]
    b = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 50, "v2": 50})[0]
    apps_a = yaml.safe_load(a["spec"]["serveConfigV2"])["applications"][0]
    apps_b = yaml.safe_load(b["spec"]["serveConfigV2"])["applications"][0]
    assert apps_a["deployments"][1:] == apps_b["deployments"][1:]
    assert a["spec"]["rayClusterConfig"] == b["spec"]["rayClusterConfig"]


def test_triton_version_servers_and_router(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    body["spec"] = {
        **body["spec"],
        "backend": "triton",
        "resources": {"gpu": 1},
        "triton": {
            "instanceCount": 2,
            "instanceKind": "KIND_GPU",
            "maxBatchSize": 32,
            "dynamicBatching": {"preferredBatchSizes": [8, 16], "maxQueueDelayMicroseconds": 500},
        },
    }
    children = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})
    kinds = [(c["kind"], c["metadata"]["name"]) for c in children]
    assert kinds == [
        ("ConfigMap", "churn-v1-config"),
        ("Deployment", "churn-v1"),
        ("Service", "churn-v1"),
        ("ConfigMap", "churn-v2-config"),
        ("Deployment", "churn-v2"),
        ("Service", "churn-v2"),
        ("ConfigMap", "churn-router"),
        ("Deployment", "churn-router"),
        ("Service", "churn"),
    ]
    config = children[0]["data"]["config.pbtxt"]
    assert "instance_group [\n  { count: 2 kind: KIND_GPU }\n]" in config
    assert "preferred_batch_size: [ 8, 16 ]" in config and "max_batch_size: 32" in config
    router = json.loads(children[6]["data"]["router.json"])
    assert router["endpoints"] == {"v1": "http://churn-v1:8000", "v2": "http://churn-v2:8000"}
    server = children[1]["spec"]["template"]["spec"]
    assert server["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["initContainers"][0]["args"][:2] == ["serve", "triton-repository"]


def test_driftmonitor_cronjob_and_retrain_job(settings: Settings) -> None:
    body = owners()["DriftMonitor/churn-drift"]
    [cron] = driftmonitor.build(body, model(body), settings, {})
    assert cron["spec"]["schedule"] == "*/10 * * * *"
    tj = driftmonitor.retrain_job(body, model(body), 3)
    assert tj["kind"] == "TrainingJob" and tj["metadata"]["name"] == "churn-drift-retrain-3"
    assert tj["spec"]["evaluation"]["notWorseThanDeployed"]["deploymentRef"] == {"name": "churn"}


@pytest.mark.parametrize("gpu", [0, 2])
def test_resources_request_whole_gpus(gpu: int) -> None:
    from flywheel.api.common import ResourceRequirements

    res = pods.resources(ResourceRequirements(gpu=gpu))
    assert ("nvidia.com/gpu" in res["requests"]) == bool(gpu)


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
