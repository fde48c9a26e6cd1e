"""A canary on the Ray Serve path, driven by the operator, with no model replica restarted.

The operator runs against the real API server and writes a RayService whose
`serveConfigV2` is the runtime's Serve layout. The test plays KubeRay: it deploys every
new `serveConfigV2` to the session's local Ray Serve through the dashboard's declarative
API (`PUT /api/serve/applications/`, what KubeRay sends) and copies Serve's application
statuses into the RayService status as KubeRay v1.5.0 writes them
(`activeServiceStatus.applicationStatuses`, the `Ready` condition). Where a cluster's
Serve proxy listens on the Pod's port 8000, this one listens on a loopback port. The
operator reads the real router's rollout report through Serve's proxy on 127.0.0.1
(FLYWHEEL_ROUTER_URL). Clients send a steady stream of requests. Nothing dials a Pod IP.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.serving import rayserve
from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.components.serving.raycluster import serve_cluster
from tests.components.serving.support import write_model
from tests.integration.test_operator import condition, running_operator
from tests.integration.test_rollout import FEATURES, Clients, reasons

pytestmark = [
    pytest.mark.slow,
    # Ray Serve replicas start in tens of seconds on a busy two-core machine.
    pytest.mark.timeout(900),
    # Ray's own modules still use deprecated APIs.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

__all__ = ["serve_cluster"]

RAYSERVICE = "churn-serve"


def http_options(serve: dict[str, str]) -> dict[str, Any]:
    """Serve's proxy on a loopback port (Serve fixes it when it starts)."""
    return {"host": "127.0.0.1", "port": int(serve["port"])}


class KubeRay(threading.Thread):
    """Deploys each new `serveConfigV2` to Serve and writes the RayService status."""

    def __init__(self, control_plane: ControlPlane, namespace: str, serve: dict[str, str]):
        super().__init__(daemon=True)
        from kubernetes import client, config

        api = config.new_client_from_config(str(control_plane.kubeconfig))
        self.api = client.CustomObjectsApi(api)
        self.namespace, self.serve = namespace, serve
        self.stop = threading.Event()
        self.deployed: str | None = None
        self.written: dict[str, Any] | None = None
        self.puts = 0
        # Configs that gave the candidate weight while its application was not RUNNING.
        self.weighted_early: list[dict[str, float]] = []
        self.errors: list[str] = []

    def _rayservice(self) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            found: dict[str, Any] = self.api.get_namespaced_custom_object(  # type: ignore[assignment]
                "ray.io", "v1", self.namespace, "rayservices", RAYSERVICE
            )
            return found
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def sync(self) -> None:
        rs = self._rayservice()
        if rs is None:
            return
        text = rs["spec"]["serveConfigV2"]
        if text != self.deployed:
            config = yaml.safe_load(text)
            self.check_weights(config)
            config["http_options"] = http_options(self.serve)
            self.play_pods(rs, config)
            rayserve.deploy(self.serve["dashboard"], config)
            self.deployed, self.puts = text, self.puts + 1
        wanted = [a["name"] for a in yaml.safe_load(text)["applications"]]
        apps = rayserve.status(self.serve["dashboard"]).get("applications", {})
        statuses = {
            name: {
                "status": apps.get(name, {}).get("status", "NOT_STARTED"),
                "message": apps.get(name, {}).get("message", ""),
                "serveDeploymentStatuses": {
                    d: {"status": info.get("status", ""), "message": info.get("message", "")}
                    for d, info in (apps.get(name, {}).get("deployments") or {}).items()
                },
            }
            for name in wanted
        }
        ready = all(s["status"] == "RUNNING" for s in statuses.values())
        status = {
            "observedGeneration": rs["metadata"]["generation"],
            "serviceStatus": "Running" if ready else "",
            "numServeEndpoints": 1 if ready else 0,
            "activeServiceStatus": {
                "rayClusterName": f"{RAYSERVICE}-local",
                "applicationStatuses": statuses,
            },
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "NonZeroServeEndpoints" if ready else "ZeroServeEndpoints",
                    "message": "" if ready else "Serve applications are not all RUNNING",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "observedGeneration": rs["metadata"]["generation"],
                }
            ],
        }
        if status != self.written:
            self.api.patch_namespaced_custom_object_status(
                "ray.io", "v1", self.namespace, "rayservices", RAYSERVICE, {"status": status}
            )
            self.written = status

    def play_pods(self, rayservice: dict[str, Any], config: dict[str, Any]) -> None:
        """What the Ray pods would give the replicas beyond the Serve config (mounted
        volumes, container environment): nothing, unless a test needs it."""

    def check_weights(self, config: dict[str, Any]) -> None:
        router = config["applications"][-1]["deployments"][0]["user_config"]
        seen = (self.written or {}).get("activeServiceStatus", {}).get("applicationStatuses", {})
        candidate = router.get("candidate")
        weight = float(router["traffic"].get(candidate, 0)) if candidate else 0.0
        app = seen.get(rayserve.app_name("churn", candidate or ""), {})
        if weight > 0 and app.get("status") != "RUNNING":
            self.weighted_early.append(router["traffic"])

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.sync()
            except Exception as exc:  # a refused PUT or a conflict: retried next round
                self.errors.append(repr(exc)[:300])


