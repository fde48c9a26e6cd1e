"""The Helm chart as `helm template` renders it: restricted pods, least-privilege RBAC in
both watch modes, the kopf peering objects, monitoring, and the values schema.

Needs the helm binary that `make k8s-tools` builds (or one on PATH), and fails without
it: rendering the chart is part of the suite.
tests/integration/test_chart.py installs the same chart into a real API server.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "flywheel"
VERSIONS_ENV = REPO_ROOT / "hack" / "k8s" / "versions.env"
NAMESPACE = "flywheel-system"
RELEASE = "fw"

Manifest = dict[str, Any]

FLYWHEEL_RESOURCES = {"datasets", "featureviews", "trainingjobs", "modeldeployments",
                      "driftmonitors"}  # fmt: skip
MODES = {
    "all-namespaces": [],
    "watch-namespaces": ["--set", "watchNamespaces={a,b}"],
    "monitoring": [
        "--set", "networkPolicy.enabled=true",
        "--set", "monitoring.serviceMonitor.enabled=true",
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
    ],
}  # fmt: skip


def _kubernetes_version() -> str | None:
    for line in VERSIONS_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "KUBERNETES_VERSION":
            return value.strip()
    return None


def find_helm() -> Path | None:
    """The helm that hack/k8s/build.sh builds, else any cached one, else helm on PATH."""
    cache = Path(os.environ.get("FLYWHEEL_CACHE") or Path.home() / ".cache" / "flywheel")
    version = _kubernetes_version()
    candidates = [cache / f"k8s-{version}" / "bin" / "helm"] if version else []
    candidates += sorted(cache.glob("k8s-*/bin/helm"), reverse=True)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("helm")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def helm_binary() -> Path:
    helm = find_helm()
    if helm is None:
        pytest.fail("helm not built yet: run `make k8s-tools` (hack/k8s/build.sh)", pytrace=False)
    return helm


def helm_template(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render(helm: Path, *args: str) -> list[Manifest]:
    result = helm_template(helm, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(MODES))
def rendered(request: pytest.FixtureRequest, helm_binary: Path) -> list[Manifest]:
    return render(helm_binary, *MODES[request.param])


@pytest.fixture(scope="module")
def by_mode(helm_binary: Path) -> dict[str, list[Manifest]]:
    return {mode: render(helm_binary, *args) for mode, args in MODES.items()}


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = of_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {[m['metadata']['name'] for m in found]}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for m in manifests:
        spec = m.get("spec", {})
        if m["kind"] == "Pod":
            yield m["metadata"]["name"], spec
        elif m["kind"] == "CronJob":
            yield m["metadata"]["name"], spec["jobTemplate"]["spec"]["template"]["spec"]
        elif "template" in spec and "spec" in spec["template"]:
            yield m["metadata"]["name"], spec["template"]["spec"]


def rules(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for m in manifests:
        if m["kind"] in ("Role", "ClusterRole"):
            for rule in m.get("rules", []):
                yield (
                    f"{m['kind']}/{m['metadata'].get('namespace', '')}/{m['metadata']['name']}",
                    rule,
                )


# --- pods --------------------------------------------------------------------------------


def test_every_pod_meets_pod_security_restricted(rendered: list[Manifest]) -> None:
    specs = list(pod_specs(rendered))
    assert specs, "no pod templates rendered"
    for name, spec in specs:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] == 10001, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, name
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"] + spec.get("initContainers", []):
            sc = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged") is not True, where
            assert sc.get("runAsNonRoot", True) is True, where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: no emptyDir at /tmp"


def test_operator_deployment(by_mode: dict[str, list[Manifest]]) -> None:
    deployment = one(by_mode["all-namespaces"], "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert (
        pod["serviceAccountName"]
        == one(by_mode["all-namespaces"], "ServiceAccount")["metadata"]["name"]
    )
    (container,) = pod["containers"]
    assert container["image"] == "flywheel/operator:0.1.0"
    assert container["args"] == [
        "--all-namespaces",
        "--peering=fw-flywheel",
        "--liveness=http://0.0.0.0:8081/healthz",
        "--metrics-port=8080",
    ]
    probe = container["livenessProbe"]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert probe == {"path": "/healthz", "port": "health"}
    assert ports == {"metrics": 8080, "health": 8081}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FLYWHEEL_RUNTIME_IMAGE"] == "flywheel/runtime:0.1.0"
    assert env["FLYWHEEL_ARTIFACT_ROOT"] == "pvc://flywheel-artifacts/"
    assert env["FLYWHEEL_RESYNC_SECONDS"] == "600"
    assert env["FLYWHEEL_IMAGE_PULL_POLICY"] == "IfNotPresent"
    assert "FLYWHEEL_SERVICE_ACCOUNT" not in env
    assert "FLYWHEEL_RAY_IMAGE" not in env and "FLYWHEEL_RAY_VERSION" not in env
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "192Mi"}


def test_watch_namespaces_become_namespace_args(by_mode: dict[str, list[Manifest]]) -> None:
    (container,) = one(by_mode["watch-namespaces"], "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["args"][:2] == ["--namespace=a", "--namespace=b"]
    assert "--all-namespaces" not in container["args"]


def test_values_reach_the_operator_env(helm_binary: Path) -> None:
    manifests = render(
        helm_binary,
        "--set", "artifactRoot=pvc://models/flywheel",
        "--set", "runtimeImage.repository=registry.example/flywheel-runtime",
        "--set", "runtimeImage.tag=1.2.3",
        "--set", "runtimeServiceAccount=flywheel-runtime",
        "--set", "resyncSeconds=15",
        "--set", "image.tag=dev",
        "--set", "runtimeImage.pullPolicy=Never",
        "--set", "ray.image=rayproject/ray:2.60.0-py311-gpu",
        "--set", "ray.version=2.60.0",
    )  # fmt: skip
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == "flywheel/operator:dev"
    assert env["FLYWHEEL_ARTIFACT_ROOT"] == "pvc://models/flywheel"
    assert env["FLYWHEEL_RUNTIME_IMAGE"] == "registry.example/flywheel-runtime:1.2.3"
    assert env["FLYWHEEL_SERVICE_ACCOUNT"] == "flywheel-runtime"
    assert env["FLYWHEEL_RESYNC_SECONDS"] == "15"
    assert env["FLYWHEEL_IMAGE_PULL_POLICY"] == "Never"
    assert env["FLYWHEEL_RAY_IMAGE"] == "rayproject/ray:2.60.0-py311-gpu"
    assert env["FLYWHEEL_RAY_VERSION"] == "2.60.0"


# --- RBAC --------------------------------------------------------------------------------


def test_rbac_has_no_wildcards(rendered: list[Manifest]) -> None:
    found = list(rules(rendered))
    assert found
    for where, rule in found:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(field, [])), f"{where}: {rule}"


def test_rbac_never_reads_secrets(rendered: list[Manifest]) -> None:
    # Runtime pods mount Secrets; the operator needs no access to them at all.
    for where, rule in rules(rendered):
        assert "secrets" not in rule["resources"], f"{where} grants {rule['verbs']} on secrets"


def granted(rule_list: list[Manifest], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rule_list:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_all_namespaces_uses_one_cluster_role(by_mode: dict[str, list[Manifest]]) -> None:
    manifests = by_mode["all-namespaces"]
    assert not of_kind(manifests, "Role") and not of_kind(manifests, "RoleBinding")
    role = one(manifests, "ClusterRole")
    binding = one(manifests, "ClusterRoleBinding")
    sa = one(manifests, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    r = role["rules"]
    for resource in FLYWHEEL_RESOURCES:
        reconcile = {"get", "list", "watch", "patch", "update"}
        # Only TrainingJobs are created by the operator (a DriftMonitor's retrain).
        expected = reconcile | {"create"} if resource == "trainingjobs" else reconcile
        assert granted(r, "flywheel.dev", resource) == expected, resource
        assert granted(r, "flywheel.dev", f"{resource}/status") == {"get", "patch", "update"}
        assert granted(r, "flywheel.dev", f"{resource}/finalizers") == {"update"}
    crud = {"get", "list", "watch", "create", "patch", "update", "delete"}
    for group, resource in [("batch", "jobs"), ("batch", "cronjobs"), ("apps", "deployments"),
                            ("", "services"), ("", "configmaps"), ("ray.io", "rayjobs"),
                            ("ray.io", "rayservices"),
                            ("policy", "poddisruptionbudgets")]:  # fmt: skip
        assert granted(r, group, resource) == crud, (group, resource)
    assert granted(r, "", "pods") == {"get", "list", "watch"}
    assert granted(r, "", "events") == {"create", "patch"}
    assert granted(r, "events.k8s.io", "events") == {"create", "patch"}
    assert granted(r, "ray.io", "rayjobs/status") == {"get"}
    assert granted(r, "apiextensions.k8s.io", "customresourcedefinitions") == {
        "get", "list", "watch"
    }  # fmt: skip
    assert granted(r, "", "namespaces") == {"list", "watch"}
    assert granted(r, "kopf.dev", "clusterkopfpeerings") == {"get", "list", "watch", "patch"}
    assert granted(r, "kopf.dev", "kopfpeerings") == set()
    peering = one(manifests, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "fw-flywheel"
    assert not of_kind(manifests, "KopfPeering")


def test_watch_namespaces_uses_roles(by_mode: dict[str, list[Manifest]]) -> None:
    manifests = by_mode["watch-namespaces"]
    roles = {m["metadata"]["namespace"]: m for m in of_kind(manifests, "Role")}
    bindings = {m["metadata"]["namespace"]: m for m in of_kind(manifests, "RoleBinding")}
    assert set(roles) == set(bindings) == {"a", "b"}
    for ns, role in roles.items():
        assert granted(role["rules"], "flywheel.dev", "modeldeployments") >= {"watch", "patch"}
        assert "create" in granted(role["rules"], "batch", "jobs")
        assert granted(role["rules"], "kopf.dev", "kopfpeerings") == {
            "get", "list", "watch", "patch"
        }  # fmt: skip
        assert bindings[ns]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
            "name": role["metadata"]["name"],
        }  # fmt: skip
        assert bindings[ns]["subjects"][0]["namespace"] == NAMESPACE
    # The cluster-wide part shrinks to discovery of CRDs and namespace scanning.
    cluster_rules = one(manifests, "ClusterRole")["rules"]
    assert {(tuple(r["apiGroups"]), tuple(r["resources"])) for r in cluster_rules} == {
        (("apiextensions.k8s.io",), ("customresourcedefinitions",)),
        (("",), ("namespaces",)),
    }
    for rule in cluster_rules:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
    peerings = of_kind(manifests, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert not of_kind(manifests, "ClusterKopfPeering")


def test_rbac_can_be_left_to_the_cluster_admin(helm_binary: Path) -> None:
    manifests = render(helm_binary, "--set", "rbac.create=false",
                       "--set", "serviceAccount.create=false",
                       "--set", "serviceAccount.name=ops")  # fmt: skip
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
                        "ServiceAccount"}  # fmt: skip
    assert one(manifests, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


# --- metrics, monitoring, network --------------------------------------------------------


def test_metrics_service(by_mode: dict[str, list[Manifest]]) -> None:
    manifests = by_mode["all-namespaces"]
    service = one(manifests, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not of_kind(manifests, "ServiceMonitor") and not of_kind(manifests, "NetworkPolicy")


def test_service_monitor_scrapes_the_metrics_service(by_mode: dict[str, list[Manifest]]) -> None:
    manifests = by_mode["monitoring"]
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_network_policy(by_mode: dict[str, list[Manifest]]) -> None:
    manifests = by_mode["monitoring"]
    policy = one(manifests, "NetworkPolicy")["spec"]
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {"metrics", "health"}
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {(443, "TCP"), (6443, "TCP"), (53, "UDP"), (53, "TCP"), (8265, "TCP")}
    # The Ray dashboards, where running TrainingJobs' progress is read: Ray head pods only.
    [ray] = [rule for rule in policy["egress"] if rule["ports"][0]["port"] == 8265]
    assert ray["to"] == [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"ray.io/node-type": "head"}}}
    ]


def test_service_monitor_without_prometheus_operator_fails_clearly(helm_binary: Path) -> None:
    result = helm_template(helm_binary, "--set", "monitoring.serviceMonitor.enabled=true")
    assert result.returncode != 0
    assert "needs the Prometheus Operator CRDs" in result.stderr


# --- CRDs --------------------------------------------------------------------------------


def test_chart_ships_flywheel_and_kopf_peering_crds(helm_binary: Path) -> None:
    crds = of_kind(render(helm_binary, "--include-crds"), "CustomResourceDefinition")
    names = {c["metadata"]["name"] for c in crds}
    assert {f"{r}.flywheel.dev" for r in FLYWHEEL_RESOURCES} <= names
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names
    scopes = {c["metadata"]["name"]: c["spec"]["scope"] for c in crds}
    assert scopes["clusterkopfpeerings.kopf.dev"] == "Cluster"
    assert scopes["kopfpeerings.kopf.dev"] == "Namespaced"


def test_chart_crds_are_the_generated_ones() -> None:
    chart_crds = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    repo_crds = {p.name: p.read_text() for p in (REPO_ROOT / "crds").glob("*.yaml")}
    assert chart_crds == repo_crds


# --- values schema -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicaCount=-1"], "/replicaCount"),
        (["--set", "replicaCount=2"], "/replicaCount"),
        (["--set", "replicas=1"], "additional properties 'replicas' not allowed"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0"),
        (["--set", "watchNamespaces={a,a}"], "/watchNamespaces"),
        (["--set", "artifactRoot=/data"], "/artifactRoot"),
        (["--set", "artifactRoot=s3://models/flywheel"], "/artifactRoot"),
        (["--set", "resyncSeconds=0"], "/resyncSeconds"),
        (["--set", "metrics.port=70000"], "/metrics/port"),
        (["--set", "ray.version=latest"], "/ray/version"),
        (["--set", "networkPolicy.enable=true"], "additional properties 'enable' not allowed"),
    ],
)
def test_schema_rejects_bad_values(helm_binary: Path, args: list[str], message: str) -> None:
    result = helm_template(helm_binary, *args)
    assert result.returncode != 0, f"{args} rendered"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


def test_every_operator_setting_can_be_set_from_the_chart() -> None:
    """The operator reads its settings in one module; each variable has a place in the
    Deployment template, so a new setting cannot silently miss the chart."""
    settings = (REPO_ROOT / "operator" / "src" / "flywheel_operator" / "settings.py").read_text()
    template = (CHART / "templates" / "deployment.yaml").read_text()
    names = set(re.findall(r"\bFLYWHEEL_[A-Z_]+\b", settings))
    assert names, "no FLYWHEEL_* settings found"
    missing = sorted(n for n in names if f"name: {n}\n" not in template)
    assert not missing, f"settings without a chart value: {missing}"
