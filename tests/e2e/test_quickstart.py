"""The quickstart on a kind cluster, as a user runs it: apply the manifests and wait for
each kind's top condition. The steps depend on each other and run in file order.

Needs `make kind-up deploy` (both images loaded, KubeRay and the chart installed).
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.e2e import support

pytestmark = pytest.mark.kind

MINUTE = 60
# Open Inference Protocol v2 inference path of the router, below the ModelDeployment's
# status.url (for Ray Serve: http://churn-serve-serve-svc.<ns>.svc:8000).
INFER_PATH = "/v2/models/churn/infer"


@pytest.fixture(scope="module")
def quickstart(cluster: support.Cluster, e2e_namespace: str, quickstart_data: str) -> str:
    """Applies every quickstart manifest (rewritten for the cluster) in the namespace."""
    docs = []
    for path in sorted(support.QUICKSTART.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    manifests = support.in_cluster_quickstart(docs)
    cluster.run(
        "apply", "--server-side", "--field-manager=flywheel-e2e", "-f", "-",
        namespace=e2e_namespace, input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                   "items": manifests}),
    )  # fmt: skip
    return e2e_namespace


def test_operator_is_running(cluster: support.Cluster) -> None:
    namespace = os.environ.get("FLYWHEEL_E2E_OPERATOR_NAMESPACE", "flywheel-system")
    cluster.run("rollout", "status", "deployment/flywheel", "--timeout=120s",
                namespace=namespace, timeout=150)  # fmt: skip


@pytest.mark.timeout(15 * MINUTE)
def test_datasets_become_ready(cluster: support.Cluster, quickstart: str) -> None:
    cluster.wait("Ready", ["ds/customer-events", "ds/churn-labels"], quickstart, 10 * MINUTE)


@pytest.mark.timeout(15 * MINUTE)
def test_featureview_becomes_ready(cluster: support.Cluster, quickstart: str) -> None:
    cluster.wait("Ready", ["fv/customer-features"], quickstart, 10 * MINUTE)


@pytest.mark.timeout(45 * MINUTE)
def test_trainingjobs_succeed(cluster: support.Cluster, quickstart: str) -> None:
    cluster.wait("Succeeded", ["tj/churn-logistic", "tj/churn-mlp"], quickstart, 40 * MINUTE)


@pytest.mark.timeout(30 * MINUTE)
def test_modeldeployment_canary_is_promoted(
    cluster: support.Cluster, quickstart: str, runtime_image: str
) -> None:
    cluster.wait("Ready", ["md/churn"], quickstart, 15 * MINUTE)
    md = json.loads(cluster.run("get", "md/churn", "-o", "json", namespace=quickstart).stdout)
    url = os.environ.get("FLYWHEEL_E2E_SERVE_URL") or md["status"]["url"].rstrip("/") + INFER_PATH
    # The analysis never promotes without data: send traffic while the canary steps run.
    job = support.traffic_job("churn-traffic", runtime_image, url, seconds=15 * MINUTE)
    cluster.run("apply", "-f", "-", namespace=quickstart, input=json.dumps(job))
    try:
        cluster.wait("Promoted", ["md/churn"], quickstart, 15 * MINUTE)
    finally:
        cluster.run("delete", "job", "churn-traffic", "--wait=false", "--ignore-not-found",
                    namespace=quickstart, check=False)  # fmt: skip
    md = json.loads(cluster.run("get", "md/churn", "-o", "json", namespace=quickstart).stdout)
    conditions = {c["type"]: c["status"] for c in md["status"]["conditions"]}
    assert conditions.get("RolledBack") != "True", md["status"]
    # The printer columns show the rollout at a glance.
    table = cluster.run("get", "md/churn", namespace=quickstart).stdout
    assert "churn" in table, table


@pytest.mark.timeout(15 * MINUTE)
def test_driftmonitor_becomes_ready(cluster: support.Cluster, quickstart: str) -> None:
    cluster.wait("Ready", ["dm/churn-drift"], quickstart, 10 * MINUTE)
