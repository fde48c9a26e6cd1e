"""A ModelDeployment on one machine: two trained versions served, rows replayed through the
router, and the canary walked by the operator's rollout policy to its end."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch

from flywheel.api import conditions
from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.entrypoints import RunContext
from flywheel.local import deployment
from flywheel.serving.versions import ServedVersion
from flywheel.training import runner
from tests.training import world

pytestmark = [
    pytest.mark.runtime,
    # Its fixture trains two models before the first test: minutes on a busy machine.
    pytest.mark.timeout(1200),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def trained(world_context: RunContext, ray_cluster: None) -> RunContext:
    """Two versions of one model: a logistic stable and an MLP candidate."""
    context = world_context
    statuses = dict(context.statuses)
    resources = dict(context.resources)
    for name, model in (("churn-a", "logistic"), ("churn-b", "mlp")):
        # One Ray worker: these tests serve the versions; test_train_on_ray shards a fit.
        job = world.job(name, model={"type": model}, scaling={"numWorkers": 1})
        status = runner.run_trainingjob(job, context.replace(statuses=statuses))
        assert status.phase == "Succeeded", status.conditions
        statuses[job.key], resources[job.key] = status, job
    return context.replace(statuses=statuses, resources=resources)


def canary(**analysis: Any) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn", "generation": 1},
            "spec": {
                "stable": {"trainingJobRef": {"name": "churn-a"}},
                "candidate": {"trainingJobRef": {"name": "churn-b"}},
                "rollout": {
                    "strategy": "canary",
                    "canary": {
                        "steps": [{"weight": 25, "pause": "5m"}, {"weight": 100}],
                        "analysis": {"interval": "1m", "minRequests": 40, **analysis},
                    },
                },
                "requestLogging": {"sampleRate": 1.0},
            },
        }
    )


def version(context: RunContext, job: str) -> str:
    status = context.statuses[f"TrainingJob/{job}"]
    return str(getattr(status, "model_version"))  # noqa: B009


def test_a_healthy_canary_is_promoted_step_by_step(trained: RunContext) -> None:
    lines: list[str] = []
    context = trained.replace(progress=lambda key, m: lines.append(m["message"]))
    status = deployment.run_modeldeployment(canary(), context)
    assert isinstance(status, ModelDeploymentStatus)
    assert status.phase == "Promoted", (status.conditions, lines)
    new = version(trained, "churn-b")
    assert status.stable_version == new and status.candidate_version is None
    assert status.traffic == {new: 100.0}
    assert conditions.is_true(status.conditions, "Promoted")
    assert conditions.is_true(status.conditions, "Ready")
    # 5 minutes of pause at 1-minute intervals: several analyses at step 1, then step 2.
    assert sum("pausing at step 1/2" in line for line in lines) >= 4, lines
    assert any("to step 2/2" in line for line in lines), lines
    # The request log holds real requests answered by both versions, with raw features.
    logs = trained.artifact_root / "request-logs" / "default" / "churn"
    table = pq.read_table(logs)
    assert set(table["model_version"].to_pylist()) == {version(trained, "churn-a"), new}
    assert {"plan", "risk", "prediction", "time"} <= set(table.column_names)
    assert isinstance(table["plan"][0].as_py(), str)


def test_a_candidate_over_its_latency_limit_is_rolled_back(trained: RunContext) -> None:
    # No real server answers within a microsecond: every analysis fails, the first ends it.
    md = canary(maxP99LatencyMs=0.001, failureLimit=0)
    status = deployment.run_modeldeployment(md, trained)
    old = version(trained, "churn-a")
    assert status.phase == "RolledBack", status.conditions
    assert status.stable_version == old and status.traffic == {old: 100.0}
    assert conditions.is_true(status.conditions, "RolledBack")
    assert status.last_analysis is not None and "p99" in status.last_analysis.message


def test_an_untrained_reference_fails_naming_the_field(world_context: RunContext) -> None:
    status = deployment.run_modeldeployment(canary(), world_context)
    assert status.phase == "Failed"
    ready = conditions.find(status.conditions, "Ready")
    assert ready is not None and ready.reason == "ModelNotTrained"
    assert "spec.stable.trainingJobRef" in ready.message


def test_windows_give_the_canary_its_minimum_by_the_end_of_each_pause() -> None:
    from flywheel.serving import rollout

    md = canary()  # steps 25% for 5m, then 100%; 1m analyses; minRequests 40
    first, last = rollout.State(step=0), rollout.State(step=1)
    assert deployment.analyses_in_step(md, first) == 6
    assert deployment.analyses_in_step(md, last) == 1
    for state, share in ((first, 25.0), (last, 100.0)):
        size = deployment.window_size(md, share, deployment.analyses_in_step(md, state))
        analyses = deployment.analyses_in_step(md, state)
        # The candidate's expected share of the step's requests reaches the minimum.
        assert size * analyses * share / 100 >= 40
        assert deployment.DEFAULT_WINDOW <= size <= deployment.MAX_WINDOW


def constant_version(root: Path, version: str, score: float) -> ServedVersion:
    """A TorchScript model that scores every row `score`: its accuracy is known."""
    directory = root / "models" / "churn" / "versions" / version
    directory.mkdir(parents=True)
    linear = torch.nn.Linear(2, 1)
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(math.log(score / (1 - score)))
    model = torch.jit.script(torch.nn.Sequential(linear, torch.nn.Sigmoid(), torch.nn.Flatten(0)))
    model.save(str(directory / "model.pt"))
    (directory / "metadata.json").write_text(json.dumps({"features": ["a", "b"]}))
    return ServedVersion("churn", version, str(directory))


# TorchScript, which torch now calls deprecated, is still one of the formats a version has.
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_each_window_reports_its_split_and_the_accuracy_its_labels_gave(tmp_path: Path) -> None:
    right, wrong = constant_version(tmp_path, "v1", 0.9), constant_version(tmp_path, "v2", 0.1)
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn"},
            "spec": {
                "stable": {"modelName": "churn", "version": "v1"},
                "candidate": {"modelName": "churn", "version": "v2"},
                "rollout": {
                    "strategy": "canary",
                    "canary": {
                        "steps": [{"weight": 50, "pause": "1m"}, {"weight": 100}],
                        "analysis": {"interval": "30s", "minRequests": 20},
                    },
                },
            },
        }
    )
    when = datetime(2026, 4, 30, tzinfo=UTC)
    rows: list[deployment.Row] = [({"a": i, "b": 1.0}, 1, when) for i in range(50)]
    windows: list[dict[str, Any]] = []
    context = RunContext(
        artifact_root=tmp_path, progress=lambda key, f: windows.append(f["window"])
    )
    with deployment.LocalDeployment(md, right, wrong, context) as served:
        status = deployment.walk(
            md, served, right, wrong, rows, deployment.Progress(md, context.progress)
        )
    assert status.phase == "Promoted", status.conditions
    # Every label came back: v1 (always 1) was right each time, v2 (always 0) never.
    for w in windows:
        assert w["labels"] == w["requests"] == sum(w["answered"].values())
        assert {v: a for v, a in w["accuracyByVersion"].items()} == {
            v: 1.0 if v == "v1" else 0.0 for v in w["answered"]
        }
        assert w["dataTime"] == [when.isoformat(), when.isoformat()]
    assert windows[0]["traffic"] == {"v1": 50.0, "v2": 50.0}
    assert windows[-1]["final"] and windows[-1]["traffic"] == {"v2": 100.0}
    assert windows[-1]["accuracy"] == 0.0
    assert [w["seconds"] for w in windows] == sorted(w["seconds"] for w in windows)
