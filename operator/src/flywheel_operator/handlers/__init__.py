"""kopf registrations: every kind is reconciled on create, update, resume and a timer,
and when one of its children changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
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
from flywheel_operator.handlers.coalescer import Coalescer
from flywheel_operator.handlers.reconciliation import Context
from flywheel_operator.kube import router_metrics
from flywheel_operator.kube.client import Kube

log = logging.getLogger(__name__)

RECONCILERS: dict[str, Callable[[Context, dict[str, Any]], None]] = {
    "Dataset": dataset.reconcile,
    "FeatureView": featureview.reconcile,
    "TrainingJob": trainingjob.reconcile,
    "ModelDeployment": modeldeployment.reconcile,
    "DriftMonitor": driftmonitor.reconcile,
}
# Children whose changes wake their owner up, as (group, version, plural).
CHILD_RESOURCES = (
    ("batch", "v1", "jobs"),
    ("apps", "v1", "deployments"),
    ("ray.io", "v1", "rayjobs"),
    ("ray.io", "v1", "rayservices"),
)
OPERATOR_SETTINGS = settings.from_env()
_context: Context | None = None
COALESCER = Coalescer()


def context() -> Context:
    global _context
    if _context is None:
        _context = Context(Kube.from_config(), OPERATOR_SETTINGS, router_metrics=_metrics())
    return _context


def _metrics() -> router_metrics.RouterMetrics:
    """Where rollout analyses read the router's measurements (kube/router_metrics.py)."""
    if OPERATOR_SETTINGS.prometheus_url:
        return router_metrics.PrometheusQueries(OPERATOR_SETTINGS.prometheus_url)
    return router_metrics.RolloutReports(OPERATOR_SETTINGS.router_url)


def reconcile(body: kopf.Body | dict[str, Any]) -> None:
    raw = dict(body)
    meta = raw["metadata"]
    ctx = context()

    def once() -> None:
        # Re-read: the body kopf holds may be older than the latest status write.
        fresh = ctx.kube.get(raw["kind"], meta["namespace"], meta["name"])
        if fresh is None:
            return
        with metrics.RECONCILE_SECONDS.labels(raw["kind"]).time():
            try:
                RECONCILERS[raw["kind"]](ctx, fresh)
            except Exception:
                metrics.RECONCILE_ERRORS.labels(raw["kind"]).inc()
                raise

    COALESCER.run(meta["uid"], once)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = api.GROUP
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # our own Events say what happened
    settings.execution.max_workers = 8
    settings.watching.server_timeout = 300


def _register(kind: type[api.Resource]) -> None:
    group, version, plural = api.GROUP, api.VERSION, kind.plural

    def on_change(body: kopf.Body, **_: Any) -> None:
        reconcile(body)

    def on_timer(body: kopf.Body, **_: Any) -> None:
        reconcile(body)

    kopf.on.resume(group, version, plural, id="reconcile")(on_change)
    kopf.on.create(group, version, plural, id="reconcile")(on_change)
    kopf.on.update(group, version, plural, id="reconcile", field="spec")(on_change)
    resync = OPERATOR_SETTINGS.resync_seconds
    # The first tick waits a full interval: create/resume already reconcile at once.
    kopf.timer(group, version, plural, id="resync", interval=resync, initial_delay=resync)(on_timer)


for _kind in api.KINDS.values():
    _register(_kind)

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
def _on_rollout_tick(body: kopf.Body, **_: Any) -> None:
    # A rollout under way is analysed every few seconds, not on the slower resync.
    reconcile(body)


def _owner_of(child: dict[str, Any]) -> tuple[str, str] | None:
    for kind in api.KINDS:
        name = (child.get("metadata", {}).get("labels") or {}).get(labels.owner_label(kind))
        if name:
            return kind, name
    return None


def _on_child_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    # ADDED follows our own apply, and None is the initial listing (resume covers owners).
    if type not in ("MODIFIED", "DELETED"):
        return
    owner = _owner_of(dict(body))
    if owner is None:
        return
    ctx = context()
    obj = ctx.kube.get(owner[0], body["metadata"]["namespace"], owner[1])
    if obj is not None:
        reconcile(obj)


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(
        _group, _version, _plural, labels={"app.kubernetes.io/managed-by": labels.MANAGED_BY}
    )(_on_child_event)
