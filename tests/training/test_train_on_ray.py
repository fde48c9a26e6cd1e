"""TrainingJobs on a real local Ray: train, register, resume, gates, reproducibility.

The fits share one module world and one session Ray; later tests reuse the first run's
checkpoints where they can, so only three fits run in all.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from flywheel.api.driftmonitor import DRIFT_EVENT_ANNOTATION, DriftEvent
from flywheel.entrypoints import RunContext
from flywheel.storage import publish, uris
from flywheel.training import export, registry, runner
from tests.training import world

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

CAUSE = DriftEvent.model_validate(
    {"monitor": "churn-drift", "time": "2026-05-01T00:10:00Z", "driftedFeatures": ["plan"]}
)


@pytest.fixture(scope="module")
def first(world_context: RunContext, ray_cluster: None) -> dict[str, Any]:
    events: list[tuple[str, dict[str, Any]]] = []
    context = world_context.replace(progress=lambda key, m: events.append((key, dict(m))))
    status = runner.run_trainingjob(world.job(), context)
    return {"status": status, "events": events}


def local(uri: str | None) -> Path:
    assert uri is not None and uri.startswith("file://")
    return Path(uri.removeprefix("file://"))


def index(context: RunContext) -> dict[str, Any]:
    return registry.read_index(uris.resolve(str(context.artifact_root / "models" / "churn")))


def test_training_beats_the_base_rate_and_registers_a_version(
    first: dict[str, Any], world_context: RunContext
) -> None:
    status = first["status"]
    assert status.phase == "Succeeded", status.conditions
    metrics = status.metrics
    version = local(status.artifact_uri)
    # The signal is strong: a model that learnt it is far from the coin (0.5) and from the
    # log-loss of always predicting the base rate (at most ln 2).
    assert metrics["auc"] > 0.8
    assert metrics["logloss"] < math.log(2) - 0.1
    assert 0 <= metrics["ece"] < 0.2
    assert status.primary_metric == f"auc={metrics['auc']:.4f}"
    assert status.progress == "epoch 3/3"
    assert status.model_name == "churn" and status.model_version == version.name
    assert status.aliases == ["champion"]  # the model's first version
    for name in [
        "model.pt2",
        "preprocessing.json",
        "signature.json",
        "lineage.json",
        "config.json",
        "card.json",
        "card.html",
        "reliability.png",
        "slices.png",
        "triton/churn/config.pbtxt",
        "triton/churn/1/model.pt",
        "manifest.json",
    ]:
        assert (version / name).is_file(), name
    assert status.model_card_uri.endswith("/card.html")
    lineage = json.loads((version / "lineage.json").read_text())
    assert lineage["labels"]["dataset"] == "labels" and lineage["trainingJob"] == "churn"
    assert lineage["featureViews"][0]["offlineVersion"]
    card = json.loads((version / "card.json").read_text())
    assert {s["value"] for s in card["evaluation"]["slices"]} == {"basic", "premium", "standard"}
    assert card["limitations"]
    assert card["cause"] is None and "no drift event" in (version / "card.html").read_text()
    found = index(world_context)
    assert found["aliases"]["champion"]["version"] == version.name
    assert found["versions"][version.name]["state"] == "registered"
    epochs = [m["epoch"] for key, m in first["events"] if key == "TrainingJob/churn"]
    assert epochs == [1, 2, 3]
    assert all(m["elapsed"] >= 0 and math.isfinite(m["loss"]) for _, m in first["events"])
    runs = world_context.artifact_root / "training" / "default" / "churn"
    assert list(runs.glob("generation-1-*/checkpoint_*/state.pt"))


def test_the_exported_version_gives_the_runs_metrics(
    first: dict[str, Any], world_context: RunContext
) -> None:
    status = first["status"]
    found = runner.evaluate_version(world.job(), world_context, status.model_version)
    assert found["metrics"]["auc"] == pytest.approx(status.metrics["auc"], abs=1e-6)
    module = export.load(local(status.artifact_uri) / export.MODEL_FILE)
    assert module is not None


@pytest.fixture(scope="module")
def resumed(first: dict[str, Any], world_context: RunContext) -> Any:
    """The first job rerun with more epochs, before any other 5-epoch run: it resumes from
    the first run's last checkpoint (tests run in random order, fixtures do not)."""
    job = world.job(hyperparameters={"epochs": 5})
    # As a DriftMonitor's retrain: it names the drift event that caused it.
    job.metadata.annotations[DRIFT_EVENT_ANNOTATION] = CAUSE.to_annotation()
    status = runner.run_trainingjob(job, world_context)
    # With the registry as this run left it: later tests register versions of their own.
    return {"status": status, "index": index(world_context)}


