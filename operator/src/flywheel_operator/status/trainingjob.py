"""TrainingJob status: Running, then Succeeded or Failed for good."""

from __future__ import annotations

from datetime import datetime

from flywheel.api.common import ConditionStatus
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.status.conditions import set_status_condition
from flywheel_operator.status.observe import Run, RunState
from flywheel_operator.status.results import merge_result

SUCCEEDED = "Succeeded"
RUNNING = "Running"


def status(old: TrainingJobStatus, generation: int, run: Run, now: datetime) -> TrainingJobStatus:
    """Terminal: once Succeeded or Failed, it stays so."""
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    if terminal(status):
        return status
    if (
        run.state in (RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED)
        and not status.start_time
    ):
        status.start_time = now
    if run.state == RunState.SUCCEEDED and run.result:
        status = merge_result(status, run.result)
        status.completion_time = now
        set_status_condition(
            status, SUCCEEDED, True, "Trained", f"model version {status.model_version}", now
        )
        set_status_condition(status, RUNNING, False, "Finished", "", now)
        status.phase = "Succeeded"
    elif run.state.finished:
        message = run.message or "the run reported no result"
        status = merge_result(status, run.result)
        status.completion_time = now
        set_status_condition(status, SUCCEEDED, False, "TrainingFailed", message, now)
        set_status_condition(status, RUNNING, False, "Finished", message, now)
        status.phase = "Failed"
    else:
        set_status_condition(
            status, SUCCEEDED, ConditionStatus.UNKNOWN, run.state.value, run.name, now
        )
        running = run.state == RunState.RUNNING
        set_status_condition(status, RUNNING, running, run.state.value, run.name, now)
        status.phase = "Running" if running else "Pending"
    return status


def terminal(status: TrainingJobStatus) -> bool:
    return status.phase in ("Succeeded", "Failed")
