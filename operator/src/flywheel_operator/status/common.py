"""Status pieces shared by the kinds: conditions of a run, waiting, invalid specs."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, TypeVar

from flywheel.api import conditions
from flywheel.api.common import ConditionStatus, StatusBase
from flywheel_operator.redaction import redact
from flywheel_operator.status.observe import Run, RunState

S = TypeVar("S", bound=StatusBase)

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
# Fields the operator owns; a runtime result never overwrites them.
OPERATOR_FIELDS = {"conditions", "phase", "observedGeneration"}


@dataclasses.dataclass(frozen=True)
class Words:
    """How one kind names the states of its run, for reasons and phases."""

    done: str  # reason when a result is published, e.g. "Published"
    running: str  # phase and reason while it runs, e.g. "Ingesting"
    failed: str  # reason when the latest run failed, e.g. "IngestFailed"
    has_result: str  # the status field that exists once a result was published


def set_cond(
    status: S, type_: str, value: ConditionStatus | bool, reason: str, message: str, now: datetime
) -> None:
    status.conditions = conditions.set_condition(
        status.conditions, type_, value, reason, message, now, status.observed_generation
    )


def merge_result(status: S, result: dict[str, Any] | None) -> S:
    """The status with the fields a runtime result reports (never the operator's own)."""
    if not result:
        return status
    fields = {k: redact(v) for k, v in result.items() if k not in OPERATOR_FIELDS and k != "error"}
    merged = {**status.to_wire(), **fields}
    return type(status).model_validate(merged)


def from_run(old: S, generation: int, run: Run, now: datetime, words: Words) -> S:
    """Status of a kind whose work is a Job: Ready once a result exists (and stays so
    while a newer run is in progress or has failed: the previous version keeps serving)."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    if run.state == RunState.SUCCEEDED:
        status = merge_result(status, run.result)
    published = getattr(status, words.has_result) is not None
    running = run.state in (RunState.PENDING, RunState.RUNNING, RunState.MISSING)
    failed = run.state == RunState.FAILED or (run.state == RunState.SUCCEEDED and not run.result)
    failure = run.message or "the run reported no result"

    if published:
        set_cond(status, READY, True, words.done, _describe(status, words), now)
    elif failed:
        set_cond(status, READY, False, words.failed, failure, now)
    else:
        set_cond(status, READY, False, words.running, _run_message(run), now)
    set_cond(
        status,
        PROGRESSING,
        running,
        words.running if running else "Idle",
        _run_message(run) if running else "",
        now,
    )
    set_cond(
        status,
        DEGRADED,
        failed,
        words.failed if failed else "AsExpected",
        failure if failed else "",
        now,
    )
    if failed:
        status.phase = "Degraded" if published else "Failed"
    elif running and not published:
        status.phase = words.running
    else:
        status.phase = "Ready" if published else words.running
    return status


def _run_message(run: Run) -> str:
    text = f"{run.name or 'run'} {run.state}"
    return f"{text}: {run.message}" if run.message else text


def _describe(status: StatusBase, words: Words) -> str:
    value = getattr(status, words.has_result)
    return f"{words.has_result} {value}"


def waiting(old: S, generation: int, message: str, now: datetime) -> S:
    """Dependencies are not ready yet; what was published before stays published."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    ready = conditions.is_true(status.conditions, READY)
    if not ready:
        set_cond(status, READY, False, "WaitingForDependencies", message, now)
        status.phase = "Waiting"
    set_cond(status, PROGRESSING, False, "WaitingForDependencies", message, now)
    return status


def blocked(
    old: S, generation: int, reason: str, message: str, now: datetime, top: str = READY
) -> S:
    """The spec cannot be acted on (InvalidSpec, KubeRayNotInstalled): say why, keep the rest."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    set_cond(status, top, False, reason, message, now)
    status.phase = reason
    return status