def replica_pid(version: str | None) -> int:
    """The process of the version's model replica (None: the router's)."""
    from ray import serve

    if version is None:
        handle = serve.get_deployment_handle(rayserve.ROUTER_DEPLOYMENT, "churn")
    else:
        handle = serve.get_deployment_handle(
            rayserve.MODEL_DEPLOYMENT, rayserve.app_name("churn", version)
        )
    return int(handle.pid.remote().result(timeout_s=60))


def apps(kubectl: Kubectl) -> list[str]:
    return [a["name"] for a in serve_config(kubectl)["applications"]]


def canary(artifacts: Path) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "backend": "rayserve",
            "stable": {"modelName": "churn", "version": "v1"},
            "candidate": {"modelName": "churn", "version": "v2"},
            # Two versions and the router fit the session's two Ray CPUs.
            "resources": {"cpu": "250m"},
            "progressDeadline": "5m",
            # Short, so that the test sees a rolled-back candidate go.
            "scaleDownDelay": "5s",
            "rollout": {
                "strategy": "canary",
                "canary": {
                    "steps": [{"weight": 20}, {"weight": 50}, {"weight": 100}],
                    "analysis": {
                        "minRequests": 10,
                        "maxErrorRate": 0.05,
                        "maxP99LatencyMs": 5000,
                        "failureLimit": 0,
                    },
                },
            },
        },
    }


@contextlib.contextmanager
def rayserve_world(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    serve: dict[str, str],
    tmp_path: Path,
    candidate_weights: list[float],
) -> Iterator[tuple[KubeRay, Clients]]:
    artifacts = tmp_path / "artifacts"
    write_model(
        artifacts / "models" / "churn" / "versions" / "v1", [0.5, -0.25, 1.0], 0.1, FEATURES
    )
    write_model(
        artifacts / "models" / "churn" / "versions" / "v2", candidate_weights, 0.1, FEATURES
    )
    env = {"FLYWHEEL_ROUTER_URL": serve["http"], "FLYWHEEL_ROLLOUT_SECONDS": "1"}
    # The module's tests share one Serve: each starts from no application.
    rayserve.deploy(serve["dashboard"], {"applications": [], "http_options": http_options(serve)})
    wait_for(
        lambda: not rayserve.status(serve["dashboard"]).get("applications"),
        what="Serve without applications",
        timeout=120,
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            running_operator(
                control_plane, namespace, tmp_path / "operator.log", str(artifacts), extra_env=env
            )
        )
        kuberay = KubeRay(control_plane, namespace, serve)
        kuberay.start()
        stack.callback(kuberay.join, 10)
        stack.callback(kuberay.stop.set)
        kubectl.apply(yaml.safe_dump(canary(artifacts)))
        wait_for(lambda: kuberay.puts > 0, what="KubeRay's first deploy", timeout=120)
        apps = ["churn-v1", "churn-v2", "churn"]
        rayserve.wait_running(serve["dashboard"], apps, 600)
        # Clients from when the router answers: requests before it are not the rollout's.
        clients = Clients(f"{serve['http']}/v1/models/churn/predict")
        clients.start()
        stack.callback(clients.stop.set)
        yield kuberay, clients


