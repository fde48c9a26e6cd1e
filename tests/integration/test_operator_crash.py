"""A crash after any API write of a reconcile is repaired by the next reconcile.

For every k, a reconcile is stopped right after its k-th write (as if the process was
killed there), then a new operator (a fresh client) reconciles again. The end state must
equal that of a reconcile that never crashed, with no duplicate children.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import config as k8s_config

from flywheel_operator import labels
from flywheel_operator.handlers import dataset, modeldeployment
from flywheel_operator.handlers.reconciliation import Context
from flywheel_operator.kube.client import Kube
from flywheel_operator.settings import Settings
from tests.cluster import ControlPlane, Kubectl
from tests.integration.test_operator import quickstart

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CHILD_KINDS = ("Job", "CronJob", "Deployment", "Service", "ConfigMap")
# Where the reconciles below end: the ingest Job done (kwok writes no result, so the
# Dataset fails), the deployment serving its canary.
DONE_PHASES = ("Failed", "Ready", "Progressing")


class Killed(BaseException):
    """The process died: nothing after this point of the reconcile happens."""


class KilledAfter(Kube):
    """A client whose process dies right after its k-th write."""

    def __init__(self, api_client: Any, k: int) -> None:
        super().__init__(api_client)
        self.k = k

    def _write(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if self.writes >= self.k:
            raise Killed(f"killed after write {self.k}")
        return super()._write(method, url, **kwargs)


Reconcile = Callable[[Context, dict[str, Any]], None]


def end_state(kube: Kube, ns: str, kind: str, name: str) -> tuple[list[tuple[str, str]], str]:
    """Children (kind, name with the owner's name masked) and the status, masked likewise."""
    selector = {labels.owner_label(kind): name}
    children = sorted(
        (k, item["metadata"]["name"].replace(name, "OWNER"))
        for k in CHILD_KINDS
        for item in kube.select(k, ns, selector)
    )
    status = (kube.get(kind, ns, name) or {}).get("status", {})
    return children, json.dumps(status, sort_keys=True).replace(name, "OWNER")


def run(kube: Kube, reconcile: Reconcile, ns: str, kind: str, name: str) -> None:
    body = kube.get(kind, ns, name)
    assert body is not None
    settings = Settings(artifact_root="file:///var/lib/flywheel/")  # no PVC to wait for
    reconcile(Context(kube, settings, clock=lambda: T0), body)


def settle(api_client: Any, reconcile: Reconcile, ns: str, kind: str, name: str) -> Any:
    """Reconcile until the work is done (kwok finishes Pods meanwhile) and the end state
    stops changing."""
    seen: list[Any] = []
    for _ in range(120):
        kube = Kube(api_client)
        run(kube, reconcile, ns, kind, name)
        seen.append(end_state(kube, ns, kind, name))
        status = json.loads(seen[-1][1])
        if status.get("phase") in DONE_PHASES and len(seen) >= 2 and seen[-1] == seen[-2]:
            return seen[-1]
        time.sleep(0.5)
    raise AssertionError(f"{kind}/{name} never settled; last: {seen[-1]}")


@pytest.mark.parametrize(
    ("kind", "reconcile", "manifest"),
    [
        ("Dataset", dataset.reconcile, lambda: quickstart("Dataset", "churn-labels")),
        (
            "ModelDeployment",
            modeldeployment.reconcile,
            lambda: {
                **quickstart("ModelDeployment", "churn"),
                "spec": {
                    "backend": "triton",
                    "stable": {"modelName": "churn", "version": "v1"},
                    "candidate": {"modelName": "churn", "version": "v2"},
                    "rollout": {"strategy": "canary", "canary": {"steps": [{"weight": 20}]}},
                },
            },
        ),
    ],
    ids=["dataset", "modeldeployment-triton"],
)
def test_killed_after_every_write_then_restarted(
    control_plane: ControlPlane,
    flywheel_crds: list[str],
    kubectl: Kubectl,
    namespace: str,
    kind: str,
    reconcile: Reconcile,
    manifest: Callable[[], dict[str, Any]],
) -> None:
    kubeconfig = str(control_plane.kubeconfig)
    api_client = k8s_config.new_client_from_config(config_file=kubeconfig)

    def create(name: str) -> None:
        doc = manifest()
        doc["metadata"] = {"name": name}
        kubectl.apply(yaml.safe_dump(doc))

    create("clean")
    first = Kube(api_client)
    run(first, reconcile, namespace, kind, "clean")
    writes = first.writes  # of the first reconcile: children, status, an event
    assert writes >= 3
    expected = settle(api_client, reconcile, namespace, kind, "clean")
    assert expected[0], "children were created"

    for k in range(writes):
        name = f"killed-{k}"
        create(name)
        with pytest.raises(Killed):
            run(KilledAfter(api_client, k), reconcile, namespace, kind, name)
        assert settle(api_client, reconcile, namespace, kind, name) == expected, f"killed after {k}"
