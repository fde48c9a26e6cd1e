"""reference.servingVersion: live traffic against the training set of the version serving it.

Registry versions are laid out as the registry writes them (a manifest and the training
split's `reference.parquet`), so no training is needed to make them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.api.driftmonitor import DriftMonitor, Verdict
from flywheel.api.modeldeployment import ModelDeployment
from flywheel.api.trainingjob import TrainingJob
from flywheel.drift import reference, runner
from flywheel.entrypoints import RunContext
from flywheel.training import registry
from tests.unit.drift.logs import T0, customers, write_log

NOW = T0 + timedelta(days=1)


def _register(root: Path, version: str, features: dict[str, np.ndarray] | None) -> None:
    """A registered version's directory; `features` None: one kept no training reference."""
    directory = root / "versions" / version
    directory.mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"version": version, "files": {}}))
    if features is not None:
        pq.write_table(pa.table(features), directory / registry.TRAINING_REFERENCE)


def _deployment(stable: dict[str, Any]) -> ModelDeployment:
    return ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn", "namespace": "ml"},
            "spec": {"stable": stable},
        }
    )


def _monitor() -> DriftMonitor:
    return DriftMonitor.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": "churn-drift", "namespace": "ml"},
            "spec": {
                "deploymentRef": {"name": "churn"},
                "reference": {"servingVersion": {}},
                "window": {"size": 2000},
                "prediction": False,
            },
        }
    )


@pytest.fixture
def context(tmp_path: Path) -> RunContext:
    """v1 trained before a price rise, v2 after it (charges 0.6 sigma higher)."""
    reference._MEMORY.clear()
    ctx = RunContext(artifact_root=tmp_path / "artifacts", base_dir=tmp_path, namespace="ml")
    root = ctx.artifact_root / "models" / "churn"
    _register(root, "v1", customers(np.random.default_rng(1), 5000))
    _register(root, "v2", customers(np.random.default_rng(2), 5000, shift=0.6))
    _register(root, "v0", None)
    md = _deployment({"modelName": "churn", "alias": "champion"})
    return ctx.replace(resources={md.key: md})


def _log(context: RunContext, version: str, shift: float) -> None:
    live = customers(np.random.default_rng(3), 2000, shift=shift)
    write_log(context.artifact_root / "request-logs" / "ml" / "churn", live, T0, version=version)


def test_the_reference_is_the_training_set_of_the_version_that_serves(
    context: RunContext,
) -> None:
    # The same risen prices: drift against v1's training data, none against v2's.
    _log(context, "v1", 0.6)
    before = runner.run_driftmonitor(_monitor(), context, NOW)
    assert before.verdict == Verdict.DRIFT and "monthly_charges" in before.drifted_features
    assert before.reference_version == "ModelVersion/churn@v1"
    assert before.model_version == "v1"

    _log(context, "v2", 0.6)  # v2 promoted: it answers the window now
    after = runner.run_driftmonitor(_monitor(), context, NOW)
    assert after.reference_version == "ModelVersion/churn@v2"
    assert after.verdict == Verdict.NO_DRIFT, after.drifted_features


def test_a_trainingjob_reference_finds_its_own_registry(
    context: RunContext, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "registry"
    _register(elsewhere / "models" / "churn-mlp", "m1", customers(np.random.default_rng(4), 5000))
    job = TrainingJob.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "churn-mlp", "namespace": "ml"},
            "spec": {
                "featureViewRefs": [{"name": "f"}],
                "label": {
                    "datasetRef": {"name": "labels"},
                    "column": "churned",
                    "entityColumns": ["customer_id"],
                    "timestampColumn": "label_time",
                },
                "model": {"type": "logistic"},
                "output": {"modelName": "churn-mlp", "registryUri": str(elsewhere)},
            },
        }
    )
    md = _deployment({"trainingJobRef": {"name": "churn-mlp"}})
    ctx = context.replace(resources={md.key: md, job.key: job})
    _log(ctx, "m1", 0.0)
    status = runner.run_driftmonitor(_monitor(), ctx, NOW)
    assert status.phase == "Ready" and status.verdict == Verdict.NO_DRIFT
    assert status.reference_version == "ModelVersion/churn-mlp@m1"


def test_nothing_served_yet_is_insufficient(context: RunContext) -> None:
    status = runner.run_driftmonitor(_monitor(), context, NOW)
    assert status.phase == "Ready" and status.verdict == Verdict.INSUFFICIENT
    assert status.samples == 0


@pytest.mark.parametrize(
    ("version", "reason", "words"),
    [
        ("v9", "ServingVersionNotFound", "'v9', which serves the window"),
        ("v0", "ReferenceNotRecorded", "registered without reference.parquet"),
    ],
)
def test_a_version_without_its_training_set_fails_with_the_reason(
    context: RunContext, version: str, reason: str, words: str
) -> None:
    _log(context, version, 0.0)
    status = runner.run_driftmonitor(_monitor(), context, NOW)
    assert status.phase == "Failed"
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.reason == reason and words in ready.message


def test_the_layout_name_is_the_registrys() -> None:
    assert reference.TRAINING_REFERENCE == registry.TRAINING_REFERENCE


def test_the_training_reference_is_the_training_rows_features_sampled_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flywheel.training import runner as training

    table = pa.table({"x": np.arange(100.0), "plan": ["a"] * 100, "churned": [0] * 100})
    rows = np.arange(0, 80)
    kept = training.training_reference(table, ["x", "plan"], rows, seed=0)
    assert kept.column_names == ["x", "plan"] and kept["x"].to_pylist() == list(range(80))
    monkeypatch.setattr(registry, "REFERENCE_ROWS", 10)
    sampled = training.training_reference(table, ["x", "plan"], rows, seed=0)
    values = sampled["x"].to_pylist()
    assert len(values) == 10 and values == sorted(values) and max(values) < 80
    assert values == training.training_reference(table, ["x"], rows, seed=0)["x"].to_pylist()
