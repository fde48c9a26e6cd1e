"""Children's status as the API returns it, for status tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def job(name: str, condition: str | None = None, active: int = 0) -> dict[str, Any]:
    conds = (
        [{"type": condition, "status": "True", "message": "BackoffLimitExceeded"}]
        if condition
        else []
    )
    return {"metadata": {"name": name}, "status": {"conditions": conds, "active": active}}


def pod(message: str, finished: str = "2026-05-01T00:00:00Z") -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, "message": message, "finishedAt": finished}}
    return {"status": {"containerStatuses": [{"name": "c", "state": state}]}}


def conds(status: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}
