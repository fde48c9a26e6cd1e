"""Closing the loop on one machine: drift -> retrain -> the retrained model as a canary.

What the operator does across reconciles, `flywheel run` does in order, once, with the
same registry aliases and without changing any manifest:

1. a DriftMonitor whose run found drift (`DriftDetected` True) and whose action is
   `retrain` gets its first retrain TrainingJob, `<monitor>-retrain-1`, from its template
   (the operator's name and spec for the same retrain), naming the drift event;
2. the retrain runs with the same training runner, against the deployment's serving
   version (its `notWorseThanDeployed` gate reads the deployment's status); passing its
   gates, its version gets the registry alias `candidate`;
3. a deployment that names `{modelName, alias: candidate}` runs again as written: its
   aliases now resolve to the version serving (champion) and the retrained one
   (candidate), under its own rollout spec;
4. a promotion moves `champion` to the promoted version, in the registry (`promote`).

Insufficient data or no drift retrains nothing; a cooldown is moot within one run. A
failed retrain, or a candidate rolled back, leaves stable serving: the monitor's
`RetrainPromoted` condition says which.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flywheel.api import conditions
from flywheel.api.common import ConditionStatus, ObjectMeta, StatusBase
from flywheel.api.driftmonitor import (
    DRIFT_EVENT_ANNOTATION,
    ActionType,
    DriftEvent,
    DriftMonitor,
    DriftMonitorStatus,
)
from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.api.trainingjob import TrainingJob, TrainingJobStatus
from flywheel.entrypoints import RunContext
from flywheel.storage import uris
from flywheel.training import registry

DRIFT_DETECTED = "DriftDetected"
RETRAIN_PROMOTED = "RetrainPromoted"

# (kind/name, the object run, its status or None, an error)
Ran = tuple[object, StatusBase | None, str | None]
RunStep = Callable[[object, RunContext], StatusBase]


def retrain_job(
    monitor: DriftMonitor, number: int = 1, cause: DriftEvent | None = None
) -> TrainingJob:
    """The n-th retrain of a monitor, named as the operator names it, with its cause."""
    retrain = monitor.spec.action.retrain
    assert retrain is not None
    notes = {DRIFT_EVENT_ANNOTATION: cause.to_annotation()} if cause else {}
    return TrainingJob(
        metadata=ObjectMeta(
            name=f"{monitor.name}-retrain-{number}", namespace=None, annotations=notes
        ),
        spec=retrain.template.spec,
    )


def drift_event(monitor: DriftMonitor, status: StatusBase | None) -> DriftEvent:
    """The drift the retrain answers: the monitor, its run, what drifted."""
    if not isinstance(status, DriftMonitorStatus):
        return DriftEvent(monitor=monitor.name)
    return DriftEvent(
        monitor=monitor.name, time=status.last_run, drifted_features=status.drifted_features
    )


def wants_retrain(monitor: DriftMonitor, status: StatusBase | None) -> bool:
    return (
        monitor.spec.action.type == ActionType.RETRAIN
        and isinstance(status, DriftMonitorStatus)
        and conditions.is_true(status.conditions, DRIFT_DETECTED)
    )


def follows_candidate(deployment: ModelDeployment, job: TrainingJob) -> bool:
    """Whether the deployment names the retrain's model by the alias `candidate`."""
    ref = deployment.spec.candidate
    return (
        ref is not None
        and ref.alias == registry.CANDIDATE
        and ref.model_name == job.spec.output.model_name
    )


def follows_aliases(deployment: ModelDeployment) -> str | None:
    """The registry model a deployment names by alias, or None."""
    spec = deployment.spec
    refs = [spec.stable] + ([spec.candidate] if spec.candidate else [])
    return next((r.model_name for r in refs if r.alias is not None), None)


def promote(
    deployment: ModelDeployment, status: StatusBase | None, context: RunContext
) -> str | None:
    """A promotion of a deployment that follows aliases moves `champion` to the version
    promoted, directly in the registry under the artifact root. Returns that version,
    or None when nothing moved."""
    model = follows_aliases(deployment)
    if (
        model is None
        or not isinstance(status, ModelDeploymentStatus)
        or status.phase != "Promoted"
        or not status.stable_version
    ):
        return None
    root = uris.resolve(str(context.artifact_root / "models" / model))
    if registry.alias(root, registry.CHAMPION) == status.stable_version:
        return None
    message = next((c.message for c in status.conditions if c.type == "Promoted"), "")
    reason = f"promoted by md/{deployment.name}: {message}"[:256]
    registry.set_alias(root, registry.CHAMPION, status.stable_version, reason, datetime.now(UTC))
    return status.stable_version


def retrain_outcome(
    job: TrainingJob,
    trained: StatusBase | None,
    deployment: ModelDeployment,
    served: StatusBase | None,
) -> tuple[ConditionStatus, str, str]:
    """RetrainPromoted as the operator sets it: (status, reason, message)."""
    stable = served.stable_version if isinstance(served, ModelDeploymentStatus) else None
    keeps = f"stable {stable} keeps serving" if stable else "stable keeps serving"
    if not isinstance(trained, TrainingJobStatus) or trained.phase != "Succeeded":
        why = trained.conditions[-1] if trained and trained.conditions else None
        reason = why.reason if why else "TrainingFailed"
        said = why.message if why else "the retrain did not run"
        return ConditionStatus.FALSE, reason, f"tj/{job.name} failed: {said}; {keeps}"
    version = trained.model_version
    if registry.CANDIDATE not in trained.aliases:
        message = f"tj/{job.name} registered {version} without the alias candidate; {keeps}"
        return ConditionStatus.FALSE, "NotACandidate", message
    md = f"md/{deployment.name}"
    if not follows_candidate(deployment, job):
        message = (
            f"{md} names no {job.spec.output.model_name}@candidate in spec.candidate: "
            f"{version} waits in the registry as candidate; {keeps}"
        )
        return ConditionStatus.FALSE, "NotFollowed", message
    if not isinstance(served, ModelDeploymentStatus):
        return ConditionStatus.UNKNOWN, "Registered", f"{version} has the alias candidate"
    if served.phase == "Promoted" and served.stable_version == version:
        return ConditionStatus.TRUE, "Promoted", f"{md} promoted {version}"
    if served.phase == "RolledBack":
        said = next((c.message for c in served.conditions if c.type == "RolledBack"), "")
        return ConditionStatus.FALSE, "RolledBack", f"{md} rolled {version} back ({said}); {keeps}"
    return ConditionStatus.UNKNOWN, "Canary", f"{md} rolls {version} out: {served.traffic_summary}"


def report(
    monitor: StatusBase | None,
    job: TrainingJob,
    trained: StatusBase | None,
    outcome: tuple[ConditionStatus, str, str],
) -> None:
    """The retrain on the monitor's status, in place (the run's last word on it): which,
    the version it registered, and RetrainPromoted."""
    if not isinstance(monitor, DriftMonitorStatus):
        return
    value, reason, message = outcome
    monitor.retrains_triggered = max(monitor.retrains_triggered, 1)
    monitor.last_retrain_job = job.name
    if isinstance(trained, TrainingJobStatus):
        monitor.last_retrain_version = trained.model_version
    monitor.conditions = conditions.set_condition(
        monitor.conditions, RETRAIN_PROMOTED, value, reason, message, datetime.now(UTC)
    )
