"""Conditions every kind shares, and the two statuses that stop a reconcile early:
waiting for dependencies, and a spec that cannot be acted on."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from flywheel.api.common import ConditionStatus, StatusBase
from flywheel.api.conditions import is_true, set_condition

S = TypeVar("S", bound=StatusBase)

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"


def set_status_condition(
    status: S, type_: str, value: ConditionStatus | bool, reason: str, message: str, now: datetime
) -> None:
    """Set one condition on a status, stamped with the status's observed generation."""
    status.conditions = set_condition(
        status.conditions, type_, value, reason, message, now, status.observed_generation
    )


def waiting(old: S, generation: int, message: str, now: datetime) -> S:
    """Dependencies are not ready yet; what was published before stays published."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    ready = is_true(status.conditions, READY)
    if not ready:
        set_status_condition(status, READY, False, "WaitingForDependencies", message, now)
        status.phase = "Waiting"
    set_status_condition(status, PROGRESSING, False, "WaitingForDependencies", message, now)
    return status


def blocked(
    old: S, generation: int, reason: str, message: str, now: datetime, top: str = READY
) -> S:
    """The spec cannot be acted on (InvalidSpec, KubeRayNotInstalled): say why, keep the rest."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    set_status_condition(status, top, False, reason, message, now)
    status.phase = reason
    return status
