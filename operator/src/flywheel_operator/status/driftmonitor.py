"""DriftMonitor status from its latest monitor run, and when drift asks for a retrain."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from flywheel.api.common import ConditionStatus, duration_seconds
from flywheel.api.driftmonitor import (
    SKEWED,
    ActionType,
    DriftEvent,
    DriftMonitor,
    DriftMonitorStatus,
    Verdict,
)
from flywheel_operator.status import jobrun
from flywheel_operator.status.conditions import READY, set_status_condition
from flywheel_operator.status.observe import Run, RunState

REASONS = jobrun.RunReasons(
    done="Checked", running="Checking", failed="CheckFailed", has_result="last_run"
)
DRIFT_DETECTED = "DriftDetected"


def status(old: DriftMonitorStatus, generation: int, run: Run, now: datetime) -> DriftMonitorStatus:
    if run.state == RunState.MISSING:  # before the first scheduled run
        status = old.model_copy(deep=True)
        status.observed_generation = generation
        set_status_condition(status, READY, True, "Scheduled", "waiting for the first run", now)
        status.phase = status.phase if status.last_run else "Scheduled"
    else:
        status = jobrun.from_run(old, generation, run, now, REASONS)
    if status.last_run is None:
        set_status_condition(status, DRIFT_DETECTED, ConditionStatus.UNKNOWN, "NoRunYet", "", now)
    elif status.verdict == Verdict.INSUFFICIENT:
        # Too few samples says nothing either way: neither drift nor its absence.
        message = f"too few samples in the window ({status.samples or 0} requests)"
        set_status_condition(
            status, DRIFT_DETECTED, ConditionStatus.UNKNOWN, "Insufficient", message, now
        )
    else:
        drifted = drift_seen(status)
        message = ", ".join(status.drifted_features)
        set_status_condition(
            status, DRIFT_DETECTED, drifted, "Drift" if drifted else "NoDrift", message, now
        )
    if status.skew is not None:  # spec.skew: the run compared served and offline features
        set_status_condition(status, SKEWED, *status.skew.condition(), now)
    return status


def drift_seen(status: DriftMonitorStatus) -> bool:
    """The latest run's verdict is Drift (results without a verdict: a drifted feature)."""
    if status.verdict is not None:
        return status.verdict == Verdict.DRIFT
    return bool(status.drifted_features)


def retrain_due(status: DriftMonitorStatus, cooldown_seconds: float, now: datetime) -> bool:
    """Drift seen in the latest run, and the last retrain is older than the cooldown."""
    if not drift_seen(status) or status.last_run is None:
        return False
    if status.last_retrain is not None:
        if status.last_retrain >= status.last_run:  # this run already triggered one
            return False
        if (now - status.last_retrain).total_seconds() < cooldown_seconds:
            return False
    return True


def cooldown_ends(resource: DriftMonitor, status: DriftMonitorStatus) -> datetime | None:
    """When the cooldown that holds back a retrain the latest run's drift asks for ends;
    None when nothing is held back."""
    action = resource.spec.action
    if action.type != ActionType.RETRAIN or action.retrain is None:
        return None
    if not drift_seen(status) or status.last_run is None or status.last_retrain is None:
        return None
    if status.last_retrain >= status.last_run:
        return None
    return status.last_retrain + timedelta(seconds=duration_seconds(action.retrain.cooldown))


@dataclasses.dataclass(frozen=True)
class Retrain:
    number: int  # the n-th retrain this monitor triggers: its TrainingJob's name suffix


def retrain(resource: DriftMonitor, status: DriftMonitorStatus, now: datetime) -> Retrain | None:
    """The retrain to create now, or None: action `retrain`, drift in the latest run, and
    the cooldown since the last retrain passed."""
    action = resource.spec.action
    if action.type != ActionType.RETRAIN or action.retrain is None:
        return None
    if not retrain_due(status, duration_seconds(action.retrain.cooldown), now):
        return None
    return Retrain(status.retrains_triggered + 1)


def record_retrain(
    status: DriftMonitorStatus, retrain: Retrain, job_name: str, now: datetime
) -> DriftMonitorStatus:
    """The status once the retrain's TrainingJob exists."""
    recorded = status.model_copy()
    recorded.retrains_triggered, recorded.last_retrain = retrain.number, now
    recorded.last_retrain_job = job_name
    return recorded


def drift_event(resource: DriftMonitor, status: DriftMonitorStatus) -> DriftEvent:
    """The drift a retrain answers: this monitor, its latest run, what drifted."""
    return DriftEvent(
        monitor=resource.name, time=status.last_run, drifted_features=status.drifted_features
    )


RETRAIN_PROMOTED = "RetrainPromoted"


@dataclasses.dataclass(frozen=True)
class RetrainOutcome:
    """Where the latest retrain stands, as RetrainPromoted says it."""

    status: ConditionStatus
    reason: str
    message: str
    version: str | None = None

    @property
    def event_type(self) -> str:
        return "Warning" if self.status == ConditionStatus.FALSE else "Normal"


