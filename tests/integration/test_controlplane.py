"""The local control plane behaves like a cluster: API server, controllers, scheduler,
fake nodes, and helm/kubectl as users run them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import (
    CHART_CRD_NAMES,
    GPU_NODE,
    GPU_RESOURCE,
    ControlPlane,
    Helm,
    Kubectl,
    WaitTimeout,
    wait_for,
)
from tests.cluster.controlplane import read_versions

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "flywheel"
PAUSE = "registry.k8s.io/pause:3.10"  # never pulled: kwok only pretends to run it


def deployment(name: str, replicas: int = 2, extra_pod_spec: dict[str, Any] | None = None) -> str:
    labels = {"app": name}
    pod_spec: dict[str, Any] = {"containers": [{"name": "main", "image": PAUSE}]}
    pod_spec.update(extra_pod_spec or {})
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
        }
    )


def running_pods(kubectl: Kubectl, selector: str, count: int) -> list[dict[str, Any]]:
    return wait_for(
        lambda: kubectl.items("pods", "-l", selector),
        until=lambda pods: (
            len(pods) == count and all(p.get("status", {}).get("phase") == "Running" for p in pods)
        ),
        what=f"{count} Running pods with {selector}",
        timeout=60,
    )


def test_server_is_the_pinned_release(cluster_kubectl: Kubectl) -> None:
    version = json.loads(cluster_kubectl.run("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == read_versions()["KUBERNETES_VERSION"]


def test_components_healthy(cluster_kubectl: Kubectl) -> None:
    # /readyz of the API server includes etcd and the post-start hooks (RBAC bootstrap...).
    out = cluster_kubectl.run("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in out, out


def test_fake_nodes_ready_with_gpu_pool(cluster_kubectl: Kubectl) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster_kubectl.items("nodes")}
    assert GPU_NODE.name in nodes and len(nodes) >= 2, sorted(nodes)
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["status"]["conditions"]
    gpu = nodes[GPU_NODE.name]
    assert gpu["status"]["allocatable"][GPU_RESOURCE] == "4"
    assert {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"} in gpu["spec"][
        "taints"
    ]


def test_rbac_is_enforced_and_tokens_are_issued(kubectl: Kubectl, namespace: str) -> None:
    sa = f"system:serviceaccount:{namespace}:default"
    assert (
        kubectl.run("auth", "can-i", "create", "pods", "--as", sa, check=False).stdout.strip()
        == "no"
    )
    assert kubectl.run("auth", "can-i", "create", "pods").stdout.strip() == "yes"
    token = kubectl.run("create", "token", "default").stdout.strip()
    assert token.count(".") == 2  # a signed JWT from the service-account key pair


def test_deployment_pods_are_scheduled_and_running(kubectl: Kubectl) -> None:
    kubectl.apply(deployment("web", replicas=2))
    kubectl.wait("--for=condition=Available", "deployment/web", timeout=60)
    pods = running_pods(kubectl, "app=web", 2)
    # Untolerated pods never land on the tainted GPU node.
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-cpu-0"}, pods
    assert all(p["status"].get("podIP") for p in pods)


def test_gpu_pod_needs_toleration_and_lands_on_gpu_node(kubectl: Kubectl) -> None:
    gpu_spec: dict[str, Any] = {
        "containers": [
            {"name": "main", "image": PAUSE, "resources": {"limits": {GPU_RESOURCE: "1"}}}
        ]
    }
    kubectl.apply(deployment("no-toleration", replicas=1, extra_pod_spec=gpu_spec))
    wait_for(
        lambda: kubectl.items("events", "--field-selector", "reason=FailedScheduling"),
        until=lambda events: any("no-toleration" in e["involvedObject"]["name"] for e in events),
        what="FailedScheduling event for the pod without a GPU toleration",
        timeout=60,
    )
    tolerated = {
        **gpu_spec,
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    }
    kubectl.apply(deployment("trainer", replicas=1, extra_pod_spec=tolerated))
    (pod,) = running_pods(kubectl, "app=trainer", 1)
    assert pod["spec"]["nodeName"] == GPU_NODE.name


def test_deleting_owner_garbage_collects_children(kubectl: Kubectl) -> None:
    kubectl.apply(deployment("gc", replicas=2))
    running_pods(kubectl, "app=gc", 2)
    assert kubectl.items("replicasets", "-l", "app=gc")
    kubectl.run("delete", "deployment", "gc", "--wait=false")  # background cascade: the GC's job
    wait_for(
        lambda: (
            kubectl.items("replicasets", "-l", "app=gc") + kubectl.items("pods", "-l", "app=gc")
        ),
        until=lambda left: not left,
        what="garbage collector to delete the ReplicaSet and Pods of deployment/gc",
        timeout=60,
    )


def test_job_completes(kubectl: Kubectl) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": PAUSE}],
                }
            },
        },
    }
    kubectl.apply(json.dumps(job))
    kubectl.wait("--for=condition=Complete", "job/once", timeout=60)
    status = kubectl.get("job", "once")["status"]
    assert status["succeeded"] == 2, status


@pytest.fixture
def chart() -> Path:
    if not (CHART / "Chart.yaml").is_file():
        pytest.fail(f"no Helm chart at {CHART}", pytrace=False)
    return CHART


def test_helm_lint(helm: Helm, chart: Path) -> None:
    out = helm.run("lint", str(chart))
    assert "0 chart(s) failed" in out.stdout, out.stdout


def test_helm_install_and_uninstall(
    peering_crds_absent: list[str],
    helm: Helm,
    chart: Path,
    namespace: str,
    kubectl: Kubectl,
    control_plane: ControlPlane,
) -> None:
    helm.run(
        "install", "flywheel", str(chart), "--namespace", namespace,
        "--wait", "--timeout", "120s",
    )  # fmt: skip
    releases = json.loads(helm.run("list", "--namespace", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("flywheel", "deployed")]
    # Helm installs the chart's CRDs unless they exist: the absent ones show it did.
    assert peering_crds_absent
    for name in CHART_CRD_NAMES:
        assert kubectl.exists("crd", name), name
    helm.run("uninstall", "flywheel", "--namespace", namespace, "--wait")


def test_wait_for_reports_what_it_last_saw(kubectl: Kubectl) -> None:
    kubectl.run("create", "configmap", "settings", "--from-literal=mode=shadow")
    with pytest.raises(WaitTimeout) as failure:
        wait_for(
            lambda: kubectl.get("configmap", "settings")["data"],
            until=lambda data: data.get("mode") == "canary",
            what="configmap settings in canary mode",
            timeout=1,
        )
    message = str(failure.value)
    assert "configmap settings in canary mode" in message and '"mode": "shadow"' in message
