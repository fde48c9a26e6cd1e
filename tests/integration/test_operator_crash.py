"""A crash after any API write of a reconcile is repaired by the next reconcile.

For every kind and every k, the reconciles of one process are stopped right after its
k-th write (as if the process was killed there), counted over every reconcile of a whole
scenario: the success path to the end state, then a spec update that prunes children.
A new operator (a fresh client) then reconciles on. The end state must equal that of a
run that never crashed: the same children, the same status, and the same Events for the
phases each stage settles in, none repeated by a restart.

The world moves only between reconciles and only forward, as the test plays it: Pods of
the played image stay Running until the test writes how they ended (with the runtime's
result), KubeRay's status is written as KubeRay writes it, and kwok runs the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from kubernetes import config as k8s_config

from flywheel import api
from flywheel_operator import labels
from flywheel_operator.handlers import (
    dataset,
    driftmonitor,
    featureview,
    modeldeployment,
    trainingjob,
)
from flywheel_operator.handlers.reconciliation import Context
from flywheel_operator.kube import cache
from flywheel_operator.kube.client import Kube
from flywheel_operator.settings import Settings
from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.cluster.controlplane import PLAYED_IMAGE
from tests.integration.test_operator import quickstart

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# Pods of the played image wait for the test to end them; no PVC to wait for.
SETTINGS = Settings(runtime_image=PLAYED_IMAGE, artifact_root="file:///var/lib/flywheel/")
SETTLE_SECONDS = 60

Reconcile = Callable[[Context, dict[str, Any]], None]
World = Callable[[Kube, str, str], None]  # (client, namespace, owner name)


class Killed(BaseException):
    """The process died: nothing after this point of the reconcile happens."""


class Budget:
    """Writes left before the process dies, shared by the reconciles of one process.

    Only writes that change something count: a server-side apply of a child as it already
    is leaves the state as the write before it did, a point already crashed at."""

    def __init__(self, writes: int) -> None:
        self.left = writes
        self.applied: dict[str, Any] = {}  # URL -> the child as last applied by this process

    def changed(self, method: str, url: str, body: Any) -> bool:
        if method != "PATCH" or url.endswith("/status"):
            return True  # a create, a delete, a status patch (sent only when it changed)
        before, self.applied[url] = self.applied.get(url), body
        return bool(body != before)


class KilledAfter(Kube):
    """A client whose process dies once its budget of writes is spent."""

    def __init__(self, api_client: Any, budget: Budget) -> None:
        super().__init__(api_client)
        self.budget = budget

    def _write(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        if self.budget.left <= 0:
            raise Killed("killed")
        result = super()._write(method, url, **kwargs)
        if self.budget.changed(method, url, kwargs.get("body")):
            self.budget.left -= 1
        return result


# --- the world, played between reconciles -------------------------------------------------


def owned(kube: Kube, kind: str, ns: str, owner_kind: str, name: str) -> list[dict[str, Any]]:
    return kube.select(kind, ns, {labels.owner_label(owner_kind): name})


def end_pods(kube: Kube, ns: str, job: str, result: dict[str, Any]) -> None:
    """What the kubelet writes when the runtime in a Job's Pod has finished: Succeeded,
    with the runtime's result as the termination message."""
    for pod in kube.select("Pod", ns, {"batch.kubernetes.io/job-name": job}):
        status = pod.get("status") or {}
        if status.get("phase") != "Running":
            continue
        [container] = pod["spec"]["containers"]
        terminated = {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": "2026-05-01T12:00:00Z",
            "finishedAt": "2026-05-01T12:01:00Z",
            "message": json.dumps(result),
        }
        kube.patch_status(
            "Pod",
            ns,
            pod["metadata"]["name"],
            {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            },
        )


def jobs_end(owner_kind: str, result: Callable[[dict[str, Any]], dict[str, Any]]) -> World:
    """Every running Job of the owner ends with `result(owner)`."""

    def world(kube: Kube, ns: str, name: str) -> None:
        owner = kube.get(owner_kind, ns, name) or {}
        for job in owned(kube, "Job", ns, owner_kind, name):
            end_pods(kube, ns, job["metadata"]["name"], result(owner))

    return world


