"""Dynamic int8 quantization on the churn world: an MLP whose int8 copy is a fraction of
its size at the same AUC, served by the model server; and a model made to lose its
signal under per-tensor int8 weights (one outlier weight), which the gate rejects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from flywheel.entrypoints import RunContext
from flywheel.serving import predictor
from flywheel.training import export, quantize, registry, runner
from tests.training import world

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.timeout(900),
]


def job(name: str, model: dict[str, Any], max_drop: float = 0.02) -> Any:
    return world.job(
        name,
        split={"strategy": "random", "testFraction": 0.25, "seed": 3},
        model=model,
        scaling={"numWorkers": 1},
        quantization={"maxMetricDrop": max_drop},
        output={"modelName": name},
    )


def version_dir(status: Any) -> Path:
    return Path(status.artifact_uri.removeprefix("file://"))


def test_the_int8_copy_is_smaller_as_accurate_and_served(
    world_context: RunContext, ray_cluster: None
) -> None:
    mlp = {"type": "mlp", "params": {"hiddenUnits": [256, 256]}}
    status = runner.run_trainingjob(job("mlp-int8", mlp), world_context)
    assert status.phase == "Succeeded", status.conditions
    version = version_dir(status)
    found = json.loads((version / "card.json").read_text())["quantization"]
    print(
        f"size ratio {found['sizeRatio']}, auc float {found['float']['auc']:.4f} int8 "
        f"{found['int8']['auc']:.4f}; {status.conditions[0].message}"
    )
    assert found["sizeRatio"] < 0.4
    assert abs(found["delta"]["auc"]) <= 0.02 and found["passed"]
    card = json.loads((version / "card.json").read_text())
    gate = next(g for g in card["gates"] if g["name"] == "quantization")
    assert gate["passed"]
    assert "serves int8: size x" in status.conditions[0].message
    entry = registry.read_index(registry.model_root(job("mlp-int8", mlp), world_context))
    timing = entry["versions"][status.model_version]["quantizationLatency"]
    assert timing["p50Ratio"] > 0 and set(timing["int8"]) == {"p50", "p99"}
    html = (version / "card.html").read_text()
    assert "Quantization" in html and "size ratio" in html
    # The model server loads the int8 copy; its scores are the float model's, nearly.
    served = predictor.load_predictor(str(version))
    rows = pq.read_table(version / "testwindow.parquet")
    columns = {
        n: np.asarray(rows[n].to_pylist(), dtype=object if n == "plan" else np.float64)
        for n in ("plan", "risk", "noise")
    }
    float_model = export.load(version / export.MODEL_FILE)
    x = served.preprocessor.transform(rows)  # type: ignore[attr-defined]
    with torch.no_grad():
        expected = float_model(torch.from_numpy(x)).numpy().reshape(-1)
    got = served.predict_columns(columns).reshape(-1)
    int8 = quantize.load((version / quantize.INT8_FILE).read_bytes())
    with torch.no_grad():
        assert np.allclose(got, int8(torch.from_numpy(x)).numpy().reshape(-1), atol=1e-6)
    assert 0 < np.abs(got - expected).max() < 0.05
    assert (version / quantize.INT8_FILE).is_file()


def test_the_gate_rejects_an_int8_copy_that_lost_the_signal(
    world_context: RunContext, ray_cluster: None
) -> None:
    outlier = {"type": "custom", "importPath": "tests.training.custom_models:outlier_weight"}
    status = runner.run_trainingjob(job("outlier-int8", outlier), world_context)
    assert status.phase == "Failed"
    message = status.conditions[0].message
    print(message)
    assert status.conditions[0].reason == runner.GATE_FAILED
    assert "(the float model)" in message
    index = registry.read_index(registry.model_root(job("outlier-int8", outlier), world_context))
    gates = index["versions"][status.model_version]["gates"]
    gate = next(g for g in gates if g["name"] == "quantization")
    assert not gate["passed"] and gate["value"] == pytest.approx(0.5, abs=0.05)
    float_auc = index["versions"][status.model_version]["metrics"]["auc"]
    assert float_auc > 0.8  # the float model learnt; only its int8 copy lost it
