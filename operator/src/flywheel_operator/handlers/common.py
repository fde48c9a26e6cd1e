"""The reconcile skeleton every kind follows: parse -> build -> apply -> observe -> status.

Level-based: each call recomputes the desired children from the spec and what is
observed now, so a crash between any two API writes is repaired by the next call.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pydantic

from flywheel import api
from flywheel.api.common import Resource, StatusBase
from flywheel_operator import labels
from flywheel_operator.kube.client import Kube, PermanentError
from flywheel_operator.settings import Settings
from flywheel_operator.status import common as status_common
from flywheel_operator.status import observe
from flywheel_operator.status.observe import Run

log = logging.getLogger(__name__)
S = TypeVar("S", bound=StatusBase)

WARNING_PHASES = {
    "Failed",
    "Degraded",
    "RolledBack",
    "InvalidSpec",
    "KubeRayNotInstalled",
    "ApplyFailed",
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclasses.dataclass
class Context:
    """What a reconcile needs from outside: the API, the settings and the clock."""

    kube: Kube
    settings: Settings
    clock: Callable[[], datetime] = utcnow


class Coalescer:
    """One reconcile per object at a time; wake-ups that arrive meanwhile become one rerun.

    A burst of child events (a Job created, started, finished) and a timer tick would
    otherwise each run a full reconcile of the same owner.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: dict[str, bool] = {}  # uid -> woken again while running

    def run(self, uid: str, reconcile: Callable[[], None]) -> None:
        with self._lock:
            if uid in self._dirty:
                self._dirty[uid] = True
                return
            self._dirty[uid] = False
        try:
            while True:
                reconcile()
                with self._lock:
                    if not self._dirty[uid]:
                        return
                    self._dirty[uid] = False
        finally:
            with self._lock:
                self._dirty.pop(uid, None)


R = TypeVar("R", bound=Resource)


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

    def parse(self, model: type[R], top: str = status_common.READY) -> R | None:
        resource, problem = parse(self.body)
        if isinstance(resource, model):
            return resource
        self.block("InvalidSpec", problem, top)
        return None

    def block(self, reason: str, message: str, top: str = status_common.READY) -> None:
        self.finish(
            status_common.blocked(self.old, self.generation, reason, message, self.now, top)
        )

    def wait_for(self, waiting: list[str]) -> bool:
        """True (and the status says so) when something this object needs is not ready."""
        if waiting:
            message = "; ".join(waiting)
            self.finish(status_common.waiting(self.old, self.generation, message, self.now))
        return bool(waiting)

    def apply(
        self, children: list[dict[str, Any]], kinds: Iterable[str], top: str = status_common.READY
    ) -> list[dict[str, Any]] | None:
        """The children as applied (with their current status), or None (and the status
        says why) when the API refuses one."""
        # Before its first status an object has children of an older spec only after a
        # crash and a spec change; the next pass prunes those. Skipping the prune (a LIST
        # per child kind) here gets the first status out sooner.
        prune = bool(self.body.get("status"))
        try:
            return apply_children(self.ctx, self.body, children, kinds, prune)
        except PermanentError as exc:
            log.warning("%s/%s: %s", self.body["kind"], self.body["metadata"]["name"], exc)
            self.block("ApplyFailed", f"{exc.reason}: {exc.message}"[:1000], top)
            return None

    def job_run(self, job: dict[str, Any]) -> Run:
        """The run of a Job as applied; its Pods are read only once it has any."""
        status = job.get("status") or {}
        started = any(status.get(k) for k in ("active", "succeeded", "failed", "conditions"))
        name = job["metadata"]["name"]
        pods = (
            self.ctx.kube.select("Pod", self.namespace, {JOB_NAME_LABEL: name}) if started else []
        )
        return observe.job_run(job, pods)

    def finish(self, new: S) -> None:
        write_status(self.ctx, self.body, self.old, new)


JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def parse(body: dict[str, Any]) -> tuple[Resource | None, str]:
    """The validated resource, or the first problems with their field paths."""
    model = api.KINDS[body["kind"]]
    try:
        return model.model_validate(_essence(body)), ""
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            field = ".".join(str(p) for p in err["loc"])
            problems.append(f"{field}: {str(err['msg']).removeprefix('Value error, ')}")
        return None, "; ".join(problems)


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


def apply_children(
    ctx: Context,
    owner: dict[str, Any],
    children: list[dict[str, Any]],
    kinds: Iterable[str],
    prune: bool = True,
) -> list[dict[str, Any]]:
    """Apply the desired children, then delete owned children of `kinds` not desired."""
    applied = [ctx.kube.apply(child) for child in children]
    if not prune:
        return applied
    desired = {(c["kind"], c["metadata"]["name"]) for c in children}
    selector = {labels.owner_label(owner["kind"]): owner["metadata"]["name"]}
    uid = owner["metadata"]["uid"]
    for kind in kinds:
        for item in ctx.kube.select(kind, owner["metadata"]["namespace"], selector):
            name = item["metadata"]["name"]
            owned = any(r.get("uid") == uid for r in item["metadata"].get("ownerReferences", []))
            if owned and (kind, name) not in desired:
                ctx.kube.delete(kind, owner["metadata"]["namespace"], name)
    return applied


def write_status(ctx: Context, owner: dict[str, Any], old: StatusBase, new: StatusBase) -> None:
    """Patch the status when it changed; an Event when the phase changed."""
    new_wire, old_wire = new.to_wire(), old.to_wire()
    if new_wire == old_wire:
        return
    meta = owner["metadata"]
    # Lists are replaced whole by a merge patch; fields that vanished are nulled.
    patch = {**{k: None for k in old_wire if k not in new_wire}, **new_wire}
    ctx.kube.patch_status(owner["kind"], meta["namespace"], meta["name"], patch)
    if new.phase != old.phase and new.phase:
        message = _phase_message(new)
        type_ = "Warning" if new.phase in WARNING_PHASES else "Normal"
        ctx.kube.event(
            owner, type_, new.phase, message, ctx.clock().isoformat().replace("+00:00", "Z")
        )


def _phase_message(status: StatusBase) -> str:
    for c in status.conditions:
        if c.message and (c.status != "True" or c.type == status_common.READY):
            return c.message
    return status.phase or ""


def upstream(
    ctx: Context,
    namespace: str,
    refs: Iterable[tuple[str, str]],
    ready: Callable[[dict[str, Any]], bool],
) -> tuple[dict[str, Any], list[str]]:
    """Statuses of the referenced objects, and which of them are missing or not ready."""
    statuses: dict[str, Any] = {}
    waiting: list[str] = []
    for kind, name in dict.fromkeys(refs):
        obj = ctx.kube.get(kind, namespace, name)
        status = (obj or {}).get("status") or {}
        if obj is None:
            waiting.append(f"{kind}/{name} does not exist")
        elif not ready(status):
            waiting.append(f"{kind}/{name} is {status.get('phase') or 'not ready'}")
        else:
            statuses[f"{kind}/{name}"] = status
    return statuses, waiting


def condition_true(type_: str) -> Callable[[dict[str, Any]], bool]:
    def check(status: dict[str, Any]) -> bool:
        return any(
            c.get("type") == type_ and c.get("status") == "True"
            for c in status.get("conditions", [])
        )

    return check
