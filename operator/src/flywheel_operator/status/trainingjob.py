"""TrainingJob status: Running, then Succeeded or Failed for good."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel import entrypoints
from flywheel.api.common import ConditionStatus
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.status.conditions import set_status_condition
from flywheel_operator.status.observe import Run, RunState
from flywheel_operator.status.results import merge_result

SUCCEEDED = "Succeeded"
RUNNING = "Running"


def status(
    old: TrainingJobStatus,
    generation: int,
    run: Run,
    now: datetime,
    progress: str | None = None,
) -> TrainingJobStatus:
    """Terminal: once Succeeded or Failed, it stays so. `progress`: the latest the run
    reported (e.g. "epoch 7/20"), shown while it runs."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    if terminal(status):
        return status
    if (
        run.state in (RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED)
        and not status.start_time
    ):
        status.start_time = now
    if run.state == RunState.SUCCEEDED and run.result and not verdict_failed(run.result):
        status = merge_result(status, run.result)
        status.completion_time = now
        set_status_condition(
            status, SUCCEEDED, True, "Trained", f"model version {status.model_version}", now
        )
        set_status_condition(status, RUNNING, False, "Finished", "", now)
        status.phase = "Succeeded"
    elif run.state.finished:
        reason, message = failure(run)
        status = merge_result(status, run.result)
        status.completion_time = now
        set_status_condition(status, SUCCEEDED, False, reason, message, now)
        set_status_condition(status, RUNNING, False, "Finished", message, now)
        status.phase = "Failed"
    else:
        why = run.message or run.name
        set_status_condition(status, SUCCEEDED, ConditionStatus.UNKNOWN, run.state.value, why, now)
        running = run.state == RunState.RUNNING
        set_status_condition(status, RUNNING, running, run.state.value, why, now)
        status.phase = "Running" if running else "Pending"
        if progress and running:
            status.progress = progress
    return status


def progress(log: str | None) -> str | None:
    """The Progress column from the run's log: its last progress line, described.

    >>> progress('(driver) flywheel-progress {"epoch":7,"epochs":20,"loss":0.41}')
    'epoch 7/20 loss 0.410'
    >>> progress(None), progress("no progress yet")
    (None, None)
    """
    fields = entrypoints.last_progress(log or "")
    return entrypoints.describe_progress(fields) if fields else None


def verdict_failed(result: dict[str, Any]) -> bool:
    """A run that ended with a verdict against the model (a failed gate): the Ray job
    succeeded, so KubeRay does not retry it, and the result says Failed."""
    return result.get("phase") == "Failed"


def failure(run: Run) -> tuple[str, str]:
    """The condition's reason and message: the runtime's own reason when its result names
    one ("GateFailed: auc 0.55 < 0.60"), else TrainingFailed.

    >>> failure(Run("r", RunState.SUCCEEDED, {"error": "GateFailed: auc 0.55 < 0.60"}))
    ('GateFailed', 'auc 0.55 < 0.60')
    >>> failure(Run("r", RunState.FAILED, None, "OOMKilled"))
    ('TrainingFailed', 'OOMKilled')
    """
    error = str((run.result or {}).get("error") or run.message or "the run reported no result")
    reason, sep, rest = error.partition(": ")
    if sep and reason.isalnum() and reason[:1].isupper():
        return reason, rest
    return "TrainingFailed", error


def terminal(status: TrainingJobStatus) -> bool:
    return status.phase in ("Succeeded", "Failed")
