"""kopf registrations. Level-triggered: an owner is reconciled when it or one of its
children changes, when an object it depends on changes, once per long jittered resync
period as a safety net, and every few seconds while a rollout is under way.

    watch event (owner) ─► Store ─► changed? ─► WorkQueue.add(owner key)
    watch event (child) ─► Store ─► changed? ─► WorkQueue.add_after(owner key, 0.5 s)
    safety resync (FLYWHEEL_RESYNC_SECONDS, spread over the period) ─┘
    rollout timer (FLYWHEEL_ROLLOUT_SECONDS, only while rolling out) ─┘
    worker thread: Store.get(owner) ─► RECONCILERS[kind] (reads from the Store)

A reconcile that finds nothing to change reads nothing from the API and writes nothing:
owners and children come from the watches (kube/cache.py), a child is applied only when
its desired content hash differs (kube/children.py), a status only when it changed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import kopf

from flywheel import api
from flywheel_operator import labels, metrics, settings
from flywheel_operator.handlers import (
    dataset,
    driftmonitor,
    featureview,
    modeldeployment,
    trainingjob,
)
from flywheel_operator.handlers.reconciliation import Context
from flywheel_operator.handlers.workqueue import WorkQueue
from flywheel_operator.kube import cache, router_metrics
from flywheel_operator.kube.client import Kube

log = logging.getLogger(__name__)

RECONCILERS: dict[str, Callable[[Context, dict[str, Any]], None]] = {
    "Dataset": dataset.reconcile,
    "FeatureView": featureview.reconcile,
    "TrainingJob": trainingjob.reconcile,
    "ModelDeployment": modeldeployment.reconcile,
    "DriftMonitor": driftmonitor.reconcile,
}
# The children the operator reads, watched by the managed-by label, as kind -> kopf's
# (group, version, plural). Pods are those of runtime Jobs: their results.
CHILDREN: dict[str, tuple[str, ...]] = {
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
    "Deployment": ("apps", "v1", "deployments"),
    "Service": ("v1", "services"),
    "ConfigMap": ("v1", "configmaps"),
    "PodDisruptionBudget": ("policy", "v1", "poddisruptionbudgets"),
    # The Triton path's router reads its own ConfigMap with an account of its own.
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    "Pod": ("v1", "pods"),
    "RayJob": ("ray.io", "v1", "rayjobs"),
    "RayService": ("ray.io", "v1", "rayservices"),
}
OPERATOR_SETTINGS = settings.from_env()
_context: Context | None = None


def context() -> Context:
    global _context
    if _context is None:
        kube = Kube.from_config(cache=STORE, connections=OPERATOR_SETTINGS.workers)
        _context = Context(kube, OPERATOR_SETTINGS, router_metrics=_metrics(), wake_at=_wake_at)
    return _context


def _wake_at(body: dict[str, Any], when: datetime) -> None:
    seconds = (when - datetime.now(UTC)).total_seconds()
    QUEUE.add_after(cache.key_of(body), max(seconds, 0.0) + 1.0)  # status times are whole s


def _metrics() -> router_metrics.RouterMetrics:
    """Where rollout analyses read the router's measurements (kube/router_metrics.py)."""
    if OPERATOR_SETTINGS.prometheus_url:
        return router_metrics.PrometheusQueries(OPERATOR_SETTINGS.prometheus_url)
    return router_metrics.RolloutReports(OPERATOR_SETTINGS.router_url)


