"""The serving artifact: the exported module equals the eager one, in a fresh process
with torch and flywheel only; config.pbtxt parses and matches the signature."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format  # type: ignore[import-untyped]
from tritonclient.grpc import model_config_pb2

from flywheel.api.trainingjob import ModelSpec
from flywheel.training import export, models

FRESH = """
import sys, json, numpy as np, torch
from flywheel.training import export
x = torch.from_numpy(np.load(sys.argv[2]))
print(json.dumps(export.load(sys.argv[1])(x).detach().numpy().tolist()))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("tests"))))
"""


def trained_like(width: int, classification: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = ModelSpec.model_validate(
        {"type": "mlp", "params": {"hiddenUnits": [8, 4], "dropout": 0.2}}
    )
    return models.Serving(models.build(spec, width), classification).eval()


def test_exported_module_matches_eager_predictions_in_a_fresh_process(tmp_path: Path) -> None:
    module = trained_like(7, classification=True)
    export.export(module, 7, tmp_path, "churn", gpu=False)
    x = np.random.default_rng(0).normal(size=(33, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with torch.no_grad():
        eager = module(torch.from_numpy(x)).numpy()
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(tmp_path / export.MODEL_FILE), str(tmp_path / "x.npy")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    lines = out.stdout.strip().splitlines()
    np.testing.assert_allclose(np.array(json.loads(lines[0])), eager, rtol=1e-5, atol=1e-6)
    assert json.loads(lines[1]) == []  # no training code was imported
    assert eager.shape == (33, 1) and ((eager > 0) & (eager < 1)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Triton loads TorchScript; torch warns
        traced = torch.jit.load(str(tmp_path / "triton" / "churn" / "1" / export.TRITON_MODEL_FILE))
    np.testing.assert_allclose(traced(torch.from_numpy(x)).detach().numpy(), eager, rtol=1e-5)


def test_triton_config_parses_and_matches_the_signature(tmp_path: Path) -> None:
    module = trained_like(5, classification=False)
    export.export(module, 5, tmp_path, "prices", gpu=True)
    text = (tmp_path / "triton" / "prices" / "config.pbtxt").read_text()
    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    signature = export.signature(5, [f"f{i}" for i in range(5)], classification=False)
    assert config.name == "prices" and config.backend == "pytorch"
    assert config.max_batch_size == signature["maxBatchSize"]
    [inp] = config.input
    [out] = config.output
    assert (inp.name, list(inp.dims)) == (signature["inputs"][0]["name"], [5])
    assert (out.name, list(out.dims)) == (signature["outputs"][0]["name"], [1])
    assert inp.data_type == out.data_type == model_config_pb2.TYPE_FP32
    assert config.HasField("dynamic_batching")
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    program = torch.export.load(str(tmp_path / export.MODEL_FILE))
    assert program.module()(torch.zeros(3, 5)).shape == (3, 1)
    cpu = text_format.Parse(export.triton_config("p", 5, gpu=False), model_config_pb2.ModelConfig())
    assert cpu.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