def ingest_result(owner: dict[str, Any]) -> dict[str, Any]:
    # A new spec ingests a new version.
    return {"version": f"v{owner['metadata']['generation']}", "rows": 10}


def materialize_result(owner: dict[str, Any]) -> dict[str, Any]:
    return {"onlineRows": 40, "lastMaterialized": "2026-05-01T12:00:00Z", "offlineVersion": "o1"}


def training_world(kube: Kube, ns: str, name: str) -> None:
    """KubeRay's part: a submitter Job of the RayJob's name and the RayJob's status; the
    submitter's result; then the RayJob complete."""
    for rayjob in owned(kube, "RayJob", ns, "TrainingJob", name):
        job = rayjob["metadata"]["name"]
        if kube.get("Job", ns, job) is None:
            template = rayjob["spec"]["submitterPodTemplate"]
            kube.create(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"name": job, "namespace": ns},
                    "spec": {"template": template},
                }
            )
            running = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}
            kube.patch_status("RayJob", ns, job, running)
            continue
        pods = kube.select("Pod", ns, {"batch.kubernetes.io/job-name": job})
        if any((p.get("status") or {}).get("phase") == "Running" for p in pods):
            result = {
                "modelVersion": "churn-mlp-1",
                "artifactUri": "file:///var/lib/flywheel/models/churn/churn-mlp-1",
                "metrics": {"auc": 0.81},
                "primaryMetric": "auc=0.810",
            }
            end_pods(kube, ns, job, result)
            done = {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}
            kube.patch_status("RayJob", ns, job, done)


def rayservice_world(kube: Kube, ns: str, name: str) -> None:
    """KubeRay's part: the RayService's applications are ready."""
    ready = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "ServeApplicationsReady",
                "lastTransitionTime": "2026-05-01T00:00:00Z",
                "message": "",
            }
        ]
    }
    for svc in owned(kube, "RayService", ns, "ModelDeployment", name):
        if not (svc.get("status") or {}).get("conditions"):
            kube.patch_status("RayService", ns, svc["metadata"]["name"], ready)


DRIFT = {
    "lastRun": "2026-05-01T00:10:00Z",
    "samples": 2000,
    "driftedFeatures": ["plan"],
    "maxScore": 0.41,
    "scores": [
        {"feature": "plan", "method": "chi2", "score": 0.999, "threshold": 0.99, "drifted": True}
    ],
}


def monitor_world(kube: Kube, ns: str, name: str) -> None:
    """One run of the monitor's CronJob (as `kubectl create job --from=cronjob/...`), which
    finds drift."""
    for cron in owned(kube, "CronJob", ns, "DriftMonitor", name):
        template = cron["spec"]["jobTemplate"]
        job = f"{cron['metadata']['name']}-manual"
        if kube.get("Job", ns, job) is None:
            meta = {"name": job, "namespace": ns, "labels": template["metadata"]["labels"]}
            body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta}
            kube.create({**body, "spec": template["spec"]})
        end_pods(kube, ns, job, DRIFT)


# --- the scenarios ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stage:
    """A spec to apply, then reconciles (the world moving in between) until it settles."""

    spec: dict[str, Any]
    settled: tuple[str, ...]  # the phases this stage may end in
    # And done: by default when no run is in progress any more.
    until: Callable[[dict[str, Any]], bool] = lambda status: not progressing(status)


def progressing(status: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Progressing" and c["status"] == "True" for c in status.get("conditions", [])
    )


def phase_only(status: dict[str, Any]) -> bool:
    """Settled by phase alone: a rollout stays Progressing while its canary step waits
    for an analysis."""
    return True


