"""notWorseThanDeployed compares both versions on the new job's test rows.

A version trained on one world is deployed; the world's concept then turns around (risk
lowers churn instead of raising it). The deployed version's registry figure, from its own
test split, is still high, but on the new rows it is worse than a coin: the gate must
use the new rows' figure. A training set without a feature the deployed version needs
leaves the registry's figure, and says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.api.featureview import FeatureView
from flywheel.entrypoints import RunContext
from flywheel.features import runner as features
from flywheel.storage import uris
from flywheel.training import export, runner, warmstart
from tests.training import world

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

GATE = {"notWorseThanDeployed": {"deploymentRef": {"name": "churn"}, "metric": "auc"}}


def version_dir(uri: str | None) -> Path:
    assert uri is not None and uri.startswith("file://")
    return Path(uri.removeprefix("file://"))


@pytest.fixture(scope="module")
def deployed(world_context: RunContext, ray_cluster: None) -> dict[str, Any]:
    """The first version of `churn`: its champion, trained on the first world."""
    status = runner.run_trainingjob(world.job(scaling={"numWorkers": 1}), world_context)
    assert status.phase == "Succeeded", status.conditions
    assert status.aliases == ["champion"]
    return {
        "version": status.model_version,
        "auc": status.metrics["auc"],
        "uri": status.artifact_uri,
    }


def gate_of(status: Any) -> dict[str, Any]:
    card = json.loads((version_dir(status.artifact_uri) / "card.json").read_text())
    [gate] = [g for g in card["gates"] if g["name"] == "notWorseThanDeployed"]
    comparison: dict[str, Any] = gate["comparison"]
    return comparison


def test_the_gate_scores_the_deployed_version_on_the_new_rows(
    deployed: dict[str, Any], world_context: RunContext, tmp_path: Path
) -> None:
    # The same customers and features, the concept turned around, the same registry.
    turned = world.build(tmp_path / "turned", slope=-2.5).replace(
        artifact_root=world_context.artifact_root
    )
    job = world.job(name="churn-turned", evaluation=GATE, scaling={"numWorkers": 1})
    status = runner.run_trainingjob(job, turned)
    assert status.phase == "Succeeded", status.conditions
    found = gate_of(status)
    assert found["deployedVersion"] == deployed["version"]
    assert found["registryValue"] == pytest.approx(deployed["auc"], abs=1e-6)
    # On the turned rows the deployed version is worse than a coin, far below its record.
    assert found["sameRows"] and found["fallback"] is None
    assert found["deployedValue"] < 0.5 < deployed["auc"]
    assert found["newValue"] == pytest.approx(status.metrics["auc"], abs=1e-6)
    # Its figure is the deployed version's own artifact recomputed on this job's test split.
    again = runner.evaluate_version(job, turned, deployed["version"])
    assert found["deployedValue"] == pytest.approx(again["metrics"]["auc"], abs=1e-6)
    assert found["rows"] == again["rows"]
    message = status.conditions[0].message
    assert (
        f"auc {status.metrics['auc']:.4f} against deployed version {deployed['version']}: "
        f"{found['deployedValue']:.4f} on the same {found['rows']} test rows"
    ) in message
    html = (version_dir(status.artifact_uri) / "card.html").read_text()
    assert "Compared with the deployed version" in html
    assert f"the same {found['rows']} rows" in html


def test_without_the_deployed_versions_features_the_registry_figure_stands_in(
    deployed: dict[str, Any], world_context: RunContext
) -> None:
    lite = FeatureView.model_validate(
        {
            **world.view().to_wire(),
            "metadata": {"name": "lite"},
            "spec": {
                **world.view().spec.to_wire(),
                "features": [
                    {"name": "plan", "column": "plan"},
                    {"name": "risk", "column": "risk"},
                ],
            },
        }
    )
    context = world_context.replace(resources={**world_context.resources, lite.key: lite})
    done = features.run_featureview(lite, context)
    assert done.phase == "Ready", done
    context = context.replace(statuses={**context.statuses, lite.key: done})
    # A wide tolerance: the comparison is what is tested here, not which version wins.
    lenient = {"notWorseThanDeployed": {**GATE["notWorseThanDeployed"], "tolerance": 0.5}}
    job = world.job(
        name="churn-lite",
        featureViewRefs=[{"name": "lite"}],
        evaluation=lenient,
        scaling={"numWorkers": 1},
    )
    status = runner.run_trainingjob(job, context)
    assert status.phase == "Succeeded", status.conditions
    found = gate_of(status)
    reason = "its features ['noise'] are not in this training set"
    assert not found["sameRows"] and found["rows"] is None
    assert found["deployedValue"] == pytest.approx(deployed["auc"], abs=1e-6)
    assert found["fallback"] == reason
    assert f"{found['deployedValue']:.4f} (its registry figure; {reason})" in (
        status.conditions[0].message
    )
    html = (version_dir(status.artifact_uri) / "card.html").read_text()
    assert "why not the same rows" in html and "its features [&#x27;noise&#x27;]" in html


def test_more_test_rows_than_one_exported_batch_are_scored(
    deployed: dict[str, Any], world_context: RunContext
) -> None:
    """An exported program takes at most export.MAX_BATCH_SIZE rows a call: a larger test
    split is scored in batches, to the same figure as its rows scored whole."""
    rows = pq.read_table(version_dir(deployed["uri"]) / warmstart.TEST_WINDOW)
    copies = export.MAX_BATCH_SIZE // rows.num_rows + 2
    many = pa.concat_tables([rows] * copies)
    assert many.num_rows > export.MAX_BATCH_SIZE
    y = np.asarray(many["churned"].to_numpy(zero_copy_only=False), dtype=np.float64)
    where = uris.resolve(deployed["uri"])
    whole = runner._score_deployed(where, "churned", "auc", rows, y[: rows.num_rows], True)
    scored = runner._score_deployed(where, "churned", "auc", many, y, True)
    assert isinstance(scored, float) and isinstance(whole, float)
    assert scored == pytest.approx(whole, abs=1e-9)  # the same rows, repeated
