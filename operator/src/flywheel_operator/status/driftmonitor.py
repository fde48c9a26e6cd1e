"""DriftMonitor status from its latest monitor run, and when drift asks for a retrain."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from flywheel.api.common import ConditionStatus, duration_seconds
from flywheel.api.driftmonitor import ActionType, DriftMonitor, DriftMonitorStatus, Verdict
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


def rollout_of_retrain(
    status: DriftMonitorStatus, job: dict[str, Any] | None, deployment: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The merge patch of the ModelDeployment's spec that rolls out the latest retrain as a
    canary against the version now serving, or None (not trained yet, failed its gates,
    already rolled out, or the deployment serves nothing yet).

    The same change `flywheel run` makes on one machine: stable becomes the serving
    version by name, the retrain's TrainingJob the candidate; the deployment's own rollout
    spec then guards it.
    """
    name = status.last_retrain_job
    if not name or job is None or deployment is None:
        return None
    trained = job.get("status") or {}
    version = trained.get("modelVersion")
    if trained.get("phase") != "Succeeded" or not version:
        return None
    spec = deployment.get("spec") or {}
    if ((spec.get("candidate") or {}).get("trainingJobRef") or {}).get("name") == name:
        return None
    serving = (deployment.get("status") or {}).get("stableVersion")
    if not serving or serving == version:
        return None
    model = trained.get("modelName") or job["spec"]["output"]["modelName"]
    return {
        "spec": {
            # null removes the other way of naming a version (merge patch, RFC 7386).
            "stable": {"modelName": model, "version": serving, "trainingJobRef": None},
            "candidate": {"trainingJobRef": {"name": name}, "modelName": None, "version": None},
        }
    }
