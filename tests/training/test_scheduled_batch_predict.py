"""A ModelDeployment's spec.batchPrediction: a FeatureView's entities scored with their
latest online features, into the online store (the view `<md>-predictions`) and Parquet.

The models are real exported torch modules with fitted preprocessing and a calibrator,
laid out as registry versions (no Ray needed to make them); the features are the
synthetic world's, materialized into a real SQLite online store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from flywheel import cli
from flywheel.api.dataset import Dataset
from flywheel.api.featureview import FeatureView
from flywheel.api.modeldeployment import (
    ModelDeployment,
    ModelDeploymentStatus,
    predictions_view,
)
from flywheel.data import runner as datasets
from flywheel.data import snapshots
from flywheel.entrypoints import RunContext
from flywheel.features import calibration, stores
from flywheel.features import runner as features
from flywheel.features.preprocess import Preprocessor
from flywheel.local import batch as local_batch
from flywheel.serving import batchpredict, predictor
from flywheel.serving.versions import ServedVersion
from flywheel.storage import publish, uris
from flywheel.training import export, models
from tests.training import world

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

FEATURES = ["plan", "risk", "noise"]


def view() -> FeatureView:
    body = world.view().to_wire()
    # Online, and a ttl that keeps the January world's features fresh today.
    body["spec"]["onlineStore"] = {"enabled": True}
    body["spec"]["ttl"] = "36500d"
    return FeatureView.model_validate(body)


def deployment(**batch: Any) -> ModelDeployment:
    spec = {"schedule": "0 * * * *", "featureViewRef": {"name": "customer"}, **batch}
    return ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn"},
            "spec": {"stable": {"modelName": "churn", "version": "v1"}, "batchPrediction": spec},
        }
    )


def active_customers(directory: Path) -> Dataset:
    (directory / "active.csv").write_text("customer_id\nC000001\nC000002\nC000007\nC999999\n")
    return Dataset.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "active"},
            "spec": {
                "source": {"uri": "./active.csv", "format": "csv"},
                "schema": {"columns": [{"name": "customer_id", "type": "string"}]},
            },
        }
    )


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    directory = tmp_path_factory.mktemp("world")
    world.write_world(directory, customers=120)
    objects: list[Any] = [world.events(), world.labels(), view()]
    ctx = RunContext(
        artifact_root=directory / "artifacts",
        base_dir=directory,
        resources={o.key: o for o in objects},
    )
    statuses: dict[str, Any] = {}
    for ds in objects[:2]:
        statuses[ds.key] = datasets.run_dataset(ds, ctx)
        assert statuses[ds.key].phase == "Ready", statuses[ds.key]
    done = features.run_featureview(objects[2], ctx.replace(statuses=statuses))
    assert done.phase == "Ready", done
    for seed, version in ((0, "v1"), (1, "v2")):
        write_version(ctx, seed, version)
    return ctx.replace(statuses=statuses)


def write_version(context: RunContext, seed: int, version: str) -> Path:
    """A registry version of model churn: a logistic model with its own weights."""
    import torch

    root = uris.resolve(str(context.artifact_root / "datasets" / "default" / "events"))
    table = snapshots.current_table(root)
    pre = Preprocessor.fit(table, FEATURES, {"plan": 8})
    torch.manual_seed(seed)
    module = models.Serving(models.build(models_spec(), pre.width), True).eval()
    where = context.artifact_root / "models" / "churn" / "versions" / version
    where.mkdir(parents=True)
    export.export(module, pre.width, where, "churn", gpu=False)
    (where / "preprocessing.json").write_text(json.dumps(pre.to_json()))
    (where / "signature.json").write_text(json.dumps({"features": FEATURES}))
    platt = calibration.Calibrator(calibration.PLATT, 0.5, -1.0)
    (where / "calibration.json").write_text(json.dumps(platt.to_json()))
    (where / "manifest.json").write_text(json.dumps({"version": version}))
    return where


def models_spec() -> Any:
    from flywheel.api.trainingjob import ModelSpec

    return ModelSpec.model_validate({"type": "logistic"})


def version(context: RunContext, name: str) -> ServedVersion:
    where = context.artifact_root / "models" / "churn" / "versions" / name
    return ServedVersion("churn", name, str(where))


def served_scores(context: RunContext, name: str, entities: list[dict[str, Any]]) -> np.ndarray:
    """What the model server answers for these entities' online features now."""
    found = features.get_online_features(view(), entities, context)
    rows = [r for r in found if r is not None]
    assert len(rows) == len(entities)
    model = predictor.load_predictor(version(context, name).artifact_uri)
    noise = [np.nan if r["noise"] is None else r["noise"] for r in rows]
    columns: dict[str, np.ndarray] = {
        "plan": np.array([r["plan"] for r in rows], dtype=object),
        "risk": np.array([r["risk"] for r in rows], dtype=np.float64),
        "noise": np.array(noise, dtype=np.float64),
    }
    return np.asarray(model.predict_columns(columns)).reshape(-1)


