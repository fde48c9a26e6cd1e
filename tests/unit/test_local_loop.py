"""Closing the loop in `flywheel run`: drift with a retrain action runs the retrain, then
rolls out what it registered as the deployment's candidate; anything less retrains nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flywheel import entrypoints, manifests, plan
from flywheel.api import conditions
from flywheel.api.common import ConditionStatus, StatusBase
from flywheel.api.driftmonitor import DriftMonitor, DriftMonitorStatus
from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.api.trainingjob import TrainingJob, TrainingJobStatus
from flywheel.entrypoints import Entrypoint, RunContext
from flywheel.local import executor, loop

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

RAN: list[tuple[str, Any, RunContext]] = []
DRIFT: dict[str, ConditionStatus] = {"status": ConditionStatus.TRUE}


def runner(resource: Any, context: RunContext) -> StatusBase:
    """Each kind's runner, recording what it was given."""
    RAN.append((resource.key, resource, context))
    if isinstance(resource, TrainingJob):
        version = {"churn-logistic": "v1", "churn-mlp": "v2"}.get(resource.name, "v3")
        return TrainingJobStatus(phase="Succeeded", model_name="churn", model_version=version)
    if isinstance(resource, ModelDeployment):
        ref = resource.spec.candidate
        assert ref is not None and ref.training_job_ref is not None
        candidate = context.input_status("TrainingJob", ref.training_job_ref.name)
        assert isinstance(candidate, TrainingJobStatus)
        return ModelDeploymentStatus(phase="Promoted", stable_version=candidate.model_version)
    if isinstance(resource, DriftMonitor):
        status = DriftMonitorStatus(phase="Ready")
        status.conditions = conditions.set_condition(
            [], loop.DRIFT_DETECTED, DRIFT["status"], "Checked", "", NOW
        )
        return status
    return StatusBase(phase="Ready")


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[plan.Step]:
    RAN.clear()
    DRIFT["status"] = ConditionStatus.TRUE
    table = {
        kind: Entrypoint(kind, f"{__name__}:runner", ("x",))
        for kind in ("Dataset", "FeatureView", "TrainingJob", "ModelDeployment", "DriftMonitor")
    }
    monkeypatch.setattr(entrypoints, "ENTRYPOINTS", table)
    ordered, errors = plan.order(manifests.load([QUICKSTART]).resources)
    assert errors == []
    return ordered


def test_drift_retrains_and_canaries_the_retrained_model(
    steps: list[plan.Step], tmp_path: Path
) -> None:
    outcomes = executor.execute(steps, RunContext(artifact_root=tmp_path))
    keys = [o.step.key for o in outcomes]
    assert keys[-3:] == [
        "DriftMonitor/churn-drift",
        "TrainingJob/churn-drift-retrain-1",
        "ModelDeployment/churn",
    ]
    _, retrain, seen = RAN[-2]
    monitor = next(s.resource for s in steps if s.key == "DriftMonitor/churn-drift")
    assert isinstance(monitor, DriftMonitor) and monitor.spec.action.retrain is not None
    assert retrain.spec == monitor.spec.action.retrain.template.spec
    # Its notWorseThanDeployed gate reads what the deployment serves now.
    served = seen.input_status("ModelDeployment", "churn")
    assert isinstance(served, ModelDeploymentStatus) and served.stable_version == "v2"
    _, canary, _ = RAN[-1]
    assert canary.spec.stable.model_name == "churn" and canary.spec.stable.version == "v2"
    assert canary.spec.candidate.training_job_ref.name == "churn-drift-retrain-1"
    deployment = next(s.resource for s in steps if s.key == "ModelDeployment/churn")
    assert isinstance(deployment, ModelDeployment)
    assert canary.spec.rollout == deployment.spec.rollout
    final = outcomes[-1].status
    assert isinstance(final, ModelDeploymentStatus) and final.stable_version == "v3"


@pytest.mark.parametrize("verdict", [ConditionStatus.FALSE, ConditionStatus.UNKNOWN])
def test_no_drift_or_too_little_data_retrains_nothing(
    steps: list[plan.Step], tmp_path: Path, verdict: ConditionStatus
) -> None:
    DRIFT["status"] = verdict
    outcomes = executor.execute(steps, RunContext(artifact_root=tmp_path))
    assert outcomes[-1].step.key == "DriftMonitor/churn-drift"
    assert not any("retrain" in key for key, _, _ in RAN)


def test_an_alert_action_retrains_nothing() -> None:
    monitor = DriftMonitor.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": "m"},
            "spec": {
                "deploymentRef": {"name": "churn"},
                "reference": {"featureViewRef": {"name": "f"}},
                "action": {"type": "alert"},
            },
        }
    )
    status = DriftMonitorStatus()
    status.conditions = conditions.set_condition([], loop.DRIFT_DETECTED, True, "Checked", "", NOW)
    assert not loop.wants_retrain(monitor, status)
