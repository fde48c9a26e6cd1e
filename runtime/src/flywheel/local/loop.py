"""Closing the loop on one machine: drift -> retrain -> the retrained model as a canary.

What the operator does across reconciles, `flywheel run` does in order, once:

1. a DriftMonitor whose run found drift (`DriftDetected` True) and whose action is
   `retrain` gets its first retrain TrainingJob, `<monitor>-retrain-1`, from its template
   (the operator's name and spec for the same retrain);
2. the retrain runs with the same training runner, against the deployment's serving
   version (its `notWorseThanDeployed` gate reads the deployment's status);
3. if it registered a version, the deployment rolls it out: the version now serving is
   stable, the retrained one the candidate, under the deployment's own rollout spec.

Insufficient data or no drift retrains nothing; a cooldown is moot within one run.
"""

from __future__ import annotations

from collections.abc import Callable

from flywheel.api import conditions
from flywheel.api.common import ObjectMeta, StatusBase
from flywheel.api.driftmonitor import ActionType, DriftMonitor, DriftMonitorStatus
from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus, ModelRef
from flywheel.api.trainingjob import TrainingJob
from flywheel.entrypoints import RunContext

DRIFT_DETECTED = "DriftDetected"

# (kind/name, the object run, its status or None, an error)
Ran = tuple[object, StatusBase | None, str | None]
RunStep = Callable[[object, RunContext], StatusBase]


def retrain_job(monitor: DriftMonitor, number: int = 1) -> TrainingJob:
    """The n-th retrain of a monitor, named as the operator names it."""
    retrain = monitor.spec.action.retrain
    assert retrain is not None
    return TrainingJob(
        metadata=ObjectMeta(name=f"{monitor.name}-retrain-{number}", namespace=None),
        spec=retrain.template.spec,
    )


def wants_retrain(monitor: DriftMonitor, status: StatusBase | None) -> bool:
    return (
        monitor.spec.action.type == ActionType.RETRAIN
        and isinstance(status, DriftMonitorStatus)
        and conditions.is_true(status.conditions, DRIFT_DETECTED)
    )


def rollout_of(
    deployment: ModelDeployment, serving: ModelDeploymentStatus, job: TrainingJob
) -> ModelDeployment:
    """The deployment with what serves now as stable and the retrained model as candidate."""
    assert serving.stable_version is not None
    stable = ModelRef(model_name=job.spec.output.model_name, version=serving.stable_version)
    spec = deployment.spec.model_copy(
        update={
            "stable": stable,
            "candidate": ModelRef.model_validate({"trainingJobRef": {"name": job.name}}),
        }
    )
    return deployment.model_copy(update={"spec": spec, "status": None})