def serve_config(kubectl: Kubectl) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        kubectl.get("rayservice", RAYSERVICE)["spec"]["serveConfigV2"]
    )
    return config


def router_traffic(kubectl: Kubectl) -> dict[str, float]:
    router = serve_config(kubectl)["applications"][-1]["deployments"][0]["user_config"]
    return {v: float(w) for v, w in router["traffic"].items()}


def test_a_canary_on_ray_serve_walks_to_promoted_without_restarting_a_replica(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    kuberay_crds: None,
    serve_cluster: dict[str, str],
    tmp_path: Path,
) -> None:
    world = rayserve_world(
        control_plane, namespace, kubectl, serve_cluster, tmp_path, [0.5, -0.2, 1.1]
    )
    with world as (kuberay, clients):
        before = {"v1": replica_pid("v1"), "v2": replica_pid("v2"), "router": replica_pid(None)}

        kubectl.wait("--for=condition=Promoted", "md/churn", timeout=600)
        md = kubectl.get("md", "churn")
        assert md["status"]["stableVersion"] == "v2"
        assert md["status"]["traffic"] == {"v2": 100.0}
        story = reasons(kubectl)
        assert story.count("RolloutStep") == 2, story  # 20% -> 50% -> 100%
        wait_for(
            lambda: router_traffic(kubectl) == {"v2": 100.0},
            what="the router's user_config at v2=100",
            timeout=60,
        )
        # Every step changed the router's user_config only: the same processes serve, and
        # the stable of before stays warm (previousStableWindow) so an undo is instant.
        assert replica_pid("v2") == before["v2"]
        assert replica_pid(None) == before["router"]
        assert "churn-v1" in apps(kubectl) and replica_pid("v1") == before["v1"]
        assert kuberay.puts >= 4, kuberay.puts  # the candidate, two steps, the promotion
        # The candidate got weight only once KubeRay reported its application RUNNING.
        assert kuberay.weighted_early == []
        assert clients.sent > 0 and clients.failed == 0, (clients.sent, clients.failed)
        print(f"figures: promoted; {kuberay.puts} Serve deploys, {clients.sent} requests, "
              f"{clients.failed} failed, PIDs {before}")  # fmt: skip


def test_errors_in_the_candidate_on_ray_serve_roll_back_to_stable(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    kuberay_crds: None,
    serve_cluster: dict[str, str],
    tmp_path: Path,
) -> None:
    # Four weights for three features: every prediction of the candidate raises.
    world = rayserve_world(
        control_plane, namespace, kubectl, serve_cluster, tmp_path, [0.5, -0.2, 1.1, 0.3]
    )
    with world as (_, clients):
        before = {"v1": replica_pid("v1"), "router": replica_pid(None)}
        kubectl.wait("--for=condition=RolledBack", "md/churn", timeout=600)
        md = kubectl.get("md", "churn")
        assert md["status"]["stableVersion"] == "v1"
        assert md["status"]["traffic"] == {"v1": 100.0}
        assert md["status"]["lastAnalysis"]["decision"] == "Rollback"
        assert condition(md, "Promoted")["status"] == "False"
        story = reasons(kubectl)
        assert "AnalysisFailed" in story and "RolledBack" in story, story
        wait_for(
            lambda: router_traffic(kubectl).get("v1") == 100.0,
            what="the router's user_config back at v1=100",
            timeout=60,
        )
        assert replica_pid("v1") == before["v1"]
        assert replica_pid(None) == before["router"]
        assert clients.sent > 0
        # The candidate keeps its application for scaleDownDelay, then loses it.
        wait_for(
            lambda: apps(kubectl) == ["churn-v1", "churn"],
            what="the rolled-back candidate's application removed after scaleDownDelay",
            timeout=120,
        )
        wait_for(
            lambda: "churn-v2" not in rayserve.status(serve_cluster["dashboard"])["applications"],
            what="Serve deleting the candidate's application",
            timeout=120,
        )
        assert replica_pid("v1") == before["v1"] and replica_pid(None) == before["router"]
        print(f"figures: rolled back; {clients.sent} requests, {clients.failed} failed, "
              f"PIDs {before}")  # fmt: skip