def retrain_outcome(
    status: DriftMonitorStatus,
    job: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
) -> RetrainOutcome | None:
    """The fate of the latest retrain, read from its TrainingJob and the deployment:
    training, failed, registered as `candidate`, in its canary, promoted or rolled back.
    None before the first retrain. Nothing here writes anything: the deployment picks
    the retrain up by alias (`{modelName, alias: candidate}`), never by a spec change."""
    name = status.last_retrain_job
    if not name:
        return None
    unknown, false = ConditionStatus.UNKNOWN, ConditionStatus.FALSE
    md_status = (deployment or {}).get("status") or {}
    stable = md_status.get("stableVersion")
    keeps = f"stable {stable} keeps serving" if stable else "stable keeps serving"
    if job is None:
        return RetrainOutcome(unknown, "TrainingJobNotFound", f"tj/{name} not found")
    trained = job.get("status") or {}
    phase = trained.get("phase")
    if phase == "Failed":
        reason, why = _failure(trained)
        message = f"tj/{name} failed: {why}; {keeps}"
        return RetrainOutcome(false, reason, message[:1024], trained.get("modelVersion"))
    version = trained.get("modelVersion")
    if phase != "Succeeded" or not version:
        return RetrainOutcome(unknown, "Training", f"tj/{name} is training; {keeps}")
    model = trained.get("modelName") or job["spec"]["output"]["modelName"]
    if "candidate" not in (trained.get("aliases") or []):
        message = f"tj/{name} registered {version} without the alias candidate; {keeps}"
        return RetrainOutcome(false, "NotACandidate", message, version)
    if deployment is None:
        return RetrainOutcome(unknown, "DeploymentNotFound", "the deployment is missing", version)
    md = f"md/{deployment['metadata']['name']}"
    ref = (deployment.get("spec") or {}).get("candidate") or {}
    if ref.get("alias") != "candidate" or ref.get("modelName") != model:
        message = (
            f"{md} names no {model}@candidate in spec.candidate: {version} waits in the "
            f"registry as candidate; {keeps}"
        )
        return RetrainOutcome(false, "NotFollowed", message, version)
    if stable == version and _true(md_status, "Promoted"):
        return RetrainOutcome(ConditionStatus.TRUE, "Promoted", f"{md} promoted {version}", version)
    if md_status.get("candidateVersion") == version:
        if md_status.get("phase") == "RolledBack":
            why = _message(md_status, "RolledBack")
            message = f"{md} rolled {version} back ({why}); {keeps}"
            return RetrainOutcome(false, "RolledBack", message[:1024], version)
        traffic = md_status.get("trafficSummary") or ""
        return RetrainOutcome(unknown, "Canary", f"{md} rolls {version} out: {traffic}", version)
    message = f"{version} has the alias candidate; waiting for {md} to pick it up"
    return RetrainOutcome(unknown, "Registered", message, version)


def _true(status: dict[str, Any], type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or []
    )


def _message(status: dict[str, Any], type_: str) -> str:
    for c in status.get("conditions") or []:
        if c.get("type") == type_:
            return str(c.get("message") or "")
    return ""


def _failure(trained: dict[str, Any]) -> tuple[str, str]:
    """(reason, message) of a failed training's Succeeded condition (GateFailed, ...)."""
    for c in trained.get("conditions") or []:
        if c.get("type") == "Succeeded":
            return str(c.get("reason") or "TrainingFailed"), str(c.get("message") or "")
    return "TrainingFailed", "the run reported no reason"


def follow_retrain(
    status: DriftMonitorStatus, outcome: RetrainOutcome | None, now: datetime
) -> DriftMonitorStatus:
    """The status with RetrainPromoted (and the version the retrain registered)."""
    if outcome is None:
        return status
    followed = status.model_copy(deep=True)
    followed.last_retrain_version = outcome.version
    set_status_condition(
        followed, RETRAIN_PROMOTED, outcome.status, outcome.reason, outcome.message, now
    )
    return followed


def verdict_event(old: DriftMonitorStatus, new: DriftMonitorStatus) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event telling a new run's verdict, or None.

    Every run that finds drift is told (a Warning); a run that finds none only when the
    verdict changed, so a quiet monitor does not write an Event each schedule.
    """
    if new.last_run is None or new.last_run == old.last_run or new.verdict is None:
        return None
    against = f"against {new.reference_version}" if new.reference_version else ""
    if new.verdict == Verdict.DRIFT:
        score = f"; max score {new.max_score:g}" if new.max_score is not None else ""
        message = (
            f"{', '.join(new.drifted_features)} drifted over {new.samples} requests "
            f"{against}{score}"
        )
        return "Warning", DRIFT_DETECTED, message
    if new.verdict == old.verdict:
        return None
    if new.verdict == Verdict.NO_DRIFT:
        return "Normal", "NoDrift", f"no drift over {new.samples} requests {against}".strip()
    return "Normal", "Insufficient", f"too few requests to decide ({new.samples})"


def retrain_event(old: DriftMonitorStatus, new: DriftMonitorStatus) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Event telling a new step of the retrain, or None."""
    before = next((c for c in old.conditions if c.type == RETRAIN_PROMOTED), None)
    after = next((c for c in new.conditions if c.type == RETRAIN_PROMOTED), None)
    if after is None or (
        before is not None and (before.reason, before.message) == (after.reason, after.message)
    ):
        return None
    if before is not None and before.reason == after.reason and after.reason in ("Canary",):
        return None  # a canary's traffic changes are the deployment's own Events
    type_ = "Warning" if after.status == ConditionStatus.FALSE else "Normal"
    return type_, f"Retrain{after.reason}", after.message
