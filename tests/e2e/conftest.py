"""kind e2e fixtures. Every test here is marked `kind` and runs only against a reachable
cluster: the kind cluster `flywheel` (context kind-flywheel, `make kind-up deploy`) or the
context in FLYWHEEL_E2E_CONTEXT. Unreachable: skipped, unless FLYWHEEL_E2E=1 demands it.

Collecting needs no cluster: CI runs `pytest --collect-only tests/e2e`.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.e2e import support  # noqa: E402

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.kind)


@pytest.fixture(scope="session")
def cluster() -> support.Cluster:
    demanded = os.environ.get("FLYWHEEL_E2E") == "1"
    context = os.environ.get("FLYWHEEL_E2E_CONTEXT", "kind-flywheel")
    kubectl = support.find_kubectl()
    problem = None
    if kubectl is None:
        problem = "kubectl not found on PATH or in .venv/bin (make dev)"
    else:
        ok, detail = support.Cluster(kubectl, context).reachable()
        if not ok:
            problem = f"context {context} not reachable ({detail[:300]}); make kind-up deploy"
    if problem:
        if demanded:
            pytest.fail(f"FLYWHEEL_E2E=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    assert kubectl is not None
    return support.Cluster(kubectl, context)


@pytest.fixture(scope="session")
def runtime_image() -> str:
    """The runtime image loaded into kind by `make deploy` (also used by helper pods)."""
    return os.environ.get("FLYWHEEL_E2E_RUNTIME_IMAGE", "flywheel/runtime:dev")


@pytest.fixture(scope="module")
def e2e_namespace(cluster: support.Cluster) -> Iterator[str]:
    """A fresh namespace; kept after the run with FLYWHEEL_E2E_KEEP=1 for debugging."""
    name = f"flywheel-e2e-{secrets.token_hex(3)}"
    cluster.run("create", "namespace", name)
    yield name
    if os.environ.get("FLYWHEEL_E2E_KEEP") != "1":
        cluster.run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture(scope="module")
def quickstart_data(cluster: support.Cluster, e2e_namespace: str, runtime_image: str) -> str:
    """The artifact PVC with the quickstart's CSVs under quickstart/; returns the prefix."""
    return support.load_quickstart_data(cluster, e2e_namespace, runtime_image, sys.executable)
