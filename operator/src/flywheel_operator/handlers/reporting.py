"""Writing a status back: the patch when it changed, an Event when the phase changed."""

from __future__ import annotations

from typing import Any

from flywheel.api.common import StatusBase
from flywheel_operator.kube.client import Kube
from flywheel_operator.status import reporting


def write_status(
    kube: Kube, owner: dict[str, Any], old: StatusBase, new: StatusBase, now: str
) -> None:
    """`now`: the Event's timestamp (RFC 3339)."""
    patch = reporting.status_patch(old, new)
    if patch is None:
        return
    meta = owner["metadata"]
    # The Event first: if the process dies between the two writes, the next reconcile
    # sees the same phase change and writes the same Event again, which its name makes a
    # no-op; the other way round it is lost.
    event = reporting.phase_event(old, new)
    if event is not None:
        name = reporting.event_name(owner, event.reason, old)
        kube.event(owner, event.type, event.reason, event.message, now, name)
    kube.patch_status(owner["kind"], meta["namespace"], meta["name"], patch)