def reconcile(key: cache.Key) -> None:
    """One reconcile of the owner `key` (kind, namespace, name), as the watches hold it."""
    kind, namespace, name = key
    ctx = context()
    body = ctx.kube.get(kind, namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    with metrics.RECONCILE_SECONDS.labels(kind).time(), cache.reading_for((kind, namespace, name)):
        try:
            RECONCILERS[kind](ctx, body)
        except Exception:
            metrics.RECONCILE_ERRORS.labels(kind).inc()
            raise


QUEUE: WorkQueue[cache.Key] = WorkQueue(reconcile, workers=OPERATOR_SETTINGS.workers)


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: kopf keeps one for on.create/update/delete handlers, which this
    operator has none of (it reconciles from its own Store). Kopf's own storage copies
    every watched object twice per event to find what changed (copy.deepcopy of a Pod
    with its managedFields): the largest part of the operator's CPU per event."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = api.GROUP
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.watching.server_timeout = 300


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    QUEUE.stop()


def wake(obj: dict[str, Any], written: bool = False) -> None:
    """Queue what a change of `obj` concerns: the owners whose last reconcile read it, and,
    unless this operator's own write made it (`written`), itself if it is an owner or its
    owner if it is a child."""
    key = cache.key_of(obj)
    if key[0] in RECONCILERS:
        for dependent in STORE.dependents(key):
            QUEUE.add(dependent)
        if not written:
            QUEUE.add(key)
        return
    owner = _owner_of(obj)
    if owner is not None and not written:
        QUEUE.add_after(owner, OPERATOR_SETTINGS.child_delay_seconds)


STORE = cache.Store([*api.KINDS, *CHILDREN], tracked=api.KINDS, on_change=wake)


def _owner_of(child: dict[str, Any]) -> cache.Key | None:
    meta = child["metadata"]
    child_labels = meta.get("labels") or {}
    for kind in RECONCILERS:
        name = child_labels.get(labels.owner_label(kind))
        if name:
            return kind, str(meta.get("namespace") or ""), str(name)
    return None


async def _on_seen(body: kopf.Body, **_: Any) -> None:
    """Every version a watch sees (kopf indexes first, before any other handler runs);
    a version this operator wrote is held already and wakes nobody again."""
    STORE.put(dict(body))


async def _on_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    # Runs once every watch has listed: the store is complete, reconciles may start.
    QUEUE.start()
    if type == "DELETED":
        obj = dict(body)
        STORE.remove(*cache.key_of(obj))
        if cache.key_of(obj)[0] not in RECONCILERS:
            wake(obj)  # a child gone: its owner applies it again


def _deleted_or_first(type: str | None, **_: Any) -> bool:
    """The only events `_on_event` needs: a handler not called costs kopf far less."""
    return type == "DELETED" or not QUEUE.started


def _watch(*resource: str, labels_: dict[str, str] | None = None) -> None:
    name = resource[-1]
    kopf.index(*resource, id=f"seen-{name}", labels=labels_)(_on_seen)
    kopf.on.event(*resource, id=f"event-{name}", labels=labels_, when=_deleted_or_first)(_on_event)


for _kind in api.KINDS.values():
    _watch(api.GROUP, api.VERSION, _kind.plural)
for _resource in CHILDREN.values():
    _watch(*_resource, labels_={"app.kubernetes.io/managed-by": labels.MANAGED_BY})


def _resync() -> None:
    """Each period, every owner once, at a random moment of the period: the safety net
    for a missed event, spread so that it costs the same at every moment."""
    period = OPERATOR_SETTINGS.resync_seconds
    while True:
        time.sleep(period)
        for kind in RECONCILERS:
            for key in STORE.keys(kind):
                QUEUE.add_after(key, random.uniform(0, period))


@kopf.on.startup()
def start_resync(**_: Any) -> None:
    threading.Thread(target=_resync, name="resync", daemon=True).start()


ROLLING_OUT = ("Progressing", "Deploying")


def _rolling_out(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") in ROLLING_OUT and bool(status.get("candidateVersion"))


@kopf.timer(
    api.GROUP,
    api.VERSION,
    api.ModelDeployment.plural,
    id="rollout",
    interval=OPERATOR_SETTINGS.rollout_seconds,
    when=_rolling_out,
)
async def _on_rollout_tick(body: kopf.Body, **_: Any) -> None:
    # A rollout under way is analysed every few seconds (its steps' pauses, its analyses),
    # not on the slow safety resync.
    QUEUE.add(cache.key_of(dict(body)))
