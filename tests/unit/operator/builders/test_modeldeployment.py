"""ModelDeployment -> a RayService, or Triton servers and a router."""

from __future__ import annotations

import json

import yaml

from flywheel_operator.builders import modeldeployment
from flywheel_operator.settings import Settings
from tests.unit.operator.children import V1, V2
from tests.unit.operator.conftest import model, owners


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


def test_clients_reach_the_router_service() -> None:
    body = owners()["ModelDeployment/churn"]
    assert modeldeployment.url(model(body), "ml") == "http://churn-serve-serve-svc.ml.svc:8000"
    body["spec"]["backend"] = "triton"
    assert modeldeployment.url(model(body), "ml") == "http://churn.ml.svc"
