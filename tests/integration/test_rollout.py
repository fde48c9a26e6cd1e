"""A canary driven by the operator from a real router's measurements, on the Triton path.

The operator runs against the real API server and reads the rollout report of a real
`flywheel serve router` on 127.0.0.1 (FLYWHEEL_ROUTER_URL). The test plays the parts no
real process plays here: the kubelet, which projects the router's ConfigMap into its
Pod (here: copied into the router's config file, the versions' Service names mapped to
Flywheel's own v2 model servers on 127.0.0.1, over gRPC as Triton would be reached),
and the clients, who send a steady stream of requests. Nothing dials a Pod IP.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.cluster import ControlPlane, Kubectl, routerpod, wait_for
from tests.components.serving.support import write_model
from tests.integration.test_operator import (
    Operator,
    columns,
    condition,
    free_port,
    quickstart,
    running_operator,
)

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
FEATURES = ["tenure", "charges", "calls"]


@contextlib.contextmanager
def process(argv: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(ready_url), what=f"{argv[2]} ready at {ready_url}", timeout=60)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def model_server(
    tmp: Path,
    version: str,
    weights: list[float],
    host: str = "127.0.0.1",
    grpc: int | None = None,
) -> Iterator[int]:
    """`flywheel serve model` of one version; yields its gRPC port."""
    path = write_model(tmp / "models" / version, weights, 0.1, FEATURES)
    http, grpc = free_port(), grpc or free_port()
    argv = [FLYWHEEL, "serve", "model", "--uri", str(path), "--name", "churn",
            "--version", version, "--host", host, "--port", str(http),
            "--grpc-port", str(grpc)]  # fmt: skip
    url = f"http://{host}:{http}/v2/health/ready"
    with process(argv, tmp / f"model-{version}.log", url):
        yield grpc


class Kubelet(threading.Thread):
    """Projects the router's ConfigMap into its config file, as the kubelet does for the
    Pod's volume, with each version's Service name mapped to a local port."""

    def __init__(self, kubectl: Kubectl, path: Path, ports: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.kubectl, self.path, self.ports = kubectl, path, ports
        self.stop = threading.Event()

    def project(self) -> bool:
        cm = self.kubectl.get("configmap", "churn-router")
        config = json.loads(cm["data"]["router.json"])
        config["endpoints"] = {v: f"127.0.0.1:{self.ports[v]}" for v in config.get("endpoints", {})}
        text = json.dumps(config, sort_keys=True)
        if not self.path.exists() or self.path.read_text() != text:
            partial = self.path.with_suffix(".partial")
            partial.write_text(text)
            partial.replace(self.path)
        return True

    def run(self) -> None:
        while not self.stop.wait(0.2):
            with contextlib.suppress(subprocess.CalledProcessError, KeyError, ValueError):
                self.project()


class Clients(threading.Thread):
    """A steady stream of predictions through the router; counts failed answers."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.sent = self.failed = 0

    def run(self) -> None:
        body = {"instances": [{"tenure": 3.0, "charges": 1.5, "calls": 2.0}]}
        with httpx.Client(timeout=5) as client:
            while not self.stop.wait(0.01):  # about 100 requests a second at most
                try:
                    ok = client.post(self.url, json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.sent += 1
                self.failed += not ok


def canary() -> dict[str, Any]:
    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {
        "backend": "triton",
        "stable": {"modelName": "churn", "version": "v1"},
        "candidate": {"modelName": "churn", "version": "v2"},
        "progressDeadline": "5m",
        "scaleDownDelay": "10s",
        "rollout": {
            "strategy": "canary",
            "canary": {
                "steps": [{"weight": 20}, {"weight": 50}, {"weight": 100}],
                "analysis": {
                    "minRequests": 10,
                    "maxErrorRate": 0.05,
                    "maxP99LatencyMs": 2000,
                    "failureLimit": 0,
                },
            },
        },
    }
    return md


@contextlib.contextmanager
def rollout_world(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    tmp_path: Path,
    candidate_port: int | None,
) -> Iterator[tuple[Operator, Clients]]:
    """Model servers, the router, the kubelet's projection, clients, and the operator
    reading the router's report. `candidate_port`: where v2 answers (None: a live one)."""
    router_port = free_port()
    env = {"FLYWHEEL_ROUTER_URL": f"http://127.0.0.1:{router_port}",
           "FLYWHEEL_ROLLOUT_SECONDS": "1"}  # fmt: skip
    config = tmp_path / "router.json"
    with contextlib.ExitStack() as stack:
        v1 = stack.enter_context(model_server(tmp_path, "v1", [0.5, -0.25, 1.0]))
        v2 = candidate_port or stack.enter_context(model_server(tmp_path, "v2", [0.5, -0.2, 1.1]))
        op = stack.enter_context(
            running_operator(
                control_plane,
                namespace,
                tmp_path / "operator.log",
                "file:///var/lib/flywheel/",
                extra_env=env,
            )
        )
        kubectl.apply(yaml.safe_dump(canary()))
        kubelet = Kubelet(kubectl, config, {"v1": v1, "v2": v2})
        wait_for(lambda: _projected(kubelet), what="the router's ConfigMap", timeout=60)
        kubelet.start()
        stack.callback(kubelet.stop.set)
        argv = [FLYWHEEL, "serve", "router", "--config", str(config), "--host", "127.0.0.1",
                "--port", str(router_port), "--reload-interval", "0.2",
                "--state-file", str(tmp_path / "router.db"),
                "--artifact-root", str(tmp_path / "artifacts")]  # fmt: skip
        ready = f"http://127.0.0.1:{router_port}/v2/health/ready"
        stack.enter_context(process(argv, tmp_path / "router.log", ready))
        clients = Clients(f"http://127.0.0.1:{router_port}/v1/models/churn/predict")
        clients.start()
        stack.callback(clients.stop.set)
        yield op, clients


def _projected(kubelet: Kubelet) -> bool:
    try:
        return kubelet.project()
    except (subprocess.CalledProcessError, KeyError):
        return False


def reasons(kubectl: Kubectl) -> list[str]:
    events = kubectl.items("event", "--field-selector", "involvedObject.name=churn")
    ordered = sorted(events, key=lambda e: e["metadata"]["creationTimestamp"])
    return [e["reason"] for e in ordered]


def test_a_canary_walks_to_promoted_on_the_router_s_measurements(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    tmp_path: Path,
) -> None:
    with rollout_world(control_plane, namespace, kubectl, tmp_path, None) as (_, clients):
        # What a user types: it returns once the candidate is promoted.
        kubectl.wait("--for=condition=Promoted", "md/churn", timeout=180)
        md = kubectl.get("md", "churn")
        assert md["status"]["stableVersion"] == "v2"
        assert md["status"]["traffic"] == {"v2": 100.0}
        assert condition(md, "RolledBack")["status"] == "False"
        cols = columns(kubectl, "md")
        assert (cols["PHASE"], cols["STABLE"], cols["TRAFFIC"]) == ("Promoted", "v2", "v2=100")
        story = reasons(kubectl)
        assert story.count("RolloutStep") == 2, story  # 20% -> 50% -> 100%
        assert "RolloutStarted" in story and "Promoted" in story
        router = json.loads(kubectl.get("configmap", "churn-router")["data"]["router.json"])
        assert router["traffic"] == {"v2": 100.0}
        assert clients.sent > 0 and clients.failed == 0


def test_errors_in_the_candidate_roll_back_to_stable(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    tmp_path: Path,
) -> None:
    dead = free_port()  # nothing listens: every call to the candidate fails
    with rollout_world(control_plane, namespace, kubectl, tmp_path, dead) as (_, clients):
        kubectl.wait("--for=condition=RolledBack", "md/churn", timeout=180)
        md = kubectl.get("md", "churn")
        assert md["status"]["stableVersion"] == "v1" and md["status"]["traffic"] == {"v1": 100.0}
        assert md["status"]["lastAnalysis"]["decision"] == "Rollback"
        assert condition(md, "Promoted")["status"] == "False"
        assert columns(kubectl, "md")["TRAFFIC"] == "v1=100"
        story = reasons(kubectl)
        assert "AnalysisFailed" in story and "RolledBack" in story, story
        # Stable answered every request the candidate failed.
        assert clients.sent > 0 and clients.failed == 0
        # The candidate's Triton server stays for scaleDownDelay, then goes.
        wait_for(
            lambda: not kubectl.exists("deployment", "churn-v2"),
            what="the candidate's Deployment pruned after scaleDownDelay",
            timeout=90,
        )


def test_the_router_pod_takes_each_step_from_the_api_server_with_its_file_unchanged(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    tmp_path: Path,
) -> None:
    """The router Pod's own command, its own ServiceAccount (a TokenRequest's token) and
    its Role: the config file is written once at its start and never again, as if the
    kubelet had not refreshed it yet, and still every step's weights are served."""
    router_port = free_port()
    env = {"FLYWHEEL_ROUTER_URL": f"http://127.0.0.1:{router_port}",
           "FLYWHEEL_ROLLOUT_SECONDS": "1"}  # fmt: skip
    # Each version's Service resolves to a loopback address of its own, where its server
    # listens at the Service's gRPC port (as Triton behind its Service).
    hosts = {"churn-v1": routerpod.loopback_address(), "churn-v2": routerpod.loopback_address()}
    pod = tmp_path / "router-pod"
    with contextlib.ExitStack() as stack:
        for version, weights in (("v1", [0.5, -0.25, 1.0]), ("v2", [0.5, -0.2, 1.1])):
            host = hosts[f"churn-{version}"]
            stack.enter_context(model_server(tmp_path, version, weights, host, 8001))
        log = tmp_path / "operator.log"
        artifacts = "file:///var/lib/flywheel/"
        stack.enter_context(
            running_operator(control_plane, namespace, log, artifacts, extra_env=env)
        )
        kubectl.apply(yaml.safe_dump(canary()))
        wait_for(lambda: kubectl.exists("rolebinding", "churn-router"),
                 what="the router's ServiceAccount, Role and RoleBinding", timeout=60)  # fmt: skip
        stack.enter_context(
            routerpod.router_pod(kubectl, control_plane, "churn-router", pod, hosts, router_port)
        )
        wait_for(lambda: _answers(f"http://127.0.0.1:{router_port}/v2/health/ready"),
                 what="the router Pod ready", timeout=60)  # fmt: skip
        started = routerpod.file_config(pod)
        clients = Clients(f"http://127.0.0.1:{router_port}/v1/models/churn/predict")
        clients.start()
        stack.callback(clients.stop.set)
        kubectl.wait("--for=condition=Promoted", "md/churn", timeout=180)
        report = wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{router_port}/v1/models/churn/rollout").json(),
            lambda r: r["weights"] == {"v2": 1.0},
            what="the router serving v2=100",
            timeout=30,
        )
        assert report["configError"] is None
        # Its file is as the Pod started: every step came through the watch.
        assert routerpod.file_config(pod) == started
        assert started["traffic"] == {"v1": 80.0, "v2": 20.0}
        story = reasons(kubectl)
        assert story.count("RolloutStep") == 2, story
        assert clients.sent > 0 and clients.failed == 0, (clients.sent, clients.failed)
        # Its Role lets it read its own ConfigMap and nothing else.
        account = pod / "serviceaccount"
        with httpx.Client(
            base_url=f"{control_plane.server}/api/v1/namespaces/{namespace}/configmaps",
            headers={"Authorization": f"Bearer {(account / 'token').read_text()}"},
            verify=ssl.create_default_context(cafile=str(account / "ca.crt")),
        ) as as_router:
            assert as_router.get("/churn-router").status_code == 200
            assert as_router.get("/churn-v1-config").status_code == 403
            assert as_router.get("").status_code == 403  # a list of every ConfigMap
