"""ModelDeployment -> a RayService, or Triton servers and a router."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import yaml

from flywheel.serving import config as router_config
from flywheel.serving import rayserve
from flywheel.serving.versions import ServedVersion
from flywheel_operator.builders import modeldeployment
from flywheel_operator.settings import Settings
from tests.unit.operator.children import V1, V2
from tests.unit.operator.conftest import model, owners


def _apps(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    return {app["name"]: app for app in config["applications"]}


def test_rayservice_one_application_per_version_and_the_router(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    body["spec"]["resources"] = {"cpu": "500m", "memory": "1Gi", "gpu": 0.25}
    [svc] = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90.0, "v2": 10.0})
    assert svc["kind"] == "RayService"
    apps = _apps(svc)
    assert list(apps) == ["churn-v1", "churn-v2", "churn"]
    v1 = apps["churn-v1"]
    assert v1["import_path"] == rayserve.MODEL_IMPORT and v1["route_prefix"] == "/churn-v1"
    assert v1["args"] == {"model": "churn", "version": "v1", "uri": V1.artifact_uri}
    [model_deployment] = v1["deployments"]
    assert model_deployment["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.25}
    assert model_deployment["autoscaling_config"]["max_replicas"] == 4
    router_app = apps["churn"]
    assert router_app["import_path"] == rayserve.ROUTER_IMPORT
    assert router_app["args"] == {"deployment": "churn"}
    [router] = router_app["deployments"]
    config = router["user_config"]
    assert config["traffic"] == {"v1": 90.0, "v2": 10.0} and config["strategy"] == "canary"
    assert config["applications"] == {"v1": "churn-v1", "v2": "churn-v2"}
    # What the router itself accepts: the builder and the router agree on the config.
    parsed = router_config.parse(config)
    assert parsed.weights() == {"v1": 90.0, "v2": 10.0} and parsed.candidate == "v2"
    worker = svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "1"


def test_the_builder_emits_what_the_runtime_layout_builds(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    md = model(body)
    [svc] = modeldeployment.build(body, md, settings, [V1, V2], {"v1": 90.0, "v2": 10.0})
    versions = [{"model": v.model_name, "version": v.version, "uri": v.artifact_uri}
                for v in (V1, V2)]  # fmt: skip
    expected = rayserve.serve_config(
        "churn",
        versions,
        modeldeployment.router_config(md, [V1, V2], {"v1": 90.0, "v2": 10.0}),
        num_cpus=0.5,
        num_gpus=0.0,
        autoscaling={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4},
    )
    assert yaml.safe_load(svc["spec"]["serveConfigV2"]) == expected


def test_only_the_router_application_gets_the_replica_settings(settings: Settings) -> None:
    # The router's code never blocks its loop, so its replicas run it on Serve's own loop;
    # a model's inference may block, so its applications keep Serve's defaults.
    body = owners()["ModelDeployment/churn"]
    [svc] = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})
    apps = _apps(svc)
    assert apps["churn"]["runtime_env"] == {"env_vars": rayserve.ROUTER_SERVE_ENV}
    assert "runtime_env" not in apps["churn-v1"] and "runtime_env" not in apps["churn-v2"]


def test_a_traffic_step_changes_only_the_router_user_config(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    a = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})[0]
    b = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 50, "v2": 50})[0]
    apps_a, apps_b = _apps(a), _apps(b)
    assert apps_a["churn-v1"] == apps_b["churn-v1"] and apps_a["churn-v2"] == apps_b["churn-v2"]
    router_a, router_b = apps_a.pop("churn"), apps_b.pop("churn")
    assert router_a["deployments"][0].pop("user_config") != router_b["deployments"][0].pop(
        "user_config"
    )
    assert router_a == router_b
    assert a["spec"]["rayClusterConfig"] == b["spec"]["rayClusterConfig"]


def test_adding_and_removing_a_version_leaves_the_other_applications_alone(
    settings: Settings,
) -> None:
    body = owners()["ModelDeployment/churn"]
    body["spec"]["rollout"] = {"strategy": "none"}
    body["spec"].pop("candidate", None)
    alone = _apps(modeldeployment.build(body, model(body), settings, [V1], {"v1": 100})[0])
    body = owners()["ModelDeployment/churn"]
    both = _apps(
        modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 100, "v2": 0})[0]
    )
    promoted = _apps(modeldeployment.build(body, model(body), settings, [V2], {"v2": 100})[0])
    assert alone["churn-v1"] == both["churn-v1"]
    assert both["churn-v2"] == promoted["churn-v2"]
    assert "churn-v1" not in promoted
    unchanged = ("name", "import_path", "args", "route_prefix")
    for apps in (alone, both, promoted):
        assert {k: apps["churn"][k] for k in unchanged} == {
            "name": "churn",
            "import_path": rayserve.ROUTER_IMPORT,
            "args": {"deployment": "churn"},
            "route_prefix": "/",
        }


def _triton(gpu: float = 1, strategy: dict[str, Any] | None = None) -> dict[str, Any]:
    body = owners()["ModelDeployment/churn"]
    body["spec"] = {
        **body["spec"],
        "backend": "triton",
        "resources": {"gpu": gpu},
        "triton": {
            "instanceCount": 2,
            "maxBatchSize": 32,
            "dynamicBatching": {"preferredBatchSizes": [8, 16], "maxQueueDelayMicroseconds": 500},
        },
    }
    if strategy is not None:
        body["spec"]["rollout"] = strategy
    return body


def test_triton_version_servers_and_router(settings: Settings) -> None:
    body = _triton()
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
        ("PodDisruptionBudget", "churn-router"),
        ("Service", "churn"),
        ("ServiceAccount", "churn-router"),
        ("Role", "churn-router"),
        ("RoleBinding", "churn-router"),
    ]
    # GPUs asked for: the instances run on them (the default kind is KIND_CPU).
    config = children[0]["data"]["serving.pbtxt"]
    assert "instance_group [ { count: 2 kind: KIND_GPU } ]" in config
    assert "preferred_batch_size: [ 8, 16 ]" in config and "max_batch_size: 32" in config
    router = json.loads(children[6]["data"]["router.json"])
    assert router["endpoints"] == {"v1": "churn-v1:8001", "v2": "churn-v2:8001"}
    assert router["backend"] == "triton-grpc" and router["model"] == "churn"
    assert router_config.parse(router).weights() == {"v1": 90.0, "v2": 10.0}
    server = children[1]["spec"]["template"]["spec"]
    assert server["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    fetch = server["initContainers"][0]["args"]
    assert fetch[:2] == ["serve", "triton-repository"]
    assert fetch[fetch.index("--model") + 1] == "churn"  # every version under one name
    assert fetch[fetch.index("--uri") + 1] == V1.artifact_uri


def test_triton_without_gpus_runs_cpu_instances(settings: Settings) -> None:
    body = _triton(gpu=0)
    children = modeldeployment.build(body, model(body), settings, [V1], {"v1": 100})
    assert "kind: KIND_CPU" in children[0]["data"]["serving.pbtxt"]


def test_the_triton_router_is_probed_drains_and_survives_disruptions(
    settings: Settings,
) -> None:
    body = _triton()
    children = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})
    by_kind = {(c["kind"], c["metadata"]["name"]): c for c in children}
    deployment = by_kind[("Deployment", "churn-router")]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    drain = float(container["args"][container["args"].index("--drain-seconds") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = by_kind[("PodDisruptionBudget", "churn-router")]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_triton_router_watches_its_own_configmap_and_may_read_nothing_else(
    settings: Settings,
) -> None:
    body = _triton()
    children = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})
    by_kind = {(c["kind"], c["metadata"]["name"]): c for c in children}
    pod = by_kind[("Deployment", "churn-router")]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--watch-configmap") + 1] == "churn-router"
    assert args[args.index("--config") + 1] == "/etc/flywheel/router.json"  # the start
    assert pod["serviceAccountName"] == "churn-router"
    assert pod["automountServiceAccountToken"] is True
    [rule] = by_kind[("Role", "churn-router")]["rules"]
    assert rule == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["churn-router"],
        "verbs": ["get", "list", "watch"],
    }
    binding = by_kind[("RoleBinding", "churn-router")]
    assert binding["roleRef"]["name"] == "churn-router"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "churn-router", "namespace": "ml"}
    ]
    # The version servers keep no token: they read nothing from the API.
    server = by_kind[("Deployment", "churn-v1")]["spec"]["template"]["spec"]
    assert server["automountServiceAccountToken"] is False
    # A runtime ServiceAccount in the settings (a cloud identity, say): the router runs
    # as it, and the Role is bound to it; no account of its own.
    named = dataclasses.replace(settings, runtime_service_account="flywheel-runtime")
    children = modeldeployment.build(body, model(body), named, [V1, V2], {"v1": 90, "v2": 10})
    by_kind = {(c["kind"], c["metadata"]["name"]): c for c in children}
    pod = by_kind[("Deployment", "churn-router")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "flywheel-runtime"
    assert ("ServiceAccount", "churn-router") not in by_kind
    subjects = by_kind[("RoleBinding", "churn-router")]["subjects"]
    assert [s["name"] for s in subjects] == ["flywheel-runtime"]


def test_a_triton_traffic_step_changes_only_the_router_configmap(settings: Settings) -> None:
    body = _triton()
    a = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})
    b = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 50, "v2": 50})
    changed = [x["metadata"]["name"] for x, y in zip(a, b, strict=True) if x != y]
    assert changed == ["churn-router"]  # the ConfigMap; the router re-reads it
    assert [x["kind"] for x, y in zip(a, b, strict=True) if x != y] == ["ConfigMap"]


AB = {"strategy": "abtest", "abtest": {"baselineRate": 0.1, "minimumDetectableEffect": 0.02}}


@pytest.mark.parametrize("strategy", [{"strategy": "bandit", "bandit": {}}, AB])
def test_a_bandit_or_an_abtest_keeps_one_router_replica(
    settings: Settings, strategy: dict[str, Any]
) -> None:
    body = _triton(strategy=strategy)
    children = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 50, "v2": 50})
    [router] = [c for c in children if c["metadata"]["name"] == "churn-router"
                and c["kind"] == "Deployment"]  # fmt: skip
    assert router["spec"]["replicas"] == 1


def test_a_bandit_with_its_counts_in_redis_runs_two_routers_reading_the_url_secret(
    settings: Settings,
) -> None:
    body = _triton(strategy={"strategy": "bandit", "bandit": {}})
    body["spec"]["routerState"] = {
        "type": "redis",
        "connectionSecretRef": {"name": "router-redis", "key": "url"},
    }
    children = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 50, "v2": 50})
    [router] = [c for c in children if c["metadata"]["name"] == "churn-router"
                and c["kind"] == "Deployment"]  # fmt: skip
    assert router["spec"]["replicas"] == 2
    pod = router["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert "--state-file" not in args
    url_file = args[args.index("--state-url-file") + 1]
    assert url_file == "/var/run/secrets/flywheel/router-redis/url"
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"] == {
        "secretName": "router-redis",
        "items": [{"key": "url", "path": "url"}],
    }
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert url_file.startswith(mount["mountPath"]) and mount["readOnly"]


def test_ray_serve_routers_share_bandit_counts_through_the_mounted_redis_url(
    settings: Settings,
) -> None:
    body = owners()["ModelDeployment/churn"]
    body["spec"]["routerState"] = {
        "type": "redis",
        "connectionSecretRef": {"name": "router-redis", "key": "url"},
    }
    [service] = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 50, "v2": 50})
    cluster = service["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]]
    templates += [g["template"] for g in cluster["workerGroupSpecs"]]
    for template in templates:
        [container] = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        url_file = env[rayserve.STATE_URL_FILE_ENV]
        assert url_file == "/var/run/secrets/flywheel/router-redis/url"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/var/run/secrets/flywheel/router-redis" in mounts
    del body["spec"]["routerState"]
    [plain] = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 50, "v2": 50})
    assert "FLYWHEEL_ROUTER_STATE_URL_FILE" not in json.dumps(plain)
    assert _apps(plain) == _apps(service)  # the Serve applications are the same


def test_entity_lookups_give_the_router_the_views_spec_and_its_store_secret(
    settings: Settings,
) -> None:
    body = _triton()
    body["spec"]["featureViewRef"] = {"name": "customer-features"}
    view = owners()["FeatureView/customer-features"]
    view["spec"]["onlineStore"] = {
        "type": "redis",
        "connectionSecretRef": {"name": "online-redis", "key": "url"},
    }
    view["status"] = {"phase": "Ready", "offlineVersion": "v7"}
    children = modeldeployment.build(
        body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10}, view
    )
    [router] = [c for c in children if c["metadata"]["name"] == "churn-router"
                and c["kind"] == "Deployment"]  # fmt: skip
    pod = router["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[args.index("--feature-view") + 1] == "customer-features"
    assert args[args.index("--artifact-root") + 1] == settings.artifact_root
    env = {e["name"]: e.get("value") for e in container["env"]}
    [given] = json.loads(env["FLYWHEEL_INPUT_MANIFESTS"])
    assert given["kind"] == "FeatureView" and given["spec"] == view["spec"]
    assert "status" not in given  # a materialization restarts no router
    assert any(v.get("secret", {}).get("secretName") == "online-redis" for v in pod["volumes"])
    without = modeldeployment.build(body, model(body), settings, [V1, V2], {"v1": 90, "v2": 10})
    [plain] = [c for c in without if c["metadata"]["name"] == "churn-router"
               and c["kind"] == "Deployment"]  # fmt: skip
    assert "--feature-view" not in plain["spec"]["template"]["spec"]["containers"][0]["args"]


def _templates(rayservice: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = rayservice["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]


def _redis_view(secret: str = "online-redis") -> dict[str, Any]:
    view = owners()["FeatureView/customer-features"]
    view["spec"]["onlineStore"] = {
        "type": "redis",
        "connectionSecretRef": {"name": secret, "key": "url"},
    }
    view["status"] = {"phase": "Ready", "offlineVersion": "v7"}
    return view


def test_ray_serve_entity_lookups_mount_the_store_secret_where_the_router_runs(
    settings: Settings,
) -> None:
    body = owners()["ModelDeployment/churn"]
    body["spec"]["featureViewRef"] = {"name": "customer-features"}
    view = _redis_view()
    traffic = {"v1": 90.0, "v2": 10.0}
    [svc] = modeldeployment.build(body, model(body), settings, [V1, V2], traffic, view)
    # The router replicas run in the head and the worker pods: both get the Secret key.
    for template in _templates(svc):
        pod = template["spec"]
        [volume] = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"] == {
            "secretName": "online-redis",
            "items": [{"key": "url", "path": "url"}],
        }
        [container] = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        assert mount == {
            "name": volume["name"],
            "mountPath": "/var/run/secrets/flywheel/online-redis",
            "readOnly": True,
        }
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["FLYWHEEL_SECRETS_DIR"] == "/var/run/secrets/flywheel"
    router = _apps(svc)["churn"]
    assert router["args"] == {
        "deployment": "churn",
        "featureView": {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": "customer-features", "namespace": "ml"},
            "spec": view["spec"],
        },
        "artifactRoot": settings.artifact_root,
    }
    # The view rides in args, fixed for the router's lifetime: its status (a new
    # materialization) changes nothing, and a traffic step changes the user_config only.
    view["status"] = {"phase": "Ready", "offlineVersion": "v8"}
    step = {"v1": 50.0, "v2": 50.0}
    [later] = modeldeployment.build(body, model(body), settings, [V1, V2], step, view)
    assert _apps(later)["churn"]["args"] == router["args"]
    assert later["spec"]["rayClusterConfig"] == svc["spec"]["rayClusterConfig"]
    assert _apps(later)["churn"]["deployments"][0]["user_config"]["traffic"] == step
    # Without the view: no Secret, no lookup args, and the same version applications.
    del body["spec"]["featureViewRef"]
    [plain] = modeldeployment.build(body, model(body), settings, [V1, V2], traffic)
    assert "online-redis" not in json.dumps(plain)
    assert _apps(plain)["churn"]["args"] == {"deployment": "churn"}
    assert {k: a for k, a in _apps(plain).items() if k != "churn"} == {
        k: a for k, a in _apps(svc).items() if k != "churn"
    }


def test_ray_serve_entity_lookups_mount_the_claim_of_a_sqlite_store(settings: Settings) -> None:
    on_claim = dataclasses.replace(settings, artifact_root="pvc://artifacts/flywheel")
    body = owners()["ModelDeployment/churn"]
    body["spec"]["featureViewRef"] = {"name": "customer-features"}
    view = owners()["FeatureView/customer-features"]
    view["spec"]["onlineStore"] = {"type": "sqlite", "path": "pvc://features/online.sqlite"}
    [svc] = modeldeployment.build(body, model(body), on_claim, [V1], {"v1": 100.0}, view)
    for template in _templates(svc):
        pod = template["spec"]
        claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}  # fmt: skip
        assert claims == {"artifacts", "features"}
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert {"/mnt/pvc/artifacts", "/mnt/pvc/features"} <= mounts
    assert _apps(svc)["churn"]["args"]["artifactRoot"] == "pvc://artifacts/flywheel"


def test_ray_serve_router_state_and_the_view_share_one_secret_volume(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    body["spec"]["featureViewRef"] = {"name": "customer-features"}
    body["spec"]["routerState"] = {
        "type": "redis",
        "connectionSecretRef": {"name": "redis", "key": "router"},
    }
    view = _redis_view("redis")
    [svc] = modeldeployment.build(body, model(body), settings, [V1], {"v1": 100.0}, view)
    for template in _templates(svc):
        [volume] = [v for v in template["spec"]["volumes"] if "secret" in v]
        keys = [item["key"] for item in volume["secret"]["items"]]
        assert volume["secret"]["secretName"] == "redis" and keys == ["router", "url"]
        env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
        assert env[rayserve.STATE_URL_FILE_ENV] == "/var/run/secrets/flywheel/redis/router"


def test_clients_reach_the_router_service() -> None:
    body = owners()["ModelDeployment/churn"]
    assert modeldeployment.url(model(body), "ml") == "http://churn-serve-serve-svc.ml.svc:8000"
    body["spec"]["backend"] = "triton"
    assert modeldeployment.url(model(body), "ml") == "http://churn.ml.svc"


def test_a_promotion_moves_champion_through_a_runtime_job(settings: Settings) -> None:
    body = owners()["ModelDeployment/churn"]
    v2 = ServedVersion("churn", "V2_x", "pvc://art/models/churn/versions/V2_x")
    job = modeldeployment.alias_job(body, settings, "champion", v2, "promoted by md/churn")
    assert job["kind"] == "Job" and job["metadata"]["name"] == "churn-champion-v2-x"
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "alias"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert job["metadata"]["annotations"] == {
        "flywheel.dev/model": "churn",
        "flywheel.dev/alias": "champion",
        "flywheel.dev/version": "V2_x",
        "flywheel.dev/artifact-uri": "pvc://art/models/churn/versions/V2_x",
    }
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:11] == [
        "registry", "alias", "set", "--model-root", "pvc://art/models/churn",
        "--alias", "champion", "--version", "V2_x", "--reason", "promoted by md/churn",
    ]  # fmt: skip
    # The model root's claim is mounted, as for any runtime Job.
    assert {"name": "pvc-art", "mountPath": "/mnt/pvc/art"} in container.get("volumeMounts", [])
