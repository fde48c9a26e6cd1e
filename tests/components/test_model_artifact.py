"""One reader of a model version's files: which file is served, and what goes with it.

Versions are written as training writes them (`export.export`, `quantize.script`), so
the model server and the notWorseThanDeployed gate are tested on what they really load.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from flywheel.features import artifact
from flywheel.features.calibration import Calibrator
from flywheel.features.preprocess import Preprocessor
from flywheel.storage import uris
from flywheel.training import export, quantize

pytestmark = pytest.mark.runtime

WIDTH = 3


class Linear(nn.Module):
    """sigmoid(features . weights): one architecture, weights that tell copies apart.
    Its argument is named as the export's input (`features`)."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.linear = nn.Linear(WIDTH, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([weights]))
            self.linear.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(features))


def linear(weights: list[float]) -> nn.Module:
    return Linear(weights).eval()


FLOAT = [1.0, -2.0, 0.5]
OTHER = [-3.0, 0.25, 2.0]
ROWS = torch.tensor([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0], [-1.0, -1.0, 3.0]])


def exported(directory: Path, weights: list[float] = FLOAT) -> Path:
    """A version with the exported float program, as training writes it."""
    directory.mkdir(parents=True, exist_ok=True)
    export.export(linear(weights), WIDTH, directory, "m", gpu=False)
    return directory


def scores(module: object) -> np.ndarray:
    with torch.inference_mode():
        out: np.ndarray = module(ROWS).numpy().reshape(-1)  # type: ignore[operator]
    return out


def test_the_exported_program_is_served_without_quantization(tmp_path: Path) -> None:
    where = uris.resolve(str(exported(tmp_path / "v1")))
    assert artifact.served_file(where).path == where.join(artifact.EXPORTED_FILE).path
    assert np.allclose(scores(artifact.load_module(where)), scores(linear(FLOAT)), atol=1e-6)


def test_the_quantized_copy_is_served_when_quantization_json_names_it(tmp_path: Path) -> None:
    version = exported(tmp_path / "v1")
    # A copy of other weights, so the scores show which file ran.
    int8 = quantize.quantize(linear(OTHER))
    (version / quantize.INT8_FILE).write_bytes(quantize.script(int8, WIDTH))
    (version / artifact.QUANTIZATION_FILE).write_text(json.dumps({"serve": quantize.INT8_FILE}))
    where = uris.resolve(str(version))
    assert artifact.served_file(where).path == where.join(quantize.INT8_FILE).path
    served = scores(artifact.load_module(where))
    expected = scores(int8)
    assert np.allclose(served, expected, atol=1e-6)
    assert not np.allclose(served, scores(linear(FLOAT)), atol=1e-2)


def test_a_torchscript_module_is_served_when_there_is_no_exported_program(
    tmp_path: Path,
) -> None:
    version = tmp_path / "old"
    version.mkdir()
    (version / artifact.SCRIPT_FILE).write_bytes(quantize.script(linear(OTHER), WIDTH))
    where = uris.resolve(str(version))
    assert artifact.served_file(where).path == where.join(artifact.SCRIPT_FILE).path
    assert np.allclose(scores(artifact.load_module(where)), scores(linear(OTHER)), atol=1e-6)
    # With both, the exported program wins.
    exported(version)
    assert np.allclose(scores(artifact.load_module(where)), scores(linear(FLOAT)), atol=1e-6)


def test_a_version_without_a_model_file_names_the_files_it_looked_for(tmp_path: Path) -> None:
    where = uris.resolve(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError) as raised:
        artifact.load_module(where)
    message = str(raised.value)
    assert where.uri in message
    assert artifact.EXPORTED_FILE in message and artifact.SCRIPT_FILE in message


def test_a_named_quantized_copy_that_is_missing_is_an_error_naming_it(tmp_path: Path) -> None:
    version = exported(tmp_path / "v1")
    (version / artifact.QUANTIZATION_FILE).write_text(json.dumps({"serve": "model.int8.pt"}))
    where = uris.resolve(str(version))
    # Not the float model in its place: the server would serve what the card did not measure.
    with pytest.raises(FileNotFoundError) as raised:
        artifact.load_module(where)
    assert where.join("model.int8.pt").uri in str(raised.value)
    assert artifact.QUANTIZATION_FILE in str(raised.value)


def test_load_reads_the_transform_signature_and_calibration(tmp_path: Path) -> None:
    version = exported(tmp_path / "v1")
    rows = pa.table({"plan": ["a", "b", "a"], "risk": [0.1, 0.5, 0.9]})
    pre = Preprocessor.fit(rows, ["plan", "risk"])
    platt = Calibrator("platt", 2.0, -0.5)
    (version / artifact.PREPROCESSING_FILE).write_text(json.dumps(pre.to_json()))
    (version / artifact.CALIBRATION_FILE).write_text(json.dumps(platt.to_json()))
    where = uris.resolve(str(version))
    # Without signature.json, the preprocessor's inputs are the features.
    served = artifact.load(where)
    assert served.feature_names == ["plan", "risk"]
    assert served.preprocessor == pre and served.calibrator == platt
    assert artifact.signature(where) == {}
    signature = {"features": ["risk", "plan"], "label": "churned", "task": "classification"}
    (version / artifact.SIGNATURE_FILE).write_text(json.dumps(signature))
    assert artifact.load(where).feature_names == ["risk", "plan"]
    assert artifact.signature(where) == signature


def test_metadata_json_names_the_columns_of_a_version_without_a_signature(
    tmp_path: Path,
) -> None:
    version = exported(tmp_path / "v1")
    (version / artifact.METADATA_FILE).write_text(json.dumps({"features": ["x", "y", "z"]}))
    served = artifact.load(uris.resolve(str(version)))
    assert served.feature_names == ["x", "y", "z"]
    assert served.preprocessor is None and served.calibrator is None
