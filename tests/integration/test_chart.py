"""The chart against a real API server: it lints, installs into a namespace that enforces
Pod Security "restricted", and its ServiceAccount can do exactly what the operator needs
(checked with `kubectl auth can-i --as`, the server's own RBAC answer).

The operator pod is scheduled on a kwok fake node, so it is "Running" without a container:
these tests check objects, admission and authorization, not the operator's behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config as k8s_config

from flywheel_operator.kube.client import Kube
from tests.cluster import ControlPlane, Helm, Kubectl, wait_for
from tests.integration import test_operator_crash as crash

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "flywheel"
QUICKSTART = REPO_ROOT / "examples" / "quickstart"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        return f"{self.name}-flywheel"

    @property
    def user(self) -> str:
        """The operator's identity for impersonation."""
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"


def can_i(kubectl: Kubectl, release: Release, verb: str, resource: str, *where: str) -> bool:
    result = kubectl.run("auth", "can-i", verb, resource, f"--as={release.user}", *where,
                         check=False)  # fmt: skip
    answer = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert answer in ("yes", "no"), f"kubectl auth can-i: {result.stdout} {result.stderr}"
    return answer == "yes"


def access_review(
    kubectl: Kubectl, release: Release, verb: str, group: str, resource: str, namespace: str
) -> bool:
    """A SubjectAccessReview with an explicit API group: `kubectl auth can-i` cannot name
    the group of a resource the server does not serve (ray.io without KubeRay)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": release.user,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{release.namespace}"],
            "resourceAttributes": {
                "verb": verb, "group": group, "resource": resource, "namespace": namespace,
            },
        },
    }  # fmt: skip
    out = kubectl.run("create", "-f", "-", "-o", "json", input=json.dumps(review)).stdout
    return bool(json.loads(out)["status"].get("allowed"))


@pytest.fixture
def install(
    chart_crds_restored: None, helm: Helm, cluster_kubectl: Kubectl, namespace: str
) -> Iterator[Callable[..., Release]]:
    """helm install of the chart into the test's namespace (unique release names, since
    the ClusterRole and peering objects are cluster-scoped); uninstalled afterwards."""
    installed: list[Release] = []

    def _install(*args: str) -> Release:
        release = Release(f"fw{secrets.token_hex(3)}", namespace)
        helm.run("install", release.name, str(CHART), "--namespace", namespace,
                 "--wait", "--timeout", "120s", *args)  # fmt: skip
        installed.append(release)
        return release

    yield _install
    for release in installed:
        helm.run("uninstall", release.name, "--namespace", release.namespace, "--wait",
                 check=False)  # fmt: skip


@pytest.fixture
def restricted(cluster_kubectl: Kubectl, namespace: str) -> str:
    """The test namespace, enforcing Pod Security Standards "restricted"."""
    cluster_kubectl.run(
        "label", "namespace", namespace, "--overwrite",
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    return namespace


@pytest.fixture
def extra_namespaces(cluster_kubectl: Kubectl) -> Iterator[list[str]]:
    suffix = secrets.token_hex(3)
    names = [f"team-a-{suffix}", f"team-b-{suffix}"]
    for name in names:
        cluster_kubectl.run("create", "namespace", name)
    yield names
    for name in names:
        cluster_kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def test_helm_lint_strict(helm: Helm) -> None:
    for args in ([], ["--set", "watchNamespaces={a,b}"],
                 ["--set", "networkPolicy.enabled=true"]):  # fmt: skip
        out = helm.run("lint", "--strict", str(CHART), *args)
        assert "0 chart(s) failed" in out.stdout, out.stdout
        assert "[WARNING]" not in out.stdout and "[ERROR]" not in out.stdout, out.stdout


def test_install_runs_the_operator_under_restricted_pod_security(
    install: Callable[..., Release], restricted: str, kubectl: Kubectl, cluster_kubectl: Kubectl
) -> None:
    release = install("--set", "networkPolicy.enabled=true")
    deployment = kubectl.get("deployment", release.fullname)
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == release.fullname
    assert kubectl.exists("serviceaccount", release.fullname)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    # The ReplicaSet controller created the pod and PodSecurity admission let it in.
    pods = wait_for(
        lambda: kubectl.items("pod", "-l", f"app.kubernetes.io/instance={release.name}"),
        what=f"a pod of deployment {release.fullname} in {restricted}",
        timeout=60,
    )
    assert pods[0]["spec"]["serviceAccountName"] == release.fullname
    assert kubectl.exists("service", f"{release.fullname}-metrics")
    policy = kubectl.get("networkpolicy", release.fullname)["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pods[0]["metadata"]["labels"].items()
    assert cluster_kubectl.exists("clusterkopfpeering", release.fullname)
    for crd in ("modeldeployments.flywheel.dev", "clusterkopfpeerings.kopf.dev"):
        assert cluster_kubectl.exists("crd", crd), crd


def test_service_account_rbac_all_namespaces(
    install: Callable[..., Release], cluster_kubectl: Kubectl
) -> None:
    release = install()
    k = cluster_kubectl
    anywhere = ("-n", "some-user-namespace")
    assert can_i(k, release, "watch", "modeldeployments.flywheel.dev", "--all-namespaces")
    assert can_i(k, release, "patch", "trainingjobs.flywheel.dev/status", *anywhere)
    assert can_i(k, release, "create", "jobs.batch", *anywhere)
    assert can_i(k, release, "create", "trainingjobs.flywheel.dev", *anywhere)
    assert not can_i(k, release, "create", "datasets.flywheel.dev", *anywhere)
    assert access_review(k, release, "create", "ray.io", "rayjobs", "some-user-namespace")
    assert access_review(k, release, "patch", "ray.io", "rayservices", "some-user-namespace")
    assert not access_review(k, release, "create", "ray.io", "rayclusters", "some-user-namespace")
    assert can_i(k, release, "patch", f"clusterkopfpeerings.kopf.dev/{release.fullname}")
    assert can_i(k, release, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(k, release, "list", "secrets", "--all-namespaces")
    assert not can_i(k, release, "get", "secrets", *anywhere)
    assert not can_i(k, release, "create", "pods", *anywhere)
    assert not can_i(k, release, "delete", "namespaces")
    assert not can_i(k, release, "create", "clusterrolebindings.rbac.authorization.k8s.io")


def test_service_account_rbac_watch_namespaces(
    install: Callable[..., Release],
    cluster_kubectl: Kubectl,
    extra_namespaces: list[str],
    namespace: str,
) -> None:
    team_a, team_b = extra_namespaces
    release = install("--set", f"watchNamespaces={{{team_a},{team_b}}}")
    k = cluster_kubectl
    for ns in (team_a, team_b):
        assert can_i(k, release, "watch", "modeldeployments.flywheel.dev", "-n", ns)
        assert can_i(k, release, "create", "jobs.batch", "-n", ns)
        assert can_i(k, release, "patch", "kopfpeerings.kopf.dev", "-n", ns)
        assert not can_i(k, release, "list", "secrets", "-n", ns)
        assert k.in_namespace(ns).exists("kopfpeering", release.fullname)
    # Nothing outside the listed namespaces, and no cluster-wide access to the kinds.
    assert not can_i(k, release, "watch", "modeldeployments.flywheel.dev", "-n", namespace)
    assert not can_i(k, release, "watch", "modeldeployments.flywheel.dev", "--all-namespaces")
    assert not can_i(k, release, "create", "jobs.batch", "-n", "default")
    assert not can_i(k, release, "patch", "clusterkopfpeerings.kopf.dev")
    assert can_i(k, release, "list", "namespaces")
    assert not k.exists("clusterkopfpeering", release.fullname)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token_kubeconfig(kubectl: Kubectl, release: Release, path: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount (a bound token)."""
    token = kubectl.run(
        "create", "token", release.fullname, "--namespace", release.namespace,
        "--duration=1h",
    ).stdout.strip()  # fmt: skip
    admin = kubectl.json("config", "view", "--raw", "--minify")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {
            "cluster": admin["clusters"][0]["name"], "user": "operator"}}],
        "current-context": "operator",
    }  # fmt: skip
    path.write_text(json.dumps(config))
    return path


