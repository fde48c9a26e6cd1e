"""Post-training dynamic int8 quantization for CPU serving (spec.quantization).

`torch.ao.quantization.quantize_dynamic` swaps every `nn.Linear` for a dynamically
quantized one: weights kept as int8 with one scale per tensor, activations quantized
per batch at run time. The copy is TorchScript (`model.int8.pt`), as `torch.export`
does not take dynamically quantized modules; `quantization.json` tells the model server
to serve it (with the version's calibration applied after it, as for the float model;
`flywheel.features.artifact` reads both). Triton keeps the float TorchScript copy.

The card compares the float and the int8 model on the same test split (metrics, size of
the TorchScript file of each); the `quantization` gate bounds the metric's drop. Latency
changes from run to run, so it goes to the registry index entry and the status message,
not into the version's files (a version is the hash of its files).
"""

from __future__ import annotations

import io
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from flywheel.features import artifact
from flywheel.features.artifact import QUANTIZED_TENSORS_DEPRECATED
from flywheel.training import evaluate

INT8_FILE = "model.int8.pt"
LATENCY_CALLS = 200  # one-row calls timed per model; the first 20 warm up


def quantize(module: nn.Module) -> nn.Module:
    """An int8 copy of `module` (float32 [batch, width] -> the same output)."""
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which the runtime does
        # not ship; quantize_dynamic still works in this torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", QUANTIZED_TENSORS_DEPRECATED, UserWarning)
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            module.eval(), {nn.Linear}, dtype=torch.qint8
        )
    return quantized


def script(module: nn.Module, width: int) -> bytes:
    """TorchScript bytes of a module (traced on two rows)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation of torch.jit
        warnings.filterwarnings("ignore", QUANTIZED_TENSORS_DEPRECATED, UserWarning)
        traced = torch.jit.trace(module.eval(), torch.zeros(2, width))  # type: ignore[no-untyped-call]
        out = io.BytesIO()
        torch.jit.save(traced, out)
    return out.getvalue()


# TorchScript bytes (the float or the int8 copy) as the model server loads them.
load = artifact.load_script


def latency(module: Any, rows: Any) -> dict[str, float]:
    """p50 and p99 seconds of one-row calls over the test rows."""
    x = torch.from_numpy(rows)
    spent = []
    with torch.inference_mode():
        for i in range(LATENCY_CALLS):
            row = x[i % len(x)].reshape(1, -1)
            started = time.perf_counter()
            module(row)
            spent.append(time.perf_counter() - started)
    kept = np.asarray(spent[20:])
    return {"p50": float(np.percentile(kept, 50)), "p99": float(np.percentile(kept, 99))}


def compare(
    float_bytes: int,
    int8_bytes: int,
    before: dict[str, float],
    after: dict[str, float],
    metric: str,
    max_drop: float,
) -> tuple[evaluate.GateResult, dict[str, Any]]:
    """The card's comparison and the gate on the metric's drop.

    >>> gate, found = compare(4000, 1000, {"auc": 0.9}, {"auc": 0.89}, "auc", 0.02)
    >>> gate.passed, found["sizeRatio"], round(found["delta"]["auc"], 4)
    (True, 0.25, -0.01)
    """
    old, new = before[metric], after[metric]
    if metric in evaluate.LOWER_IS_BETTER:
        passed, bound = new <= old + max_drop, f"<= {old:.4f} + {max_drop:g}"
    else:
        passed, bound = new >= old - max_drop, f">= {old:.4f} - {max_drop:g}"
    gate = evaluate.GateResult(
        "quantization", metric, float(new), bound + " (the float model)", bool(passed)
    )
    found = {
        "mode": "dynamicInt8",
        "metric": metric,
        "maxMetricDrop": max_drop,
        "bytes": {"float": float_bytes, "int8": int8_bytes},
        "sizeRatio": round(int8_bytes / float_bytes, 6),
        "float": before,
        "int8": after,
        "delta": {k: after[k] - before[k] for k in before if k in after},
        "passed": bool(passed),
    }
    return gate, found
