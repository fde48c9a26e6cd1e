"""What a model server serves: a `Predictor` (feature rows in, scores out), and the
loader that turns a model artifact into one.

An artifact is a directory (any URI `flywheel.storage` resolves):

    model.pt2       a `torch.export` program: float32 [rows, features] -> [rows] or [rows, k]
    model.pt        or a TorchScript module with the same signature
    metadata.json   optional: {"features": ["tenure", ...]}, the column order it expects
"""

from __future__ import annotations

import io
import json
import warnings
from typing import Any, Protocol

import numpy as np

EXPORTED_FILE = "model.pt2"
SCRIPT_FILE = "model.pt"
METADATA_FILE = "metadata.json"


class Predictor(Protocol):
    # The feature order the model expects, when the artifact names it.
    feature_names: list[str] | None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """float32 [rows, features] -> float32 scores [rows] or [rows, k]."""
        ...


class TorchPredictor:
    """A torch module (exported or TorchScript) run under `torch.inference_mode` on CPU."""

    def __init__(self, module: Any, feature_names: list[str] | None = None) -> None:
        import torch

        self._torch = torch
        self.module = module
        self.feature_names = feature_names

    def predict(self, features: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            # Decoded binary tensors are read-only views; torch wants a writable array.
            out = self.module(torch.from_numpy(np.require(features, np.float32, ["C", "W"])))
        scores: np.ndarray = out.detach().numpy().astype(np.float32, copy=False)
        return scores


def load_predictor(uri: str) -> Predictor:
    """The model under `uri` (a local path, file://, pvc://, s3:// or gs://)."""
    import torch

    from flywheel.storage import uris

    root = uris.resolve(uri)
    fs = root.filesystem
    exported = root.join(EXPORTED_FILE)
    if fs.get_file_info(exported.path).size is not None:
        with fs.open_input_stream(exported.path) as f:
            module = torch.export.load(io.BytesIO(f.read())).module()
    else:
        with fs.open_input_stream(root.join(SCRIPT_FILE).path) as f, warnings.catch_warnings():
            # torch 2.15 deprecates TorchScript but still loads it; older artifacts use it.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(  # type: ignore[no-untyped-call]
                io.BytesIO(f.read()), map_location="cpu"
            ).eval()
    names = None
    meta = root.join(METADATA_FILE)
    if fs.get_file_info(meta.path).size is not None:
        with fs.open_input_stream(meta.path) as f:
            names = json.loads(f.read()).get("features")
    return TorchPredictor(module, names)