def looked_up(context: RunContext, md: ModelDeployment, ids: list[str]) -> list[Any]:
    entities = [{"customer_id": i} for i in ids]
    return features.get_online_features(predictions_view(md, view()), entities, context)


def test_predictions_are_looked_up_like_features_and_equal_the_served_model(
    context: RunContext,
) -> None:
    md = deployment()
    done = batchpredict.run(md, version(context, "v1"), context)
    assert done.rows == 120 and done.model_version == "v1"
    assert (done.view, done.score_name) == ("churn-predictions", "churn_score")
    ids = [f"C{i:06d}" for i in range(120)]
    stored = [r["churn_score"] for r in looked_up(context, md, ids)]
    expected = served_scores(context, "v1", [{"customer_id": i} for i in ids])
    np.testing.assert_allclose(stored, expected, rtol=1e-6)
    # The Parquet version holds the same scores, with the time of the features scored.
    assert done.output_uri is not None
    written = pq.read_table(uris.resolve(done.output_uri).path)
    assert written.column_names == ["customer_id", "event_time", "churn_score"]
    by_id = dict(
        zip(written["customer_id"].to_pylist(), written["churn_score"].to_pylist(), strict=True)
    )
    np.testing.assert_allclose([by_id[i] for i in ids], expected, rtol=1e-6)
    lineage = json.loads(written.schema.metadata[b"flywheel.lineage"])
    assert lineage["modelVersion"] == "v1" and lineage["featureView"] == "customer"

    # Idempotent: the same features and model publish the same version.
    again = batchpredict.run(md, version(context, "v1"), context)
    assert again.output_version == done.output_version

    # Another model version changes every stored prediction, and makes a new version.
    changed = batchpredict.run(md, version(context, "v2"), context)
    assert changed.output_version != done.output_version
    now = [r["churn_score"] for r in looked_up(context, md, ids)]
    np.testing.assert_allclose(
        now, served_scores(context, "v2", [{"customer_id": i} for i in ids]), rtol=1e-6
    )
    assert not np.allclose(now, stored)


def test_entities_of_a_dataset_score_only_those_and_drop_the_rest(
    context: RunContext, tmp_path: Path
) -> None:
    active = active_customers(Path(context.base_dir))
    ctx = context.replace(resources={**context.resources, active.key: active})
    assert datasets.run_dataset(active, ctx).phase == "Ready"
    md = deployment(entities={"datasetRef": {"name": "active"}}, output={"uri": str(tmp_path)})
    done = batchpredict.run(md, version(ctx, "v1"), ctx)
    # C999999 has no features: not scored.
    assert done.rows == 3
    rows = looked_up(ctx, md, ["C000001", "C000002", "C000007", "C000003"])
    assert [r is not None for r in rows] == [True, True, True, False]
    assert publish.current(uris.resolve(str(tmp_path))) is not None


