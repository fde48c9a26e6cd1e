"""A crash after any API write of a reconcile is repaired by the next reconcile.

For every k, the reconciles of one process are stopped right after its k-th write, counted
over every reconcile on the way to the end state (as if the process was killed there),
then a new operator (a fresh client) reconciles again. The end state must
equal that of a reconcile that never crashed, with no duplicate children.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
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


class Budget:
    """Writes left before the process dies, shared by the reconciles of one process."""

    def __init__(self, writes: int) -> None:
        self.left = writes


class KilledAfter(Kube):
    """A client whose process dies once its budget of writes is spent."""

    def __init__(self, api_client: Any, budget: Budget) -> None:
        super().__init__(api_client)
        self.budget = budget

    def _write(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if self.budget.left <= 0:
            raise Killed("killed")
        self.budget.left -= 1
        return super()._write(method, url, **kwargs)


def killed_by(api_client: Any, budget: Budget) -> Callable[[], Kube]:
    return lambda: KilledAfter(api_client, budget)


Reconcile = Callable[[Context, dict[str, Any]], None]


EndState = tuple[list[tuple[str, str]], str, list[str]]


def end_state(kube: Kube, ns: str, kind: str, name: str) -> EndState:
    """Children (kind, name with the owner's name masked), the status, masked likewise,
    and the Event announcing the phase the object is in. (Earlier Events depend on what
    each reconcile happened to see: a restarted one may never pass a phase.)"""
    selector = {labels.owner_label(kind): name}
    children = sorted(
        (k, item["metadata"]["name"].replace(name, "OWNER"))
        for k in CHILD_KINDS
        for item in kube.select(k, ns, selector)
    )
    status = (kube.get(kind, ns, name) or {}).get("status", {})
    events = k8s.CoreV1Api(kube.api).list_namespaced_event(
        ns, field_selector=f"involvedObject.name={name}"
    )
    announced = sorted({str(e.reason) for e in events.items} & {status.get("phase")})
    return children, json.dumps(status, sort_keys=True).replace(name, "OWNER"), announced


def run(kube: Kube, reconcile: Reconcile, ns: str, kind: str, name: str) -> None:
    body = kube.get(kind, ns, name)
    assert body is not None
    settings = Settings(artifact_root="file:///var/lib/flywheel/")  # no PVC to wait for
    reconcile(Context(kube, settings, clock=lambda: T0), body)


def settle(
    api_client: Any,
    reconcile: Reconcile,
    ns: str,
    kind: str,
    name: str,
    client: Callable[[], Kube] | None = None,
) -> Any:
    """Reconcile until the work is done (kwok finishes Pods meanwhile) and the end state
    stops changing. Each reconcile gets a fresh `client()`."""
    seen: list[Any] = []
    for _ in range(120):
        kube = client() if client else Kube(api_client)
        run(kube, reconcile, ns, kind, name)
        seen.append(end_state(kube, ns, kind, name))
        status = json.loads(seen[-1][1])
        if status.get("phase") in DONE_PHASES and len(seen) >= 2 and seen[-1] == seen[-2]:
            return seen[-1]
        time.sleep(0.5)
    raise AssertionError(f"{kind}/{name} never settled; last: {seen[-1]}")


@pytest.mark.parametrize(
    ("kind", "reconcile", "manifest", "every_reconcile"),
    [
        ("Dataset", dataset.reconcile, lambda: quickstart("Dataset", "churn-labels"), True),
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
            # The first reconcile only: killed later, a deployment did not settle here yet.
            False,
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
    every_reconcile: bool,
) -> None:
    kubeconfig = str(control_plane.kubeconfig)
    api_client = k8s_config.new_client_from_config(config_file=kubeconfig)

    def create(name: str) -> None:
        doc = manifest()
        doc["metadata"] = {"name": name}
        kubectl.apply(yaml.safe_dump(doc))

    create("clean")
    clean = Budget(10**6)
    expected = settle(api_client, reconcile, namespace, kind, "clean", killed_by(api_client, clean))
    writes = 10**6 - clean.left  # of every reconcile up to the end: children, status, events
    if not every_reconcile:
        first = Kube(api_client)
        create("first")
        run(first, reconcile, namespace, kind, "first")
        writes = first.writes
    assert writes >= 3
    assert expected[0], "children were created"
    assert expected[2], "the end phase was announced by an Event"

    # Killed after every write of every reconcile on the way, then restarted.
    for k in range(writes):
        name = f"killed-{k}"
        create(name)
        budget = Budget(k)
        # A run that needs fewer writes than the clean one ends without being killed.
        with contextlib.suppress(Killed):
            settle(api_client, reconcile, namespace, kind, name, killed_by(api_client, budget))
        assert settle(api_client, reconcile, namespace, kind, name) == expected, f"killed after {k}"
