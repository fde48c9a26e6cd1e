"""The serving artifact: loadable with torch and flywheel alone, and a Triton entry.

- `model.pt2`: a `torch.export` program (`torch.export.save`), the format torch 2.15
  recommends (`torch.jit.trace`/`script` are deprecated there). `torch.export.load` needs
  no training code: the graph holds only ATen operators and the weights.
- `triton/<model>/1/model.pt` + `config.pbtxt`: Triton's PyTorch (LibTorch) backend runs
  TorchScript only, so the same module is traced once more for it. ONNX would need the
  onnx and onnxscript packages, which the runtime does not ship.

With a calibrator (calibration.json), the model server applies it to model.pt2's output;
Triton has no such hook, so its TorchScript copy carries the calibrator inside.

Both take `features`, float32 [batch, width] (preprocessing.json already applied), and
give `output__0`, float32 [batch, 1]: the probability of the positive class, or the
predicted value. Triton's LibTorch backend names outputs `<name>__<index>`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flywheel.features import artifact

MODEL_FILE = artifact.EXPORTED_FILE
TRITON_DIR = "triton"
TRITON_MODEL_FILE = "model.pt"
INPUT_NAME = "features"
OUTPUT_NAME = "output__0"
MAX_BATCH_SIZE = 1024
EPS = 1e-7  # as flywheel.features.calibration clips probabilities


def export(
    module: nn.Module,
    width: int,
    directory: Path,
    triton_name: str,
    gpu: bool,
    calibrator: Any = None,
) -> None:
    """`calibrator`: a `flywheel.features.calibration.Calibrator`, put into Triton's copy."""
    module = module.eval()
    example = torch.zeros(2, width)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH_SIZE)
    program = torch.export.export(module, (example,), dynamic_shapes={INPUT_NAME: {0: batch}})
    torch.export.save(program, str(directory / MODEL_FILE))
    entry = directory / TRITON_DIR / triton_name
    (entry / "1").mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation of torch.jit
        for_triton = Calibrated(module, calibrator.a, calibrator.b) if calibrator else module
        traced = torch.jit.trace(for_triton, example)  # type: ignore[no-untyped-call]
    traced.save(str(entry / "1" / TRITON_MODEL_FILE))
    (entry / "config.pbtxt").write_text(triton_config(triton_name, width, gpu))


class Calibrated(nn.Module):
    """A probability model followed by sigmoid(a * logit(p) + b): Calibrator.apply in torch."""

    def __init__(self, module: nn.Module, a: float, b: float) -> None:
        super().__init__()
        self.module = module
        self.a = float(a)
        self.b = float(b)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        p = self.module(features).clamp(EPS, 1 - EPS)
        return torch.sigmoid(self.a * torch.log(p / (1 - p)) + self.b)


def load(path: Path | str) -> Any:
    """The exported module, callable on a float32 [batch, width] tensor."""
    return torch.export.load(str(path)).module()


def signature(width: int, feature_outputs: list[str], classification: bool) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": INPUT_NAME, "dtype": "FP32", "shape": [-1, width], "columns": feature_outputs}
        ],
        "outputs": [
            {
                "name": OUTPUT_NAME,
                "dtype": "FP32",
                "shape": [-1, 1],
                "meaning": "probability of class 1" if classification else "predicted value",
            }
        ],
        "maxBatchSize": MAX_BATCH_SIZE,
    }


def triton_config(name: str, width: int, gpu: bool, instances: int = 1) -> str:
    """config.pbtxt for the LibTorch backend (protobuf text format)."""
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    return f"""name: "{name}"
backend: "pytorch"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {width} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ 1 ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 500
}}
instance_group [
  {{
    count: {instances}
    kind: {kind}
  }}
]
"""
