"""Status of each kind from what was observed. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flywheel.api.common import ConditionStatus
from flywheel.api.dataset import DatasetStatus
from flywheel.api.driftmonitor import DriftMonitorStatus
from flywheel.api.featureview import FeatureViewStatus
from flywheel.api.modeldeployment import (
    AnalysisDecision,
    AnalysisResult,
    ModelDeploymentStatus,
    Rollout,
)
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.status import common, rollout
from flywheel_operator.status.observe import Run, RunState

DATASET = common.Words(
    done="Published", running="Ingesting", failed="IngestFailed", has_result="version"
)
FEATUREVIEW = common.Words(
    done="Materialized",
    running="Materializing",
    failed="MaterializationFailed",
    has_result="last_materialized",
)
DRIFT = common.Words(
    done="Checked", running="Checking", failed="CheckFailed", has_result="last_run"
)

SUCCEEDED = "Succeeded"
RUNNING = "Running"
PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"
DRIFT_DETECTED = "DriftDetected"


def dataset(old: DatasetStatus, generation: int, run: Run, now: datetime) -> DatasetStatus:
    return common.from_run(old, generation, run, now, DATASET)


def featureview(
    old: FeatureViewStatus, generation: int, run: Run, now: datetime
) -> FeatureViewStatus:
    return common.from_run(old, generation, run, now, FEATUREVIEW)


def trainingjob(
    old: TrainingJobStatus, generation: int, run: Run, now: datetime
) -> TrainingJobStatus:
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
        status = common.merge_result(status, run.result)
        status.completion_time = now
        common.set_cond(
            status, SUCCEEDED, True, "Trained", f"model version {status.model_version}", now
        )
        common.set_cond(status, RUNNING, False, "Finished", "", now)
        status.phase = "Succeeded"
    elif run.state.finished:
        message = run.message or "the run reported no result"
        status = common.merge_result(status, run.result)
        status.completion_time = now
        common.set_cond(status, SUCCEEDED, False, "TrainingFailed", message, now)
        common.set_cond(status, RUNNING, False, "Finished", message, now)
        status.phase = "Failed"
    else:
        common.set_cond(status, SUCCEEDED, ConditionStatus.UNKNOWN, run.state.value, run.name, now)
        running = run.state == RunState.RUNNING
        common.set_cond(status, RUNNING, running, run.state.value, run.name, now)
        status.phase = "Running" if running else "Pending"
    return status


def terminal(status: TrainingJobStatus) -> bool:
    return status.phase in ("Succeeded", "Failed")


def modeldeployment(
    old: ModelDeploymentStatus,
    generation: int,
    spec_rollout: Rollout,
    stable: str,
    candidate: str | None,
    decision: rollout.Decision,
    split: dict[str, float],
    serving: tuple[bool, str],
    now: datetime,
    url: str,
) -> ModelDeploymentStatus:
    status = old.model_copy(deep=True)
    status.observed_generation = generation
    state = decision.state
    status.traffic = split
    status.traffic_summary = rollout.summary(split)
    status.url = url
    status.last_analysis = AnalysisResult(
        time=now, decision=decision.decision, message=decision.message
    )
    status.failed_analyses = state.failures
    status.step = state.step
    status.step_started = state.step_started
    steps = spec_rollout.canary.steps if spec_rollout.canary else []
    status.step_summary = f"{state.step + 1}/{len(steps)}" if steps and candidate else None
    status.stable_version = stable
    status.candidate_version = candidate
    ready, why = serving
    common.set_cond(status, common.READY, ready, "Serving" if ready else "NotServing", why, now)
    if state.outcome == AnalysisDecision.PROMOTE and candidate:
        status.stable_version, status.candidate_version = candidate, None
        common.set_cond(
            status, PROMOTED, True, "AnalysisPassed", f"{candidate}: {decision.message}", now
        )
        common.set_cond(status, ROLLED_BACK, False, "Promoted", "", now)
        common.set_cond(status, common.PROGRESSING, False, "RolloutFinished", "", now)
        status.phase = "Promoted"
    elif state.outcome == AnalysisDecision.ROLLBACK and candidate:
        common.set_cond(
            status, ROLLED_BACK, True, "AnalysisFailed", f"{candidate}: {decision.message}", now
        )
        common.set_cond(status, PROMOTED, False, "RolledBack", "", now)
        common.set_cond(status, common.PROGRESSING, False, "RolloutFinished", "", now)
        status.phase = "RolledBack"
    elif candidate:
        common.set_cond(
            status, common.PROGRESSING, True, decision.decision.value, decision.message, now
        )
        common.set_cond(status, PROMOTED, False, "RolloutInProgress", "", now)
        status.phase = "Progressing" if ready else "Deploying"
    else:
        common.set_cond(status, common.PROGRESSING, False, "NoCandidate", "", now)
        status.phase = "Ready" if ready else "Deploying"
    return status


def rollout_state(status: ModelDeploymentStatus, candidate: str | None) -> rollout.State:
    """The rollout state kept in status; a different candidate starts a new rollout."""
    if candidate is None:
        return rollout.State()
    if status.stable_version == candidate:
        return rollout.State(outcome=AnalysisDecision.PROMOTE)
    if status.candidate_version != candidate:
        return rollout.State()
    if status.phase == "RolledBack":
        return rollout.State(outcome=AnalysisDecision.ROLLBACK)
    return rollout.State(
        step=status.step or 0, step_started=status.step_started, failures=status.failed_analyses
    )


def driftmonitor(
    old: DriftMonitorStatus, generation: int, run: Run, now: datetime
) -> DriftMonitorStatus:
    if run.state == RunState.MISSING:  # before the first scheduled run
        status = old.model_copy(deep=True)
        status.observed_generation = generation
        common.set_cond(status, common.READY, True, "Scheduled", "waiting for the first run", now)
        status.phase = status.phase if status.last_run else "Scheduled"
    else:
        status = common.from_run(old, generation, run, now, DRIFT)
    drifted = bool(status.drifted_features)
    if status.last_run is None:
        common.set_cond(status, DRIFT_DETECTED, ConditionStatus.UNKNOWN, "NoRunYet", "", now)
    else:
        message = ", ".join(status.drifted_features)
        common.set_cond(
            status, DRIFT_DETECTED, drifted, "Drift" if drifted else "NoDrift", message, now
        )
    return status


def retrain_due(status: DriftMonitorStatus, cooldown_seconds: float, now: datetime) -> bool:
    """Drift seen in the latest run, and the last retrain is older than the cooldown."""
    if not status.drifted_features or status.last_run is None:
        return False
    if status.last_retrain is not None:
        if status.last_retrain >= status.last_run:  # this run already triggered one
            return False
        if (now - status.last_retrain).total_seconds() < cooldown_seconds:
            return False
    return True


def as_inputs(statuses: dict[str, Any]) -> dict[str, Any]:
    """Upstream statuses as runtime inputs: only what a run needs, no conditions."""
    return {
        key: {k: v for k, v in s.items() if k not in common.OPERATOR_FIELDS}
        for key, s in statuses.items()
    }