def conditions(kubectl: Kubectl, ref: str) -> list[dict[str, Any]]:
    return list(kubectl.get(ref).get("status", {}).get("conditions", []))


def test_operator_runs_with_only_the_charts_rbac(
    flywheel_crds: list[str],
    install: Callable[..., Release],
    cluster_kubectl: Kubectl,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The operator, started with the args and env of the chart's Deployment and the
    chart's ServiceAccount token, joins its peering and reconciles the quickstart: no
    request of it is forbidden. (The session's CRDs are there before the install, so the
    install's clean-up leaves them, with the objects made here, as they were.)"""
    release = install("--set", f"watchNamespaces={{{namespace}}}")
    (container,) = kubectl.get("deployment", release.fullname)["spec"]["template"]["spec"][
        "containers"
    ]
    health, metrics = free_port(), free_port()
    args = [
        f"--liveness=http://127.0.0.1:{health}/healthz" if a.startswith("--liveness=")
        else f"--metrics-port={metrics}" if a.startswith("--metrics-port=")
        else a
        for a in container["args"]
    ] + ["--metrics-address=127.0.0.1"]  # fmt: skip
    assert f"--namespace={namespace}" in args and f"--peering={release.fullname}" in args
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env |= {
        "POD_ID": f"{release.fullname}-test",
        "KUBECONFIG": str(token_kubeconfig(cluster_kubectl, release, tmp_path / "kubeconfig")),
        "FLYWHEEL_RESYNC_SECONDS": "2",
    }
    log = tmp_path / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flywheel_operator", *args],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )  # fmt: skip
    try:
        wait_for(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2).status,
            lambda status: status == 200,
            what=f"the operator's liveness endpoint (log: {log})",
            timeout=60,
        )
        # The whole quickstart: every handler runs at least its first steps (status,
        # events, children of the Datasets) under the chart's RBAC.
        objects = [
            doc
            for path in sorted(QUICKSTART.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc
        ]
        kubectl.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        jobs = wait_for(
            lambda: kubectl.items("job"),
            lambda items: len(items) == 2,
            what="the ingest Jobs of both Datasets",
            timeout=60,
        )
        assert {j["metadata"]["ownerReferences"][0]["kind"] for j in jobs} == {"Dataset"}
        for obj in objects:
            ref = f"{obj['kind'].lower()}/{obj['metadata']['name']}"
            wait_for(partial(conditions, kubectl, ref), what=f"conditions on {ref}", timeout=60)
        peering = kubectl.get("kopfpeering", release.fullname)
        assert peering.get("status"), f"the operator did not join its peering: {peering}"
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)  # reaped: no process left running behind the test
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        print(f"operator log tail:\n{tail}")  # shown by pytest when the test fails
    text = log.read_text(errors="replace")
    forbidden = [line for line in text.splitlines() if "forbidden" in line.lower()]
    assert not forbidden, "\n".join(forbidden[:20])


SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors",
                  "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}  # fmt: skip


@pytest.fixture
def prometheus_operator_crd(cluster_kubectl: Kubectl) -> Iterator[None]:
    """A stand-in for the Prometheus Operator's ServiceMonitor CRD (schema left open)."""
    existed = cluster_kubectl.exists("crd", "servicemonitors.monitoring.coreos.com")
    if not existed:
        cluster_kubectl.apply(json.dumps(SERVICE_MONITOR_CRD))
        cluster_kubectl.wait(
            "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com"
        )
    yield
    if not existed:
        cluster_kubectl.delete("crd", "servicemonitors.monitoring.coreos.com", wait=True)


def test_service_monitor_installs_where_the_prometheus_operator_is(
    prometheus_operator_crd: None,  # first: removed only after the release is uninstalled
    install: Callable[..., Release],
    kubectl: Kubectl,
) -> None:
    release = install("--set", "monitoring.serviceMonitor.enabled=true")
    monitor = kubectl.get("servicemonitor", release.fullname)
    service = kubectl.get("service", f"{release.fullname}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_service_monitor_without_the_prometheus_operator_is_refused(
    helm: Helm, cluster_kubectl: Kubectl, namespace: str
) -> None:
    if cluster_kubectl.exists("crd", "servicemonitors.monitoring.coreos.com"):
        pytest.skip("this cluster has the ServiceMonitor CRD")
    result = helm.run(
        "install", f"fw{secrets.token_hex(3)}", str(CHART), "--namespace", namespace,
        "--set", "monitoring.serviceMonitor.enabled=true", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "needs the Prometheus Operator CRDs" in result.stderr, result.stderr


def test_every_kind_reconciles_to_its_end_with_only_the_charts_rbac(
    flywheel_crds: list[str],
    install: Callable[..., Release],
    control_plane: ControlPlane,
    cluster_kubectl: Kubectl,
    kubectl: Kubectl,
    namespace: str,
    kuberay_crds: None,
    tmp_path: Path,
) -> None:
    """The reconciles of all five kinds call the API with the chart's ServiceAccount token
    only, through whole scenarios: ingests and materializations with their CronJobs, the
    TrainingJob's RayJob, a ModelDeployment's RayService and its Triton children, the
    DriftMonitor's retrain TrainingJob, spec updates and the prunes they cause. The world
    (KubeRay's status, the Pods' ends) is played as the admin, as the crash test plays it.
    No call is refused. (The operator process itself, its watches and its peering, runs
    under the same token in test_operator_runs_with_only_the_charts_rbac.)"""
    release = install("--set", f"watchNamespaces={{{namespace}}}")
    admin = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    as_operator = k8s_config.new_client_from_config(
        config_file=str(token_kubeconfig(cluster_kubectl, release, tmp_path / "kubeconfig"))
    )
    calls: list[tuple[str, str, int]] = []
    call_api = as_operator.call_api

    def recorded(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = call_api(method, url, *args, **kwargs)
        calls.append((method, url.split("?")[0], response.status))
        return response

    as_operator.call_api = recorded
    for ref, (scenario, spec) in crash.UPSTREAM.items():
        name = ref.split("/")[1]
        kubectl.apply(yaml.safe_dump(scenario.manifest(name, spec)))
        stage = dataclasses.replace(scenario.stages[0], spec=spec)
        crash.settle(admin, scenario, stage, namespace, name, lambda: Kube(as_operator))
    for key, scenario in crash.SCENARIOS.items():
        children, status, _ = crash.play(
            admin, kubectl, scenario, namespace, f"chain-{key}", crash.Budget(10**6), as_operator
        )
        assert children, key
        assert json.loads(status)["phase"] in scenario.stages[-1].settled, (key, status)

    refused = [c for c in calls if c[2] in (401, 403)]
    assert not refused, refused
    # Every kind of write the chain needs was made under the token, and allowed.
    writes = {(m, url.split("/namespaces/")[-1].split("/")[1]) for m, url, _ in calls
              if m != "GET" and "/namespaces/" in url}  # fmt: skip
    for expected in [
        ("PATCH", "jobs"), ("PATCH", "cronjobs"), ("DELETE", "jobs"), ("DELETE", "cronjobs"),
        ("PATCH", "rayjobs"), ("PATCH", "rayservices"),
        ("PATCH", "deployments"), ("PATCH", "services"), ("PATCH", "configmaps"),
        ("PATCH", "poddisruptionbudgets"),
        ("PATCH", "serviceaccounts"), ("PATCH", "roles"), ("PATCH", "rolebindings"),
        ("DELETE", "deployments"), ("DELETE", "services"), ("DELETE", "configmaps"),
        ("POST", "trainingjobs"), ("POST", "events"),
        *[("PATCH", kind) for kind in
          ("datasets", "featureviews", "trainingjobs", "modeldeployments", "driftmonitors")],
    ]:  # fmt: skip
        assert expected in writes, (expected, sorted(writes))