@dataclasses.dataclass(frozen=True)
class Scenario:
    kind: str
    reconcile: Reconcile
    world: World
    stages: tuple[Stage, ...]
    children: tuple[str, ...]  # the kinds of its children (a retrain is one)
    upstream: tuple[str, ...] = ()  # scenarios whose objects must be settled first
    base: str = ""  # the quickstart object whose metadata and apiVersion are used

    def manifest(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        doc = quickstart(self.kind, self.base)
        spec = {k: v for k, v in spec.items() if v is not None}  # None: the field removed
        return {**doc, "metadata": {"name": name}, "spec": spec}


def _spec(kind: str, name: str, **changes: Any) -> dict[str, Any]:
    spec = dict(quickstart(kind, name)["spec"])
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


TRITON = {
    "backend": "triton",
    "stable": {"modelName": "churn", "version": "v1"},
    "candidate": {"modelName": "churn", "version": "v2"},
    "rollout": {"strategy": "canary", "canary": {"steps": [{"weight": 20}]}},
}
RAYSERVE = {
    **quickstart("ModelDeployment", "churn")["spec"],
    "stable": {"modelName": "churn", "version": "v1"},
    "candidate": {"modelName": "churn", "version": "v2"},
}
MD_SETTLED = ("Progressing", "Ready")
STABLE_ONLY = {"stable": {"modelName": "churn", "version": "v1"}, "rollout": {"strategy": "none"}}


# Schedules that never come while a test runs: a Job the cluster's CronJob controller
# starts on the clock is not the operator's doing, and would differ between two runs.
YEARLY = "0 0 1 1 *"
YEARLY_LATER = "0 0 2 1 *"


def _monitor_spec() -> dict[str, Any]:
    """The quickstart's monitor as written (its servingVersion reference names no object
    to wait for, only the deployment), on a schedule that never fires during the test."""
    spec = dict(quickstart("DriftMonitor", "churn-drift")["spec"])
    assert spec["reference"] == {"servingVersion": {}}
    return {**spec, "schedule": YEARLY}


SCENARIOS: dict[str, Scenario] = {
    "dataset": Scenario(
        "Dataset",
        dataset.reconcile,
        jobs_end("Dataset", ingest_result),
        (
            Stage(_spec("Dataset", "churn-labels", refresh={"schedule": YEARLY}), ("Ready",)),
            # A new policy and no refresh: a new ingest Job; the old Job and the CronJob go.
            Stage(
                _spec(
                    "Dataset",
                    "churn-labels",
                    validation={"onError": "quarantine", "maxBadRowFraction": 0.1},
                ),
                ("Ready",),
            ),
        ),
        ("Job", "CronJob"),
        base="churn-labels",
    ),
    "featureview": Scenario(
        "FeatureView",
        featureview.reconcile,
        jobs_end("FeatureView", materialize_result),
        (
            Stage(_spec("FeatureView", "customer-features"), ("Ready",)),
            # No schedule: the CronJob goes.
            Stage(_spec("FeatureView", "customer-features", materialization=None), ("Ready",)),
        ),
        ("Job", "CronJob"),
        upstream=("Dataset/customer-events",),
        base="customer-features",
    ),
    "trainingjob": Scenario(
        "TrainingJob",
        trainingjob.reconcile,
        training_world,
        # Terminal: a finished training is a record, its spec never runs again.
        (Stage(_spec("TrainingJob", "churn-mlp"), ("Succeeded",)),),
        ("RayJob", "Job"),
        upstream=(
            "Dataset/customer-events",
            "Dataset/churn-labels",
            "FeatureView/customer-features",
        ),
        base="churn-mlp",
    ),
    "modeldeployment-triton": Scenario(
        "ModelDeployment",
        modeldeployment.reconcile,
        lambda kube, ns, name: None,  # kwok runs the Pods; the Deployments become available
        (
            Stage(TRITON, MD_SETTLED, phase_only),
            # The candidate withdrawn: its Deployment, Service and ConfigMap go.
            Stage({**STABLE_ONLY, "backend": "triton"}, MD_SETTLED, phase_only),
        ),
        ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget"),
        base="churn",
    ),
    "modeldeployment-rayserve": Scenario(
        "ModelDeployment",
        modeldeployment.reconcile,
        rayservice_world,
        (
            Stage(RAYSERVE, MD_SETTLED, phase_only),
            Stage({**RAYSERVE, "candidate": None, **STABLE_ONLY}, MD_SETTLED, phase_only),
        ),
        ("RayService",),
        base="churn",
    ),
    "driftmonitor": Scenario(
        "DriftMonitor",
        driftmonitor.reconcile,
        monitor_world,
        (
            # Drift found: the retrain TrainingJob is created, once.
            Stage(_monitor_spec(), ("Ready",)),
            Stage({**_monitor_spec(), "schedule": YEARLY_LATER}, ("Ready",)),
        ),
        ("CronJob", "Job", "TrainingJob"),
        upstream=("ModelDeployment/churn",),
        base="churn-drift",
    ),
}
# Upstream objects, settled by the same reconciles before a scenario runs.
UPSTREAM: dict[str, tuple[Scenario, dict[str, Any]]] = {
    "Dataset/customer-events": (
        dataclasses.replace(SCENARIOS["dataset"], base="customer-events"),
        _spec("Dataset", "customer-events"),
    ),
    "Dataset/churn-labels": (SCENARIOS["dataset"], _spec("Dataset", "churn-labels")),
    "FeatureView/customer-features": (
        SCENARIOS["featureview"],
        _spec("FeatureView", "customer-features", materialization=None),
    ),
    "ModelDeployment/churn": (
        SCENARIOS["modeldeployment-triton"],
        {**STABLE_ONLY, "backend": "triton"},
    ),
}
# Writes of the whole scenario run without a crash, at most: each is a place to crash.
# (A run whose world moves faster needs fewer; one killed after its last write just ends.)
MAX_WRITES = {
    "dataset": 12,
    "featureview": 12,
    "trainingjob": 8,
    "modeldeployment-triton": 27,
    "modeldeployment-rayserve": 11,
    "driftmonitor": 12,
}


# --- running them -----------------------------------------------------------------------


EndState = tuple[list[tuple[str, str]], str, list[tuple[str, str]]]


def events(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    items = [
        e
        for e in kube.select("Event", ns, {})
        if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] != "Pod"
    ]
    return sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"]))


def end_state(kube: Kube, scenario: Scenario, ns: str, name: str) -> EndState:
    """Children (kind, name with the owner's name masked), the status masked likewise, and
    the Events of the phases the stages settle in, in order."""
    children = sorted(
        (k, item["metadata"]["name"].replace(name, "OWNER"))
        for k in scenario.children
        for item in owned(kube, k, ns, scenario.kind, name)
    )
    status = (kube.get(scenario.kind, ns, name) or {}).get("status", {})
    settled = {p for s in scenario.stages for p in s.settled}
    announced = [(e["type"], e["reason"]) for e in events(kube, ns, name) if e["reason"] in settled]
    return children, json.dumps(status, sort_keys=True).replace(name, "OWNER"), announced


def watched(kube: Kube, scenario: Scenario, ns: str) -> Kube:
    """`kube` reading what the operator's watches hold at this moment (one LIST per kind
    the reconcile reads), as the running operator does: applies of children that carry
    their desired hash are skipped, and what is read costs no API call."""
    children = {*scenario.children, "Job", "Pod"} - set(api.KINDS)
    store = cache.Store([*api.KINDS, *children], tracked=api.KINDS)
    managed = {"app.kubernetes.io/managed-by": labels.MANAGED_BY}
    for kind in [*api.KINDS, *sorted(children)]:
        for item in kube.select(kind, ns, {} if kind in api.KINDS else managed):
            store.put(item)
    kube.cache = store
    return kube


def settle(
    api_client: Any,
    scenario: Scenario,
    stage: Stage,
    ns: str,
    name: str,
    client: Callable[[], Kube],
) -> None:
    """Reconcile, the world moving in between, until the status settles in a stage's end
    phase and one more reconcile changes nothing. Each reconcile gets a fresh `client()`."""
    world = Kube(api_client)
    deadline = time.monotonic() + SETTLE_SECONDS
    last: Any = None
    while time.monotonic() < deadline:
        kube = watched(client(), scenario, ns)
        body = kube.get(scenario.kind, ns, name)
        assert body is not None
        scenario.reconcile(Context(kube, SETTINGS, clock=lambda: T0), body)
        seen = end_state(world, scenario, ns, name)
        status = json.loads(seen[1])
        done = status.get("phase") in stage.settled
        done = done and status.get("observedGeneration") == body["metadata"]["generation"]
        done = done and stage.until(status)
        if done and seen == last:
            return
        last = seen
        scenario.world(world, ns, name)
        time.sleep(0.1)  # the controllers (Job, Deployment, kwok) act on what changed
    raise AssertionError(f"{scenario.kind}/{name} never settled; last: {last}")


def play(
    api_client: Any,
    kubectl: Kubectl,
    scenario: Scenario,
    ns: str,
    name: str,
    budget: Budget,
    as_operator: Any = None,
) -> EndState:
    """Every stage in order, by a process killed once its budget is spent and then by a
    new one. The world is played with `api_client`; the reconciles call the API with
    `as_operator` (by default the same)."""
    op = as_operator or api_client
    killed = False
    for stage in scenario.stages:
        kubectl.apply(yaml.safe_dump(scenario.manifest(name, stage.spec)))
        try:
            settle(
                api_client,
                scenario,
                stage,
                ns,
                name,
                (lambda: Kube(op)) if killed else (lambda: KilledAfter(op, budget)),
            )
        except Killed:
            killed = True
            settle(api_client, scenario, stage, ns, name, lambda: Kube(op))
    return end_state(Kube(api_client), scenario, ns, name)


@dataclasses.dataclass
class Clean:
    namespace: str
    expected: EndState
    writes: int


@pytest.fixture(scope="module")
def prepared(
    control_plane: ControlPlane,
    flywheel_crds: list[str],
    kuberay_crds: None,
    cluster_kubectl: Kubectl,
) -> Iterator[Callable[[str], Clean]]:
    """Per scenario, once: a namespace with its upstream settled, and the run that never
    crashed."""
    api_client = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    done: dict[str, Clean] = {}

    def prepare(key: str) -> Clean:
        if key in done:
            return done[key]
        scenario = SCENARIOS[key]
        ns = f"crash-{key}-{secrets.token_hex(3)}"
        cluster_kubectl.run("create", "namespace", ns)
        wait_for(
            lambda: cluster_kubectl.in_namespace(ns).exists("serviceaccount", "default"),
            what=f"serviceaccount default in {ns}",
            timeout=30,
        )
        kubectl = cluster_kubectl.in_namespace(ns)
        for ref in scenario.upstream:
            up, spec = UPSTREAM[ref]
            name = ref.split("/")[1]
            kubectl.apply(yaml.safe_dump(up.manifest(name, spec)))
            stage = dataclasses.replace(up.stages[0], spec=spec)
            settle(api_client, up, stage, ns, name, lambda: Kube(api_client))
        budget = Budget(10**6)
        expected = play(api_client, kubectl, scenario, ns, "clean", budget)
        done[key] = Clean(ns, expected, 10**6 - budget.left)
        return done[key]

    yield prepare
    for clean in done.values():
        cluster_kubectl.run("delete", "namespace", clean.namespace, "--wait=false")


CASES = [(key, k) for key, n in MAX_WRITES.items() for k in range(n)]


@pytest.mark.parametrize(("key", "k"), CASES, ids=[f"{key}-{k}" for key, k in CASES])
def test_killed_after_a_write_then_restarted(
    control_plane: ControlPlane,
    cluster_kubectl: Kubectl,
    prepared: Callable[[str], Clean],
    key: str,
    k: int,
) -> None:
    scenario = SCENARIOS[key]
    clean = prepared(key)

    assert clean.writes <= MAX_WRITES[key], f"{key}: {clean.writes} writes, raise MAX_WRITES"
    children, _, announced = clean.expected
    assert children, "children were created"
    phase = json.loads(clean.expected[1])["phase"]
    assert announced and announced[-1][1] == phase, f"the end phase was announced: {announced}"

    api_client = k8s_config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    kubectl = cluster_kubectl.in_namespace(clean.namespace)
    name = f"killed-{k}"
    try:
        got = play(api_client, kubectl, scenario, clean.namespace, name, Budget(k))
        assert got == clean.expected, f"killed after {k} writes"
        # No Event told twice: a restarted reconcile repeats a phase change it may have
        # announced already, never as a second Event.
        reasons = [e["reason"] for e in events(Kube(api_client), clean.namespace, name)]
        assert all(a != b for a, b in itertools.pairwise(reasons)), reasons
    finally:
        # Its children go with it: the fake nodes' CPU is what later cases schedule on.
        kubectl.delete(scenario.kind.lower(), name, wait=False)
