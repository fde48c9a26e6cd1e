"""Whether the objects a resource refers to are there and ready."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flywheel.api.common import resource_key

Ready = Callable[[dict[str, Any]], bool]  # an object's status -> ready or not


def condition_true(type_: str) -> Ready:
    """Ready when the condition `type_` is True."""

    def check(status: dict[str, Any]) -> bool:
        return any(
            c.get("type") == type_ and c.get("status") == "True"
            for c in status.get("conditions", [])
        )

    return check


def has_phase(status: dict[str, Any]) -> bool:
    """Ready once the operator wrote any status at all."""
    return bool(status.get("phase"))


def sort_out(
    refs: Iterable[tuple[str, str]],
    found: Mapping[tuple[str, str], dict[str, Any] | None],
    ready: Ready,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The ready objects keyed "Kind/name", and why the others are waited for.

    >>> sort_out([("Dataset", "a")], {("Dataset", "a"): None}, has_phase)
    ({}, ['Dataset/a does not exist'])
    """
    objects: dict[str, dict[str, Any]] = {}
    waiting: list[str] = []
    for kind, name in dict.fromkeys(refs):
        obj = found.get((kind, name))
        status = (obj or {}).get("status") or {}
        key = resource_key(kind, name)
        if obj is None:
            waiting.append(f"{key} does not exist")
        elif not ready(status):
            waiting.append(f"{key} is {status.get('phase') or 'not ready'}")
        else:
            objects[key] = obj
    return objects, waiting
