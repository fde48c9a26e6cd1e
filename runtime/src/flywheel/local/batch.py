"""`flywheel run`: a deployment with `spec.batchPrediction` scores once, right after it
resolves, with the version it then serves as stable (or the one `model` names); the run
shows in the timeline and in the deployment's status, as its CronJob's runs do in a
cluster."""

from __future__ import annotations

from datetime import UTC, datetime

from flywheel.api import conditions
from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.entrypoints import RunContext
from flywheel.local import deployment
from flywheel.serving import batchpredict
from flywheel.serving.versions import ServedVersion


def after_deployment(
    md: ModelDeployment, status: ModelDeploymentStatus, context: RunContext
) -> ModelDeploymentStatus:
    """The deployment's status with its batch run's outcome (unchanged without one)."""
    if md.spec.batch_prediction is None or not status.stable_version:
        return status
    now = datetime.now(UTC)
    try:
        model = scoring_version(md, status, context)
    except deployment.Unresolved as exc:
        ran = ModelDeploymentStatus(phase="Failed")
        ran.conditions = conditions.set_condition(
            [], batchpredict.BATCH_PREDICTED, False, exc.reason, str(exc), now
        )
    else:
        ran = batchpredict.run_status(md, model, context, now)
    said = ran.conditions[-1]
    merged = status.model_copy(deep=True)
    merged.batch_prediction = ran.batch_prediction or status.batch_prediction
    merged.conditions = conditions.set_condition(
        merged.conditions, said.type, said.status == "True", said.reason, said.message, now
    )
    if context.progress is not None:
        what = "batch prediction" if ran.batch_prediction else "batch prediction failed"
        context.progress(md.key, {"message": f"{what}: {said.message}"})
    return merged


def scoring_version(
    md: ModelDeployment, status: ModelDeploymentStatus, context: RunContext
) -> ServedVersion:
    """`spec.batchPrediction.model`, else the version the deployment serves as stable."""
    batch = md.spec.batch_prediction
    assert batch is not None
    if batch.model is not None:
        return deployment.resolve(batch.model, "spec.batchPrediction.model", context)
    stable = deployment.resolve(md.spec.stable, "spec.stable", context)
    if status.stable_version == stable.version:
        return stable
    candidate = deployment.resolve_candidate(md, stable, context)
    if candidate is not None and candidate.version == status.stable_version:
        return candidate  # promoted in this run
    directory = context.artifact_root / "models" / stable.model_name / "versions"
    return ServedVersion(
        stable.model_name, str(status.stable_version), str(directory / str(status.stable_version))
    )
