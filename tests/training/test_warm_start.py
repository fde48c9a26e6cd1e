"""Stateful retraining on windows made to show it: one registry, three windows.

- window A: the base version, trained from scratch with a small learning rate, so it
  needs many epochs before early stopping ends it;
- window B: new customers, the same concept: a warm start from the champion is already
  near its best, so early stopping ends it after few epochs, and it remembers window A;
- window C: the concept turned around (churn falls with risk): fine-tuning hard on it
  unlearns window A, and the forgetting gate rejects the version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flywheel.api.modeldeployment import ModelDeploymentStatus
from flywheel.api.trainingjob import TrainingJob
from flywheel.entrypoints import RunContext
from flywheel.training import registry, runner, warmstart
from flywheel.training.errors import TrainingError
from tests.training import world

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.timeout(900),
]

SLOW = {"epochs": 40, "batchSize": 64, "learningRate": 0.04, "earlyStoppingPatience": 2}


def job(name: str, registry_dir: Path, **spec: Any) -> TrainingJob:
    return world.job(
        name,
        split={"strategy": "random", "testFraction": 0.25, "seed": 3},
        hyperparameters=spec.pop("hyperparameters", SLOW),
        scaling={"numWorkers": 1},
        output={"modelName": "churn", "registryUri": str(registry_dir)},
        **spec,
    )


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunContext]:
    return {
        "A": world.build(tmp_path_factory.mktemp("a"), customers=300, seed=11),
        "B": world.build(tmp_path_factory.mktemp("b"), customers=300, seed=12),
        "C": world.build(tmp_path_factory.mktemp("c"), customers=300, seed=13, slope=-2.5),
    }


@pytest.fixture(scope="module")
def base(windows: dict[str, RunContext], registry_dir: Path, ray_cluster: None) -> Any:
    status = runner.run_trainingjob(job("base", registry_dir), windows["A"])
    assert status.phase == "Succeeded", status.conditions
    return status


def version_dir(status: Any) -> Path:
    return Path(status.artifact_uri.removeprefix("file://"))


def card(status: Any) -> dict[str, Any]:
    return dict(
        json.loads((Path(status.artifact_uri.removeprefix("file://")) / "card.json").read_text())
    )


def test_a_warm_start_on_a_new_window_saves_epochs_and_remembers_the_old_one(
    base: Any, windows: dict[str, RunContext], registry_dir: Path
) -> None:
    scratch_epochs = card(base)["config"]["epochsRun"]
    warm_job = job("warm", registry_dir, warmStart={"alias": "champion"})
    status = runner.run_trainingjob(warm_job, windows["B"])
    assert status.phase == "Succeeded", status.conditions
    assert status.warm_started_from == f"churn:{base.model_version}"
    found = card(status)["warmStart"]
    print(
        f"epochs: warm {found['epochsRun']}, from scratch {scratch_epochs}; "
        f"rows seen ratio {found['rowsSeenRatio']}; forgetting {found['forgetting']}"
    )
    assert found["base"] == {
        "model": "churn",
        "version": base.model_version,
        "resolvedBy": "alias champion",
    }
    assert found["fromScratch"]["version"] == base.model_version
    assert found["fromScratch"]["epochs"] == scratch_epochs
    assert found["epochsRun"] < scratch_epochs / 2
    assert found["epochsSaved"] == scratch_epochs - found["epochsRun"]
    assert found["rowsSeenRatio"] < 0.5
    forgot = found["forgetting"]
    assert forgot["metric"] == "auc" and forgot["passed"]
    assert forgot["new"] >= forgot["base"] - 0.02
    assert status.metrics["auc"] > 0.8  # the new window is learnt too
    gates = {g["name"]: g for g in card(status)["gates"]}
    assert gates["forgetting"]["passed"]
    message = status.conditions[0].message
    assert "warm start from churn:" in message and "from scratch" in message
    html = (version_dir(status) / "card.html").read_text()
    assert "Warm start" in html and "epochs saved" in html
    # The warm version keeps the base's preprocessing: the same input layout.
    version, base_dir = version_dir(status), version_dir(base)
    assert (version / "preprocessing.json").read_text() == (
        base_dir / "preprocessing.json"
    ).read_text()
    assert (version / warmstart.TEST_WINDOW).is_file()


def test_fine_tuning_on_a_turned_concept_fails_the_forgetting_gate(
    base: Any, windows: dict[str, RunContext], registry_dir: Path
) -> None:
    hard = {"epochs": 4, "batchSize": 32, "learningRate": 1.0}
    turned = job(
        "turned",
        registry_dir,
        hyperparameters=hard,
        warmStart={"version": base.model_version, "forgettingTolerance": 0.05},
    )
    status = runner.run_trainingjob(turned, windows["C"])
    assert status.phase == "Failed"
    condition = status.conditions[0]
    print(condition.message)
    assert condition.reason == runner.GATE_FAILED
    assert f"churn:{base.model_version} on its test window" in condition.message
    index = registry.read_index(registry.model_root(turned, windows["C"]))
    assert index["versions"][status.model_version]["state"] == registry.REJECTED
    gate = next(
        g for g in index["versions"][status.model_version]["gates"] if g["name"] == "forgetting"
    )
    assert not gate["passed"] and gate["value"] < 0.6  # window A's AUC, unlearnt


def test_the_version_a_deployment_serves_is_the_base(
    base: Any, windows: dict[str, RunContext], registry_dir: Path, tmp_path: Path
) -> None:
    spec = job("served", registry_dir, warmStart={"deploymentRef": {"name": "churn"}})
    context = windows["B"].replace(
        statuses={
            **windows["B"].statuses,
            "ModelDeployment/churn": ModelDeploymentStatus(stable_version=base.model_version),
        }
    )
    resolved = warmstart.resolve(spec, context, tmp_path)
    assert resolved.version == base.model_version
    assert resolved.resolved_by == "the stable version of md/churn"
    # Serving nothing yet: the champion.
    resolved = warmstart.resolve(spec, windows["B"], tmp_path)
    assert resolved.version == registry.alias(registry.model_root(spec, context), registry.CHAMPION)
    assert "serves nothing yet" in resolved.resolved_by


def test_a_warm_start_keeps_the_model(
    base: Any, windows: dict[str, RunContext], registry_dir: Path, tmp_path: Path
) -> None:
    other = job(
        "other",
        registry_dir,
        model={"type": "mlp", "params": {"hiddenUnits": [4]}},
        warmStart={"alias": "champion"},
    )
    status = runner.run_trainingjob(other, windows["B"])
    assert status.phase == "Failed"
    assert status.conditions[0].reason == "WarmStartModelMismatch"
    missing = job("missing", registry_dir, warmStart={"alias": "nope"})
    with pytest.raises(TrainingError, match="no alias 'nope'"):
        warmstart.resolve(missing, windows["B"], tmp_path)
