"""How a status change is reported: the status patch, and the Event of a phase change."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from flywheel.api.common import StatusBase
from flywheel_operator.status.conditions import READY

WARNING_PHASES = {
    "Failed",
    "Degraded",
    "RolledBack",
    "InvalidSpec",
    "KubeRayNotInstalled",
    "ApplyFailed",
}


@dataclasses.dataclass(frozen=True)
class PhaseEvent:
    type: str  # Normal or Warning
    reason: str  # the new phase
    message: str


def status_patch(old: StatusBase, new: StatusBase) -> dict[str, Any] | None:
    """A merge patch from `old` to `new`, or None when nothing changed.

    Lists are replaced whole by a merge patch; fields that vanished are nulled.
    """
    new_wire, old_wire = new.to_wire(), old.to_wire()
    if new_wire == old_wire:
        return None
    return _merge_patch(old_wire, new_wire)


def _merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new`, with every key that vanished at any depth of a map nulled (a merge patch
    keeps what it does not name: `traffic` {v1, v2} -> {v2} must drop v1)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = _merge_patch(before, value)
        else:
            patch[key] = value
    return patch


def phase_event(old: StatusBase, new: StatusBase) -> PhaseEvent | None:
    """The Event a phase change deserves (Warning for failures), or None."""
    if new.phase == old.phase or not new.phase:
        return None
    type_ = "Warning" if new.phase in WARNING_PHASES else "Normal"
    return PhaseEvent(type_, new.phase, _phase_message(new))


def _phase_message(status: StatusBase) -> str:
    for c in status.conditions:
        if c.message and (c.status != "True" or c.type == READY):
            return c.message
    return status.phase or ""


def event_name(owner: dict[str, Any], reason: str, old: StatusBase) -> str:
    """The name of the Event that reports `reason` on the way from status `old`.

    A reconcile killed between an Event and its status write sees the same `old` again
    and names the same Event, which the API then refuses as existing: each change is
    told once, whatever the crashes. (A generated name would tell it twice.)
    """
    meta = owner["metadata"]
    key = json.dumps([meta["uid"], reason, old.to_wire()], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{meta['name'][:200]}.{digest}"
