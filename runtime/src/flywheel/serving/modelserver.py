"""Flywheel's own Open Inference Protocol v2 model server: one model version, served
from a `Predictor`.

    POST /v2/models/churn/infer
    {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 3], "data": [...]}]}
    -> {"model_name": "churn", "model_version": "v1",
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [2], "data": [...]}]}

Two ways to send features:
- one input named `features` (or a single input of another name): the float32 matrix
  the model takes, already transformed (Triton's contract for the same model);
- one input per raw feature column, named after it (FP64/INT64 numbers, BYTES for
  categories), shape [rows] or [rows, 1]: the server applies the version's own fitted
  preprocessing, so each version gets exactly the transform it was trained with.

The output `scores` is what the predictor returns. A request of one row may give shape [n].
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.types import ASGIApp

from flywheel.serving import oip, service
from flywheel.serving.predictor import Predictor

INPUT = "features"
OUTPUT = "scores"


class ModelServer:
    """One model version behind the v2 protocol (implements `InferenceService`)."""

    def __init__(self, name: str, version: str, predictor: Predictor) -> None:
        self.name = name
        self.version = version
        self.predictor = predictor
        self.started = time.monotonic()

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def model_names(self) -> list[str]:
        return [self.name]

    def metadata(self, name: str) -> dict[str, Any]:
        columns = self.predictor.width or -1
        meta = oip.model_metadata(
            self.name,
            [self.version],
            [{"name": INPUT, "datatype": "FP32", "shape": [-1, columns]}],
            [{"name": OUTPUT, "datatype": "FP32", "shape": [-1]}],
        )
        if self.predictor.feature_names:
            meta["parameters"] = {"features": self.predictor.feature_names}
        return meta

    def predict(self, request: oip.InferRequest) -> oip.InferResponse:
        names = [t.name for t in request.inputs]
        if INPUT in names or (len(names) == 1 and names[0] not in self._columns()):
            tensor = request.input(INPUT if INPUT in names else None)
            features = np.asarray(tensor.data, dtype=np.float32)
            if features.ndim == 1:
                features = features.reshape(1, -1)
            if features.ndim != 2:
                raise oip.ProtocolError(
                    f"{tensor.name}: expected [rows, features], got {tensor.shape}"
                )
            scores = self.predictor.predict(features)
        else:
            scores = self._predict_columns(request)
        return oip.InferResponse(
            model_name=self.name,
            model_version=self.version,
            id=request.id,
            outputs=[oip.Tensor(OUTPUT, scores)],
        )

    def _columns(self) -> list[str]:
        return self.predictor.feature_names or []

    def _predict_columns(self, request: oip.InferRequest) -> np.ndarray:
        columns = {t.name: np.asarray(t.data) for t in request.inputs}
        rows = {len(c.reshape(-1)) for c in columns.values()}
        if len(rows) != 1:
            raise oip.ProtocolError(f"feature columns differ in length: {sorted(rows)}")
        try:
            return self.predictor.predict_columns(columns)
        except ValueError as exc:
            raise oip.ProtocolError(str(exc)) from None

    async def infer(
        self, name: str, request: oip.InferRequest, headers: Mapping[str, str]
    ) -> tuple[oip.InferResponse, dict[str, str]]:
        # Small models answer in microseconds: a thread hop would cost more than it saves.
        return self.predict(request), {}


def app(server: ModelServer) -> ASGIApp:
    return service.with_fast_infer(Starlette(routes=service.v2_routes(server)), server)
