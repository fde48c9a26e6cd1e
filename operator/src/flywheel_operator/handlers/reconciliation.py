"""The reconcile skeleton every kind follows: parse -> build -> apply -> observe -> status.

Level-based: each call recomputes the desired children from the spec and what is
observed now, so a crash between any two API writes is repaired by the next call.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import pydantic

from flywheel import manifests
from flywheel.api.common import Resource, StatusBase, resource_key
from flywheel_operator.handlers import reporting
from flywheel_operator.kube import children, ray_dashboard, router_metrics, runs
from flywheel_operator.kube.client import Kube, PermanentError
from flywheel_operator.settings import Settings
from flywheel_operator.status import conditions, observe
from flywheel_operator.status.observe import Run

log = logging.getLogger(__name__)
S = TypeVar("S", bound=StatusBase)
# How often a kind that needs KubeRay looks again whether it is installed now.
KUBERAY_RECHECK = timedelta(seconds=60)
R = TypeVar("R", bound=Resource)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _no_timer(body: dict[str, Any], when: datetime) -> None:
    """Without a work queue (a single reconcile, as in tests) nothing is scheduled."""


@dataclasses.dataclass
class Context:
    """What a reconcile needs from outside: the API, the settings and the clock."""

    kube: Kube
    settings: Settings
    clock: Callable[[], datetime] = utcnow
    # Where rollout analyses get the router's measurements (kube/router_metrics.py).
    router_metrics: router_metrics.RouterMetrics = router_metrics.not_exported
    # Where a running TrainingJob's progress is read from (kube/ray_dashboard.py).
    ray_job_logs: ray_dashboard.JobLogs = ray_dashboard.read_job_logs
    # Reconcile `body` again at `when`, whatever happens meanwhile: for the decisions that
    # time alone changes (a window that ends, a cooldown, progress to read). Events and the
    # safety resync reconcile everything else.
    wake_at: Callable[[dict[str, Any], datetime], None] = _no_timer


@dataclasses.dataclass
class Pass(Generic[S]):
    """One reconcile of one object: what it starts from, and how it reports back.

    Each step that can end the pass (an invalid spec, missing dependencies, a refused
    child) writes the status that says why and tells the caller to stop.
    """

    ctx: Context
    body: dict[str, Any]
    old: S
    generation: int
    now: datetime

    @classmethod
    def begin(cls, ctx: Context, body: dict[str, Any], status_model: type[S]) -> Pass[S]:
        return cls(ctx, body, old_status(body, status_model), generation(body), ctx.clock())

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    def parse(self, model: type[R], top: str = conditions.READY) -> R | None:
        resource, problem = parse(self.body)
        if isinstance(resource, model):
            return resource
        self.block("InvalidSpec", problem, top)
        return None

    def block(self, reason: str, message: str, top: str = conditions.READY) -> None:
        self.finish(conditions.blocked(self.old, self.generation, reason, message, self.now, top))

    def wait_for(self, waiting: list[str]) -> bool:
        """True (and the status says so) when something this object needs is not ready."""
        if waiting:
            message = "; ".join(waiting)
            self.finish(conditions.waiting(self.old, self.generation, message, self.now))
        return bool(waiting)

    def apply(
        self,
        desired: list[dict[str, Any]],
        kinds: Iterable[str],
        top: str = conditions.READY,
    ) -> list[dict[str, Any]] | None:
        """The children as applied (with their current status), or None (and the status
        says why) when the API refuses one."""
        # Before its first status an object has children of an older spec only after a
        # crash and a spec change; the next pass prunes those. Skipping the prune (a LIST
        # per child kind) here gets the first status out sooner.
        prune = bool(self.body.get("status"))
        try:
            return children.apply(self.ctx.kube, self.body, desired, kinds, prune)
        except PermanentError as exc:
            key = resource_key(self.body["kind"], self.body["metadata"]["name"])
            log.warning("%s: %s", key, exc)
            self.block("ApplyFailed", f"{exc.reason}: {exc.message}"[:1000], top)
            return None

    def job_run(self, job: dict[str, Any]) -> Run:
        """The run of a Job as applied; its Pods are read only once it has any."""
        status = job.get("status") or {}
        started = any(status.get(k) for k in ("active", "succeeded", "failed", "conditions"))
        name = job["metadata"]["name"]
        pods = runs.job_pods(self.ctx.kube, self.namespace, name) if started else []
        return observe.job_run(job, pods)

    def finish(self, new: S) -> None:
        now = self.ctx.clock().isoformat().replace("+00:00", "Z")
        reporting.write_status(self.ctx.kube, self.body, self.old, new, now)


def parse(body: dict[str, Any]) -> tuple[Resource | None, str]:
    """The validated resource, or the first problems with their field paths."""
    resource, errors = manifests.parse(_essence(body))
    problems = [f"{e.field}: {e.message}" if e.field else e.message for e in errors[:5]]
    return resource, "; ".join(problems)


def _essence(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata", {})
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta
        },
        "spec": body.get("spec", {}),
    }


def old_status(body: dict[str, Any], model: type[S]) -> S:
    """The status as last written; unreadable (older shape) means start afresh."""
    try:
        return model.model_validate(body.get("status") or {})
    except pydantic.ValidationError:
        return model()


def generation(body: dict[str, Any]) -> int:
    return int(body["metadata"].get("generation", 1))
