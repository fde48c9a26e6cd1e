"""Objects a resource refers to: missing, not ready, or ready."""

from __future__ import annotations

from typing import Any

from flywheel_operator.status import dependencies

READY: dict[str, Any] = {
    "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}
}
WAITING: dict[str, Any] = {"status": {"phase": "Ingesting"}}


def test_each_reference_is_ready_missing_or_waited_for() -> None:
    refs = [("Dataset", "a"), ("Dataset", "b"), ("Dataset", "c"), ("Dataset", "a")]
    found: dict[tuple[str, str], dict[str, Any] | None] = {
        ("Dataset", "a"): READY,
        ("Dataset", "b"): WAITING,
        ("Dataset", "c"): None,
    }
    ready, waiting = dependencies.sort_out(refs, found, dependencies.condition_true("Ready"))
    assert ready == {"Dataset/a": READY}
    assert waiting == ["Dataset/b is Ingesting", "Dataset/c does not exist"]


def test_readiness_predicates() -> None:
    assert dependencies.has_phase(WAITING["status"])
    assert not dependencies.has_phase({})
    assert not dependencies.condition_true("Succeeded")(READY["status"])
