"""Closing the loop in `flywheel run`: drift with a retrain action runs the retrain; what
it registered gets the alias candidate, which the deployment (unchanged) canaries, and a
promotion moves champion; anything less retrains nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flywheel import entrypoints, manifests, plan
from flywheel.api import conditions
from flywheel.api.common import ConditionStatus, ObjectMeta, StatusBase
from flywheel.api.driftmonitor import DriftEvent, DriftMonitor, DriftMonitorStatus
from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.api.trainingjob import TrainingJob, TrainingJobStatus
from flywheel.entrypoints import Entrypoint, RunContext
from flywheel.local import deployment, executor, loop
from flywheel.storage import uris
from flywheel.training import registry

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
NOW = datetime(2026, 1, 1, tzinfo=UTC)

RAN: list[tuple[str, Any, RunContext]] = []
DRIFT: dict[str, ConditionStatus] = {"status": ConditionStatus.TRUE}


def runner(resource: Any, context: RunContext) -> StatusBase:
    """Each kind's runner, recording what it was given. A training registers a version in
    the real registry (a file of its name: a version per training); a deployment serves
    what its aliases name and promotes its candidate."""
    RAN.append((resource.key, resource, context))
    if isinstance(resource, TrainingJob):
        root = uris.resolve(str(context.artifact_root / "models" / "churn"))
        built = context.artifact_root / "built" / resource.name
        built.mkdir(parents=True)
        (built / "model.txt").write_text(resource.name)
        entry = {"model": "churn", "trainingJob": resource.name}
        version, _, given = registry.register(root, built, entry, NOW)
        return TrainingJobStatus(
            phase="Succeeded", model_name="churn", model_version=version, aliases=sorted(given)
        )
    if isinstance(resource, ModelDeployment):
        stable = deployment.resolve(resource.spec.stable, "spec.stable", context)
        candidate = deployment.resolve_candidate(resource, stable, context)
        if candidate is None:
            return ModelDeploymentStatus(phase="Ready", stable_version=stable.version)
        promoted = ModelDeploymentStatus(phase="Promoted", stable_version=candidate.version)
        promoted.conditions = conditions.set_condition(
            [], "Promoted", True, "AnalysisPassed", "", NOW
        )
        return promoted
    if isinstance(resource, DriftMonitor):
        status = DriftMonitorStatus(phase="Ready", drifted_features=["plan"], last_run=NOW)
        status.conditions = conditions.set_condition(
            [], loop.DRIFT_DETECTED, DRIFT["status"], "Checked", "", NOW
        )
        return status
    return StatusBase(phase="Ready")


def versions(root: Path) -> dict[str, str]:
    """Training name -> the version it registered."""
    index = registry.read_index(uris.resolve(str(root / "models" / "churn")))
    return {e["trainingJob"]: v for v, e in index["versions"].items()}


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
    # It names the drift event that caused it (its model card will).
    cause = DriftEvent.from_annotations(retrain.metadata.annotations)
    assert cause == DriftEvent(monitor="churn-drift", time=NOW, drifted_features=["plan"])
    trained = versions(tmp_path)
    # Its notWorseThanDeployed gate reads what the deployment serves now: the MLP,
    # promoted over the logistic model in the plan's own rollout.
    served = seen.input_status("ModelDeployment", "churn")
    assert isinstance(served, ModelDeploymentStatus)
    assert served.stable_version == trained["churn-mlp"]
    # The deployment runs again as the user wrote it: its aliases moved, not its spec.
    _, canary, _ = RAN[-1]
    written = next(s.resource for s in steps if s.key == "ModelDeployment/churn")
    assert canary is written
    final = outcomes[-1].status
    assert isinstance(final, ModelDeploymentStatus)
    assert final.stable_version == trained["churn-drift-retrain-1"]
    # Each promotion moved champion, in the registry.
    root = uris.resolve(str(tmp_path / "models" / "churn"))
    assert registry.alias(root, "champion") == trained["churn-drift-retrain-1"]
    history = registry.read_index(root)["history"]
    assert [h["version"] for h in history] == [
        trained["churn-mlp"],
        trained["churn-drift-retrain-1"],
    ]
    # The monitor's status tells the retrain's fate.
    dm = next(o.status for o in outcomes if o.step.key == "DriftMonitor/churn-drift")
    assert isinstance(dm, DriftMonitorStatus)
    assert dm.last_retrain_job == "churn-drift-retrain-1"
    assert [(c.type, c.status, c.reason) for c in dm.conditions][-1] == (
        "RetrainPromoted", "True", "Promoted",
    )  # fmt: skip


def test_a_failed_retrain_leaves_stable_serving_and_says_so(
    steps: list[plan.Step], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(resource: Any, context: RunContext) -> StatusBase:
        if resource.key == "TrainingJob/churn-drift-retrain-1":
            RAN.append((resource.key, resource, context))
            status = TrainingJobStatus(phase="Failed")
            status.conditions = conditions.set_condition(
                [], "Succeeded", False, "GateFailed", "auc 0.55 < 0.60", NOW
            )
            return status
        return runner(resource, context)

    table = {k: Entrypoint(k, f"{__name__}:runner", ("x",)) for k in entrypoints.ENTRYPOINTS}
    table["TrainingJob"] = Entrypoint("TrainingJob", f"{__name__}:FAILING", ("x",))
    monkeypatch.setattr(entrypoints, "ENTRYPOINTS", table)
    monkeypatch.setitem(globals(), "FAILING", failing)
    outcomes = executor.execute(steps, RunContext(artifact_root=tmp_path))
    assert [o.step.key for o in outcomes][-1] == "TrainingJob/churn-drift-retrain-1"
    dm = next(o.status for o in outcomes if o.step.key == "DriftMonitor/churn-drift")
    assert isinstance(dm, DriftMonitorStatus)
    found = next(c for c in dm.conditions if c.type == "RetrainPromoted")
    assert (found.status, found.reason) == ("False", "GateFailed")
    trained = versions(tmp_path)
    assert found.message == (
        "tj/churn-drift-retrain-1 failed: auc 0.55 < 0.60; "
        f"stable {trained['churn-mlp']} keeps serving"
    )
    root = uris.resolve(str(tmp_path / "models" / "churn"))
    assert registry.alias(root, "champion") == trained["churn-mlp"]


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


def test_a_deployment_resolves_aliases_in_the_registry_and_says_which_is_missing(
    steps: list[plan.Step], tmp_path: Path
) -> None:
    md = next(s.resource for s in steps if s.key == "ModelDeployment/churn")
    assert isinstance(md, ModelDeployment)
    context = RunContext(artifact_root=tmp_path, resources={s.key: s.resource for s in steps})
    with pytest.raises(deployment.Unresolved, match=r"^spec.stable.alias: no version of model"):
        deployment.resolve(md.spec.stable, "spec.stable", context)
    # A version an earlier run promoted, by a training not in these files: its traffic
    # comes from a training of the same model that is.
    trainings = [s.resource for s in steps if isinstance(s.resource, TrainingJob)]
    runner(trainings[0].model_copy(update={"metadata": ObjectMeta(name="old-retrain")}), context)
    stable = deployment.resolve(md.spec.stable, "spec.stable", context)
    assert deployment.resolve_candidate(md, stable, context) is None  # no candidate yet
    assert deployment._trained_by(stable, context) == "churn-logistic"
