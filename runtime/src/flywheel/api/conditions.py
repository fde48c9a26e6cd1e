"""Conditions in the metav1.Condition shape, changed the way Kubernetes expects.

`lastTransitionTime` moves only when the status flips; reason and message may change
without a flip. Pure: the caller passes the clock.
"""

from __future__ import annotations

from datetime import datetime

from flywheel.api.common import Condition, ConditionStatus


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """A new list with the condition of `type_` set; the others unchanged, order kept."""
    if isinstance(status, bool):
        status = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    old = find(conditions, type_)
    flipped = old is None or old.status != status
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=observed_generation,
        last_transition_time=now if flipped or old is None else old.last_transition_time,
    )
    if old is None:
        return [*conditions, new]
    return [new if c.type == type_ else c for c in conditions]


def find(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.status == ConditionStatus.TRUE