def test_bad_references_name_the_field_and_publish_nothing(context: RunContext) -> None:
    md = deployment(model={"modelName": "churn", "version": "v9"})
    other = deployment(featureViewRef={"name": "absent"})
    with pytest.raises(batchpredict.BatchError, match="FeatureView 'absent' is not among"):
        batchpredict.run(other, version(context, "v1"), context)
    with pytest.raises(batchpredict.BatchError) as missing_model:
        batchpredict.run(md, version(context, "v9"), context)
    assert missing_model.value.reason == "ModelNotFound"
    # A model trained on other columns: its features are named.
    body = context.resources["FeatureView/customer"].to_wire()
    body["spec"]["features"] = body["spec"]["features"][:2]
    narrow = FeatureView.model_validate(body)
    ctx = context.replace(resources={**context.resources, narrow.key: narrow})
    fresh = deployment(output={"uri": str(Path(context.base_dir) / "never")})
    with pytest.raises(batchpredict.BatchError, match=r"feature\(s\) \['noise'\]"):
        batchpredict.run(fresh, version(ctx, "v1"), ctx)
    assert publish.current(stores.offline_root(predictions_view(fresh, narrow), ctx)) is None
    # Features older than the ttl are not scored; the error says so and what to do.
    body = context.resources["FeatureView/customer"].to_wire()
    body["spec"]["ttl"] = "30d"
    stale = FeatureView.model_validate(body)
    ctx = context.replace(resources={**context.resources, stale.key: stale})
    with pytest.raises(batchpredict.BatchError, match="none of its 120 entities has features"):
        batchpredict.run(fresh, version(ctx, "v1"), ctx)


def test_the_command_reports_to_the_operator_and_fails_clearly(
    context: RunContext, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = tmp_path / "manifests.yaml"
    objects = [*context.resources.values(), deployment()]
    files.write_text("---\n".join(json.dumps(o.to_wire()) + "\n" for o in objects))
    result = tmp_path / "result.json"
    argv = ["batch-predict", "-f", str(files), "--name", "churn",
            "--artifact-root", str(context.artifact_root), "--result", str(result)]  # fmt: skip
    v1 = version(context, "v1").artifact_uri
    assert cli.main([*argv, "--model", v1]) == 0, capsys.readouterr().err
    reported = json.loads(result.read_text())["batchPrediction"]
    assert reported["rows"] == 120 and reported["modelVersion"] == "v1"
    assert "120 entities scored by version v1" in capsys.readouterr().err
    # An application looks the prediction up as it looks features up.
    lookup = ["features", "get-online", "-f", str(files), "--name", "churn-predictions",
              "--artifact-root", str(context.artifact_root),
              "--entity", "customer_id=C000001"]  # fmt: skip
    assert cli.main(lookup) == 0
    [answer] = json.loads(capsys.readouterr().out)
    assert set(answer["features"]) == {"churn_score"}
    assert 0 < answer["features"]["churn_score"] < 1
    assert cli.main([*argv, "--model", str(tmp_path / "nowhere")]) == 1
    assert json.loads(result.read_text())["error"].startswith("ModelNotFound: ")


def test_flywheel_run_scores_once_with_the_stable_version(context: RunContext) -> None:
    md = deployment()
    seen: list[tuple[str, Any]] = []
    ctx = context.replace(progress=lambda key, fields: seen.append((key, dict(fields))))
    served = ModelDeploymentStatus(phase="Ready", stable_version="v2")
    status = local_batch.after_deployment(md, served, ctx)
    assert status.batch_prediction is not None
    assert status.batch_prediction.model_version == "v2"  # promoted in the run: v2 serves
    assert status.conditions[-1].type == "BatchPredicted"
    assert seen and seen[-1][1]["message"].startswith("batch prediction: 120 entities")
    bad = deployment(model={"modelName": "churn", "alias": "champion"})
    failed = local_batch.after_deployment(bad, served, ctx)
    assert failed.conditions[-1].reason == "AliasNotFound"
    assert failed.phase == "Ready"  # serving goes on; the condition says why
    assert seen[-1][1]["message"].startswith("batch prediction failed: ")
