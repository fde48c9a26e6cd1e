"""Practice benchmarks: int8 against float serving, warm against from-scratch retraining.

- Quantized vs float: the same trained MLP as TorchScript, float and dynamic int8
  (what `spec.quantization` registers): p50/p99 latency of one-row and 256-row calls on
  this CPU, file size, and the AUC change on held-out rows.
- Stateful vs stateless retrain: on a drifted window of the churn world (new customers,
  risk shifted), a TrainingJob warm-started from the version trained on the first window
  against the same job from scratch: epochs, wall time, AUC on the new window and on the
  old one.

    .venv/bin/pytest -m bench -s tests/bench/test_bench_practices.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from flywheel.api.trainingjob import ModelSpec
from flywheel.training import evaluate, loop, models, quantize, runner
from tests.bench.common import report, scaled
from tests.training import world
from tests.training.conftest import ray_cluster

pytestmark = [
    pytest.mark.bench,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.timeout(1800),
]
__all__ = ["ray_cluster"]

WIDTH = 32


def _data(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, WIDTH)).astype(np.float32)
    logit = x[:, :4] @ np.array([2.0, -1.5, 1.0, 0.5]) + 0.5 * np.sin(x[:, 4] * 2)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return x, y


def _timed(module: Any, x: np.ndarray, batch: int, calls: int) -> tuple[float, float]:
    t = torch.from_numpy(x)
    spent = []
    with torch.inference_mode():
        for i in range(calls + 20):
            start = (i * batch) % (len(x) - batch)
            chunk = t[start : start + batch]
            began = time.perf_counter()
            module(chunk)
            spent.append(time.perf_counter() - began)
    kept = np.asarray(spent[20:]) * 1000
    return float(np.percentile(kept, 50)), float(np.percentile(kept, 99))


def test_bench_int8_against_float() -> None:
    x, y = _data(scaled(20_000), 0)
    xt, yt = _data(4_000, 1)
    cfg = loop.LoopConfig(
        model={"type": "mlp", "params": {"hiddenUnits": [512, 256]}},
        n_inputs=WIDTH,
        classification=True,
        epochs=3,
        batch_size=256,
        learning_rate=0.003,
        weight_decay=0.0,
        optimizer="adam",
        patience=None,
        seed=0,
    )
    state = loop.run_loop(cfg, loop.Arrays(x, y, xt[:500], yt[:500]), loop.LocalSession())
    model = models.build(ModelSpec.model_validate(cfg.model), WIDTH)
    model.load_state_dict(state["best_state"] or state["model"])
    serving = models.Serving(model, True).eval()
    float_bytes = quantize.script(serving, WIDTH)
    int8_bytes = quantize.script(quantize.quantize(serving), WIDTH)
    f32, i8 = quantize.load(float_bytes), quantize.load(int8_bytes)
    with torch.inference_mode():
        auc_f = evaluate.evaluate(
            yt, f32(torch.from_numpy(xt)).numpy().reshape(-1), True, ["auc"], {}
        )
        auc_q = evaluate.evaluate(
            yt, i8(torch.from_numpy(xt)).numpy().reshape(-1), True, ["auc"], {}
        )
    calls = scaled(2000)
    rows = []
    for batch in (1, 256):
        fp50, fp99 = _timed(f32, xt, batch, calls)
        qp50, qp99 = _timed(i8, xt, batch, calls)
        rows.append(
            [
                f"batch {batch}",
                f"{fp50:.3f}/{fp99:.3f}",
                f"{qp50:.3f}/{qp99:.3f}",
                f"{qp50 / fp50:.2f}x / {qp99 / fp99:.2f}x",
            ]
        )
    rows.append(
        [
            "size (bytes)",
            str(len(float_bytes)),
            str(len(int8_bytes)),
            f"{len(int8_bytes) / len(float_bytes):.2f}x",
        ]
    )
    rows.append(
        [
            "AUC (4000 held-out rows)",
            f"{auc_f.metrics['auc']:.4f}",
            f"{auc_q.metrics['auc']:.4f}",
            f"{auc_q.metrics['auc'] - auc_f.metrics['auc']:+.4f}",
        ]
    )
    report(
        "int8 (dynamic) against float, TorchScript MLP 32-512-256-1 on this CPU",
        ["", "float p50/p99 ms", "int8 p50/p99 ms", "int8 / float"],
        rows,
    )
    assert len(int8_bytes) < len(float_bytes)


def test_bench_warm_against_scratch_retrain(tmp_path: Path, ray_cluster: None) -> None:
    registry_dir = tmp_path / "registry"
    customers = max(200, scaled(600))  # enough of both classes at CI's small scale
    old = world.build(tmp_path / "old", customers=customers, seed=11)
    # The drifted window: new customers, churn more likely at the same risk.
    new = world.build(tmp_path / "new", customers=customers, seed=21, intercept=0.8)
    hyper = {"epochs": 40, "batchSize": 64, "learningRate": 0.04, "earlyStoppingPatience": 2}

    def job(name: str, **spec: Any) -> Any:
        return world.job(
            name,
            split={"strategy": "random", "testFraction": 0.25, "seed": 3},
            hyperparameters=hyper,
            scaling={"numWorkers": 1},
            output={"modelName": "churn", "registryUri": str(registry_dir)},
            **spec,
        )

    base = runner.run_trainingjob(job("base"), old)
    assert base.phase == "Succeeded", base.conditions
    figures = []
    for name, spec in (("from scratch", {}), ("warm start", {"warmStart": {"alias": "champion"}})):
        began = time.perf_counter()
        status = runner.run_trainingjob(job(name.replace(" ", "-"), **spec), new)
        seconds = time.perf_counter() - began
        assert status.phase == "Succeeded", status.conditions
        version = Path(str(status.artifact_uri).removeprefix("file://"))
        card = json.loads((version / "card.json").read_text())
        forgot = (card.get("warmStart") or {}).get("forgetting")
        figures.append((name, card["config"]["epochsRun"], seconds, status.metrics["auc"], forgot))
    scratch_seconds = figures[0][2]
    report(
        f"retrain on a drifted window ({customers} customers), logistic, early stopping",
        ["", "epochs", "wall s", "wall / scratch", "AUC new window", "AUC old window"],
        [
            [
                name,
                str(epochs),
                f"{seconds:.1f}",
                f"{seconds / scratch_seconds:.2f}x",
                f"{auc:.4f}",
                f"{forgot['new']:.4f} (base {forgot['base']:.4f})" if forgot else "-",
            ]
            for name, epochs, seconds, auc, forgot in figures
        ],
    )
