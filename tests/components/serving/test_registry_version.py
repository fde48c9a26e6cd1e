"""A model server serves a registry version as training wrote it: raw feature columns
(numbers and category strings) go through the version's own fitted preprocessing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn

from flywheel.features.preprocess import Preprocessor
from flywheel.serving import config, modelserver, predictor, routerapp, state
from flywheel.serving.router import Router
from flywheel.training import export
from tests.components.serving import support

pytestmark = pytest.mark.runtime

TRAIN = {
    "plan": ["basic", "premium", "basic", "standard", "basic", None],
    "charges": [19.0, 80.0, None, 41.0, 22.0, 30.0],
}
# An unseen category, a null category, a null number: what serving meets in practice.
ROWS: list[dict[str, Any]] = [
    {"plan": "premium", "charges": 75.0},
    {"plan": "gold", "charges": 20.0},
    {"plan": None, "charges": None},
]


class Logistic(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(features))


def write_version(directory: Path, seed: int) -> tuple[Preprocessor, nn.Module]:
    """A version directory laid out as training writes one (runtime/README.md)."""
    directory.mkdir(parents=True)
    pre = Preprocessor.fit(pa.table(TRAIN), ["plan", "charges"])
    torch.manual_seed(seed)
    module = Logistic(pre.width).eval()
    export.export(module, pre.width, directory, "churn", gpu=False)
    (directory / "preprocessing.json").write_text(json.dumps(pre.to_json()))
    signature = export.signature(pre.width, pre.output_names(), classification=True)
    signature["features"] = ["plan", "charges"]
    (directory / "signature.json").write_text(json.dumps(signature))
    return pre, module


def eager(pre: Preprocessor, module: nn.Module, rows: list[dict[str, Any]]) -> np.ndarray:
    columns = {n: [r[n] for r in rows] for n in ("plan", "charges")}
    with torch.no_grad():
        out: np.ndarray = module(torch.from_numpy(pre.transform(columns))).numpy().reshape(-1)
    return out


def test_the_loader_applies_the_versions_preprocessing(tmp_path: Path) -> None:
    pre, module = write_version(tmp_path / "v1", seed=1)
    loaded = predictor.load_predictor(str(tmp_path / "v1"))
    assert loaded.feature_names == ["plan", "charges"] and loaded.width == pre.width
    columns = {
        "plan": np.array([b"premium", b"gold", b""], dtype=np.object_),
        "charges": np.array([75.0, 20.0, np.nan]),
    }
    got = loaded.predict_columns(columns).reshape(-1)
    # "" is no training category, so it is "unknown or null" like None.
    np.testing.assert_allclose(got, eager(pre, module, ROWS), rtol=1e-5)
    with pytest.raises(ValueError, match="charges"):
        loaded.predict_columns({"plan": columns["plan"]})


def test_json_rows_through_the_router_get_each_versions_own_transform(tmp_path: Path) -> None:
    """Two versions with different weights: the router sends raw columns, each server
    transforms them itself, and each answer is its own eager model's."""
    loop = support.Loop()
    servers = []
    try:
        models = {}
        endpoints = {}
        for version, seed in (("v1", 1), ("v2", 2)):
            models[version] = write_version(tmp_path / version, seed)
            server = modelserver.ModelServer(
                "churn", version, predictor.load_predictor(str(tmp_path / version))
            )
            servers.append(support.Server(loop, modelserver.app(server)))
            endpoints[version] = servers[-1].url
        doc = {
            "deployment": "churn",
            "stable": "v1",
            "candidate": "v2",
            "strategy": "canary",
            "traffic": {"v1": 50, "v2": 50},
            "endpoints": endpoints,
            "features": ["plan", "charges"],
        }
        router = Router(config.parse(doc), store=state.StateStore(tmp_path / "state.db"))
        servers.append(support.Server(loop, routerapp.app(router)))
        seen = set()
        with httpx.Client(base_url=servers[-1].url, timeout=20) as client:
            for _ in range(30):
                reply = client.post("/v1/models/churn/predict", json={"instances": ROWS})
                assert reply.status_code == 200, reply.text
                body = reply.json()
                seen.add(body["version"])
                np.testing.assert_allclose(
                    body["predictions"], eager(*models[body["version"]], ROWS), rtol=1e-5
                )
            mixed = client.post(
                "/v1/models/churn/predict", json={"instances": [{"plan": 3, "charges": 1.0}]}
            )
            assert mixed.status_code == 400 and "plan" in mixed.text
        assert seen == {"v1", "v2"}
    finally:
        for s in servers:
            s.stop()
        loop.close()
