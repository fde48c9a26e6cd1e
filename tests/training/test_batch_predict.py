"""`flywheel predict`: a Dataset version scored by a model version, into Parquet.

The model is a real exported torch module with fitted preprocessing and a calibrator,
written as a registry version lays them out (no Ray needed to make one).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flywheel import cli
from flywheel.api.trainingjob import ModelSpec
from flywheel.data import snapshots
from flywheel.entrypoints import RunContext
from flywheel.features import calibration
from flywheel.features.preprocess import Preprocessor
from flywheel.serving import predictor
from flywheel.storage import publish, uris
from flywheel.training import export, models

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def events_root(context: RunContext) -> Path:
    return context.artifact_root / "datasets" / "default" / "events"


@pytest.fixture(scope="module")
def model_dir(world_context: RunContext, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    table = snapshots.current_table(uris.resolve(str(events_root(world_context))))
    pre = Preprocessor.fit(table, ["plan", "risk", "noise"], {"plan": 8})
    torch.manual_seed(0)
    spec = ModelSpec.model_validate({"type": "logistic"})
    module = models.Serving(models.build(spec, pre.width), True).eval()
    where = tmp_path_factory.mktemp("version")
    export.export(module, pre.width, where, "churn", gpu=False)
    (where / "preprocessing.json").write_text(json.dumps(pre.to_json()))
    (where / "signature.json").write_text(json.dumps({"features": ["plan", "risk", "noise"]}))
    platt = calibration.Calibrator(calibration.PLATT, 0.5, -1.0)
    (where / "calibration.json").write_text(json.dumps(platt.to_json()))
    return where


def test_predict_scores_every_row_as_the_model_server_does(
    world_context: RunContext, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "predictions.parquet"
    argv = ["predict", "--model", str(model_dir), "--dataset", "events", "--out", str(out)]
    code = cli.main([*argv, "--artifact-root", str(world_context.artifact_root)])
    assert code == 0, capsys.readouterr().err
    root = uris.resolve(str(events_root(world_context)))
    version = publish.current(root)
    assert version is not None
    source = snapshots.current_table(root)
    written = pq.read_table(out)
    assert written.num_rows == source.num_rows
    # Entity and time stay beside the prediction; the features are not repeated.
    assert written.column_names == ["customer_id", "event_time", "prediction"]
    lineage = json.loads(written.schema.metadata[b"flywheel.lineage"])
    assert lineage["datasetVersion"] == version["version"] and lineage["dataset"] == "events"
    served = predictor.load_predictor(str(model_dir))
    rows = source.slice(0, 50)
    online = served.predict_columns(
        {
            "plan": np.asarray(rows["plan"].to_pylist(), dtype=object),
            "risk": np.asarray(rows["risk"].to_numpy(zero_copy_only=False)),
            "noise": np.asarray(
                [np.nan if v is None else v for v in rows["noise"].to_pylist()], dtype=np.float64
            ),
        }
    )
    np.testing.assert_allclose(written["prediction"].to_numpy()[:50], online.reshape(-1), rtol=1e-6)
    assert f"{source.num_rows} predictions of Dataset events version" in capsys.readouterr().out


def test_predict_names_a_missing_version_and_a_missing_dataset(
    world_context: RunContext, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["predict", "--model", str(model_dir), "--out", str(tmp_path / "p.parquet")]
    root = ["--artifact-root", str(world_context.artifact_root)]
    assert cli.main([*base, "--dataset", "events", "--dataset-version", "nope", *root]) == 1
    assert "has no version 'nope'" in capsys.readouterr().err
    assert cli.main([*base, "--dataset", "labels", *root]) == 1
    assert "no column(s) ['plan', 'risk', 'noise']" in capsys.readouterr().err
    assert cli.main([*base, "--dataset", "absent", *root]) == 1
    assert "has no snapshot" in capsys.readouterr().err
    assert not (tmp_path / "p.parquet").exists()