def test_a_rerun_resumes_from_the_last_checkpoint(
    first: dict[str, Any], resumed: Any, world_context: RunContext
) -> None:
    status = resumed["status"]
    assert status.phase == "Succeeded", status.conditions
    assert "resumed after epoch 3" in status.conditions[0].message
    history = json.loads((local(status.artifact_uri) / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert (
        history[:3]
        == json.loads((local(first["status"].artifact_uri) / "metrics.json").read_text())["history"]
    )
    found = resumed["index"]
    assert status.aliases == ["candidate"]
    assert found["aliases"]["candidate"]["version"] == status.model_version
    # The drift event that caused it is in its lineage and its model card.
    version = local(status.artifact_uri)
    cause = CAUSE.to_wire()
    assert json.loads((version / "lineage.json").read_text())["driftEvent"] == cause
    assert json.loads((version / "card.json").read_text())["cause"] == cause
    assert "retrain by DriftMonitor churn-drift: drift in plan at 2026-05-01T00:10:00Z" in (
        (version / "card.html").read_text()
    )
    assert found["aliases"]["champion"]["version"] == first["status"].model_version


def test_a_failed_gate_registers_nothing_under_an_alias(
    first: dict[str, Any], resumed: Any, world_context: RunContext
) -> None:
    root = uris.resolve(str(world_context.artifact_root / "models" / "churn"))
    before = index(world_context)
    current = publish.current(root)
    gated = world.job(
        hyperparameters={"epochs": 5},  # the checkpoint of the resumed run is final
        evaluation={"gates": [{"metric": "auc", "min": 0.999}, {"metric": "logloss", "max": 5}]},
    )
    status = runner.run_trainingjob(gated, world_context)
    assert status.phase == "Failed"
    [condition] = status.conditions
    assert condition.reason == "GateFailed"
    assert f"auc={status.metrics['auc']:.4f} fails >= 0.999" in condition.message
    assert "logloss" not in condition.message
    after = index(world_context)
    assert after["versions"][status.model_version]["state"] == "rejected"
    assert after["aliases"] == before["aliases"]
    assert publish.current(root) == current
    assert status.artifact_uri is None


def test_not_worse_than_deployed_reads_the_registry(
    first: dict[str, Any], resumed: Any, world_context: RunContext
) -> None:
    from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus

    md = ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "serve"},
            "spec": {"stable": {"modelName": "churn", "version": "x"}},
        }
    )
    deployed = first["status"].model_version
    context = world_context.replace(
        resources={**world_context.resources, md.key: md},
        statuses={**world_context.statuses, md.key: ModelDeploymentStatus(stable_version=deployed)},
    )
    gated = world.job(
        hyperparameters={"epochs": 5},
        evaluation={
            "notWorseThanDeployed": {"deploymentRef": {"name": "serve"}, "metric": "logloss"}
        },
    )
    status = runner.run_trainingjob(gated, context)
    resumed_is_better = status.metrics["logloss"] <= first["status"].metrics["logloss"]
    assert (status.phase == "Succeeded") == resumed_is_better
    if not resumed_is_better:
        assert f"deployed version {deployed}" in status.conditions[0].message


def test_nan_loss_fails_and_registers_nothing(world_context: RunContext, ray_cluster: None) -> None:
    job = world.job(
        name="explodes",
        model={"type": "custom", "importPath": "tests.training.custom_models:exploding"},
        output={"modelName": "explodes"},
        scaling={"numWorkers": 1},
    )
    status = runner.run_trainingjob(job, world_context)
    assert status.phase == "Failed"
    assert status.conditions[0].reason == "NaNLoss"
    assert "in epoch 1" in status.conditions[0].message
    assert not (world_context.artifact_root / "models" / "explodes").exists()
