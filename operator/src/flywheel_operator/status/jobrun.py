"""Status of a kind whose work is a Job run: Ready once a result exists."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TypeVar

from flywheel.api.common import StatusBase
from flywheel_operator.status.conditions import DEGRADED, PROGRESSING, READY, set_status_condition
from flywheel_operator.status.observe import Run, RunState
from flywheel_operator.status.results import merge_result

S = TypeVar("S", bound=StatusBase)


@dataclasses.dataclass(frozen=True)
class RunReasons:
    """How one kind names the states of its run, in condition reasons and phases."""

    done: str  # reason when a result is published, e.g. "Published"
    running: str  # phase and reason while it runs, e.g. "Ingesting"
    failed: str  # reason when the latest run failed, e.g. "IngestFailed"
    has_result: str  # the status field that exists once a result was published


def from_run(old: S, generation: int, run: Run, now: datetime, reasons: RunReasons) -> S:
    """Ready once a result exists (and it stays so while a newer run is in progress or
    has failed: the previous version keeps serving)."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    if run.state == RunState.SUCCEEDED:
        status = merge_result(status, run.result)
    published = getattr(status, reasons.has_result) is not None
    running = run.state in (RunState.PENDING, RunState.RUNNING, RunState.MISSING)
    failed = run.state == RunState.FAILED or (run.state == RunState.SUCCEEDED and not run.result)
    failure = run.message or "the run reported no result"

    if published:
        set_status_condition(status, READY, True, reasons.done, _describe(status, reasons), now)
    elif failed:
        set_status_condition(status, READY, False, reasons.failed, failure, now)
    else:
        set_status_condition(status, READY, False, reasons.running, _run_message(run), now)
    set_status_condition(
        status,
        PROGRESSING,
        running,
        reasons.running if running else "Idle",
        _run_message(run) if running else "",
        now,
    )
    set_status_condition(
        status,
        DEGRADED,
        failed,
        reasons.failed if failed else "AsExpected",
        failure if failed else "",
        now,
    )
    if failed:
        status.phase = "Degraded" if published else "Failed"
    elif running and not published:
        status.phase = reasons.running
    else:
        status.phase = "Ready" if published else reasons.running
    return status


def _run_message(run: Run) -> str:
    text = f"{run.name or 'run'} {run.state}"
    return f"{text}: {run.message}" if run.message else text


def _describe(status: StatusBase, reasons: RunReasons) -> str:
    value = getattr(status, reasons.has_result)
    return f"{reasons.has_result} {value}"
