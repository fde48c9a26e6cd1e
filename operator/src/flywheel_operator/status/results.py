"""What travels between the operator and runtime Pods: results in, inputs out."""

from __future__ import annotations

from typing import Any, TypeVar

from flywheel.api.common import StatusBase
from flywheel_operator.redaction import redact

S = TypeVar("S", bound=StatusBase)

# Fields the operator owns; a runtime result never overwrites them.
OPERATOR_FIELDS = {"conditions", "phase", "observedGeneration"}


def merge_result(status: S, result: dict[str, Any] | None) -> S:
    """The status with the fields a runtime result reports (never the operator's own)."""
    if not result:
        return status
    fields = {k: redact(v) for k, v in result.items() if k not in OPERATOR_FIELDS and k != "error"}
    merged = {**status.to_wire(), **fields}
    return type(status).model_validate(merged)


def as_inputs(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Upstream objects as runtime inputs: their status fields, without conditions.

    >>> as_inputs({"Dataset/a": {"spec": {}, "status": {"version": "v1", "phase": "Ready"}}})
    {'Dataset/a': {'version': 'v1'}}
    """
    return {
        key: {k: v for k, v in (obj.get("status") or {}).items() if k not in OPERATOR_FIELDS}
        for key, obj in objects.items()
    }
