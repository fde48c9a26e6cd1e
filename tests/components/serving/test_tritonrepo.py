"""`flywheel serve triton-repository` over a version as training exports it: the
repository Triton would load, with the same TorchScript and the deployment's settings."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from flywheel.api.modeldeployment import TritonOptions
from flywheel.serving import tritonrepo
from flywheel.training import export
from flywheel_operator.builders import modeldeployment

pytestmark = pytest.mark.runtime

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


class Model(nn.Module):
    """Its argument is named as the export's input (`features`)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(features))


@pytest.fixture
def version(tmp_path: Path) -> Path:
    """A registry version directory with the training's Triton entry (`churn-mlp`)."""
    directory = tmp_path / "registry" / "models" / "churn" / "versions" / "v1"
    directory.mkdir(parents=True)
    torch.manual_seed(0)
    export.export(Model(), 3, directory, "churn-mlp", gpu=False)
    return directory


def test_the_init_container_lays_out_the_version(version: Path, tmp_path: Path) -> None:
    settings = tmp_path / "etc" / "serving.pbtxt"
    settings.parent.mkdir()
    options = TritonOptions.model_validate({"instanceCount": 2, "maxBatchSize": 16})
    settings.write_text(modeldeployment.triton_config(options))
    out = tmp_path / "models"
    argv = [FLYWHEEL, "serve", "triton-repository", "--uri", version.as_uri(),
            "--model", "churn", "--config", str(settings), "--out", str(out)]  # fmt: skip
    for _ in range(2):  # a restarted init container gives the same repository
        subprocess.run(argv, check=True, capture_output=True, timeout=120)
    entry = out / "churn"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "churn/1/model.pt", "churn/config.pbtxt",
    ]  # fmt: skip
    source = version / "triton" / "churn-mlp" / "1" / "model.pt"
    assert (entry / "1" / "model.pt").read_bytes() == source.read_bytes()
    config = (entry / "config.pbtxt").read_text()
    assert config.startswith('name: "churn"\nbackend: "pytorch"\n')
    assert "count: 2 kind: KIND_CPU" in config and "max_batch_size: 16" in config
    keys = [k for k, _ in tritonrepo.fields(config)]
    assert keys.count("instance_group") == 1 and "input" in keys and "output" in keys
    # What Triton's LibTorch backend would run answers as the exported program does.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is what Triton loads
        scripted = torch.jit.load(str(entry / "1" / "model.pt"))
    x = torch.rand(4, 3)
    torch.testing.assert_close(scripted(x), export.load(version / "model.pt2")(x))


def test_a_version_without_a_triton_entry_says_how_to_get_one(tmp_path: Path) -> None:
    empty = tmp_path / "v1"
    empty.mkdir()
    argv = [FLYWHEEL, "serve", "triton-repository", "--uri", str(empty), "--model", "churn",
            "--out", str(tmp_path / "models")]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no Triton entry triton/churn/config.pbtxt" in done.stderr
    assert "TrainingJob" in done.stderr
