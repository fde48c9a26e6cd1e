"""Integration fixtures: a real local control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok fake nodes) started once per session.

Set FLYWHEEL_TEST_CLUSTER_DIR to the workdir of a cluster started with `make cluster-up`
(e.g. `.cluster`) to reuse it instead of starting one; it is then left running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import sys
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # tests/cluster is imported as tests.cluster
    sys.path.insert(0, str(REPO_ROOT))

from tests.cluster import (  # noqa: E402
    CHART_CRD_NAMES,
    ClusterError,
    ControlPlane,
    Helm,
    Kubectl,
    ToolsMissingError,
    crds_restored,
    find_tools,
    kuberay,
    wait_for,
)
from tests.cluster.kubelet import ARTIFACT_CLAIM, Node  # noqa: E402

HERE = Path(__file__).resolve().parent
CRDS_DIR = REPO_ROOT / "crds"

# Clusters started by this session, for the log tails in failure reports.
_STARTED: list[ControlPlane] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _STARTED and HERE in item.path.parents:
        report.sections.append(("control plane logs (tails)", _STARTED[0].log_tails()))
    return report


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's cluster. Missing binaries fail loudly: CI runs these tests."""
    try:
        tools = find_tools()
    except ToolsMissingError as e:
        pytest.fail(str(e), pytrace=False)

    reuse = os.environ.get("FLYWHEEL_TEST_CLUSTER_DIR")
    if reuse:
        cp = ControlPlane(Path(reuse), tools=tools)
        if not cp.running():
            pytest.fail(f"FLYWHEEL_TEST_CLUSTER_DIR={reuse}: no running cluster there "
                        "(make cluster-up)", pytrace=False)  # fmt: skip
        yield cp
        return

    with _session_workdir() as workdir:
        cp = ControlPlane(workdir, tools=tools, tie_to_parent=True)
        try:
            cp.up(timeout=120)
        except ClusterError as e:
            pytest.fail(f"local control plane did not start:\n{e}", pytrace=False)
        _STARTED.append(cp)
        try:
            yield cp
        finally:
            cp.down(keep_logs=True)  # logs stay in .cluster/pytest-*/logs
            _STARTED.remove(cp)


@contextlib.contextmanager
def _session_workdir() -> Iterator[Path]:
    """.cluster/pytest-<worker>, locked for the session; a concurrent session in the same
    checkout gets .cluster/pytest-<worker>-<pid> instead of stopping this one's cluster."""
    base = REPO_ROOT / ".cluster"
    base.mkdir(exist_ok=True)
    name = f"pytest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    for old in base.glob(f"{name}-*"):  # left by concurrent sessions that have ended
        pid = old.name.rsplit("-", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    with (base / f"{name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield base / f"{name}-{os.getpid()}"
            return
        yield base / name


@pytest.fixture(scope="session")
def cluster_kubectl(control_plane: ControlPlane) -> Kubectl:
    """kubectl as the cluster admin, no default namespace."""
    tools = control_plane.tools
    return Kubectl(tools.kubectl, control_plane.kubeconfig, env={"PATH": tools.path_env()})


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    tools = control_plane.tools
    home = tmp_path_factory.mktemp("helm")
    # Keep helm's cache/config/data out of the user's home.
    env = {
        "PATH": tools.path_env(),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return Helm(tools.helm, control_plane.kubeconfig, env=env)


def _namespace_name(node_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster_kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for finalization)."""
    name = _namespace_name(request.node.name)
    cluster_kubectl.run("create", "namespace", name)
    # Pods are rejected until the serviceaccount controller has made `default`.
    wait_for(
        lambda: cluster_kubectl.in_namespace(name).exists("serviceaccount", "default"),
        what=f"serviceaccount default in namespace {name}",
        timeout=30,
    )
    yield name
    cluster_kubectl.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def kubectl(cluster_kubectl: Kubectl, namespace: str) -> Kubectl:
    """kubectl bound to the test's namespace."""
    return cluster_kubectl.in_namespace(namespace)


@pytest.fixture
def node(cluster_kubectl: Kubectl, namespace: str) -> Iterator[Node]:
    """A node-local directory as the volume of the claim ARTIFACT_CLAIM, bound in the
    namespace: where the Pods tests.cluster.kubelet runs read and write the artifacts."""
    node = Node.create()
    pv = f"{namespace}-{ARTIFACT_CLAIM}"[:63]
    cluster_kubectl.create(json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "", "hostPath": {"path": str(node.claim(ARTIFACT_CLAIM))},
            "claimRef": {"namespace": namespace, "name": ARTIFACT_CLAIM},
        },
    }))  # fmt: skip
    cluster_kubectl.in_namespace(namespace).create(json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": ARTIFACT_CLAIM},
        "spec": {
            "accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }))  # fmt: skip
    try:
        yield node
    finally:
        cluster_kubectl.delete("pv", pv, wait=False)  # cluster-wide: never left behind
        node.remove()


@pytest.fixture(scope="session")
def flywheel_crds(cluster_kubectl: Kubectl) -> list[str]:
    """Apply crds/*.yaml (server-side, as a user would) and wait until Established.

    Returns the CRD names.
    """
    files = sorted(CRDS_DIR.glob("*.yaml"))
    if not files:
        pytest.fail(f"no CRDs in {CRDS_DIR}", pytrace=False)
    names: list[str] = []
    for path in files:
        out = cluster_kubectl.apply(path, extra=["-o", "name"]).stdout.split()
        names += [n.split("/", 1)[1] for n in out if n.startswith("customresourcedefinition")]
    for name in names:
        cluster_kubectl.wait("--for=condition=Established", f"crd/{name}", timeout=60)
    return names


@pytest.fixture
def chart_crds_restored(cluster_kubectl: Kubectl) -> Iterator[None]:
    """Helm leaves the CRDs of an uninstalled chart behind: put them back as they were."""
    with crds_restored(cluster_kubectl, CHART_CRD_NAMES):
        yield


@pytest.fixture
def peering_crds_absent(chart_crds_restored: None, cluster_kubectl: Kubectl) -> list[str]:
    """Without kopf's peering CRDs, so that a test sees the chart install them. (Deleting
    flywheel's would wait for every object of the five kinds left by other tests.)"""
    names = [n for n in CHART_CRD_NAMES if n.endswith(".kopf.dev")]
    cluster_kubectl.delete("crd", *names)
    return names


@pytest.fixture(scope="session")
def kuberay_crds(cluster_kubectl: Kubectl) -> Iterator[None]:
    """KubeRay's own CRDs, installed once for the session (3 MB of schema: the API server
    takes seconds over each install), then removed as they were."""
    with crds_restored(cluster_kubectl, kuberay.CRD_NAMES):
        try:
            kuberay.install(cluster_kubectl)
        except ToolsMissingError as e:
            pytest.fail(str(e), pytrace=False)
        yield


@pytest.fixture
def no_kuberay_crds(cluster_kubectl: Kubectl) -> Iterator[None]:
    """No KubeRay CRDs for the test; afterwards the cluster is as it was."""
    with crds_restored(cluster_kubectl, kuberay.CRD_NAMES):
        cluster_kubectl.delete("crd", *kuberay.CRD_NAMES)
        yield
