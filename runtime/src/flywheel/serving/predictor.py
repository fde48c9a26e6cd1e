"""What a model server serves: a `Predictor` (feature rows in, scores out), and the
loader that turns a model artifact into one.

An artifact is a model version's directory (any URI `flywheel.storage` resolves); its
files, and which of them is served, are `flywheel.features.artifact`'s to read. A
registry version (runtime/README.md) is such a directory, so a model server serves what
training registered with exactly the transform training used.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from flywheel.features import artifact
from flywheel.features.calibration import Calibrator
from flywheel.features.preprocess import CATEGORICAL, HASHED, NUMERIC, Preprocessor


class Predictor(Protocol):
    # The raw feature columns the model takes, when the artifact names them.
    feature_names: list[str] | None
    # Columns of the transformed matrix (`predict`'s input), when known.
    width: int | None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """float32 [rows, width] (already transformed) -> float32 scores [rows] or [rows, k]."""
        ...

    def predict_columns(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Named raw feature columns (numbers, or strings for categories) -> scores."""
        ...


class TorchPredictor:
    """A torch module (exported or TorchScript) run under `torch.inference_mode` on CPU."""

    def __init__(
        self,
        module: Any,
        feature_names: list[str] | None = None,
        preprocessor: Preprocessor | None = None,
        calibrator: Calibrator | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.module = module
        self.calibrator = calibrator
        self.feature_names = feature_names
        self.preprocessor = preprocessor
        self.width = preprocessor.width if preprocessor else len(feature_names or []) or None

    def predict(self, features: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            # Decoded binary tensors are read-only views; torch wants a writable array.
            out = self.module(torch.from_numpy(np.require(features, np.float32, ["C", "W"])))
        scores: np.ndarray = out.detach().numpy().astype(np.float32, copy=False)
        if self.calibrator is not None:
            scores = self.calibrator.apply(scores)
        return scores

    def predict_columns(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        names = self.feature_names or list(columns)
        missing = [n for n in names if n not in columns]
        if missing:
            raise ValueError(f"no input for the feature(s) {missing}; the model takes {names}")
        if self.preprocessor is not None:
            raw = _raw_columns(columns, names, self.preprocessor)
            return self.predict(self.preprocessor.transform(raw))
        try:
            matrix = np.column_stack([np.asarray(columns[n], dtype=np.float32) for n in names])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"this model takes numbers only: {exc}") from None
        return self.predict(matrix)


def _raw_columns(
    columns: dict[str, np.ndarray], names: list[str], preprocessor: Preprocessor
) -> dict[str, list[Any]]:
    """Columns as the preprocessor reads them: text decoded, NaN as null (its null rule).

    A number where training saw categories (or text where it saw numbers) is refused:
    it would otherwise become "unknown" or fail deep inside the transform.
    """
    kinds = {c.name: c.kind for c in preprocessor.columns}
    out: dict[str, list[Any]] = {}
    for n in names:
        values = np.asarray(columns[n]).reshape(-1)
        text = values.dtype == object
        if kinds.get(n) in (CATEGORICAL, HASHED) and not text:
            raise ValueError(f"feature {n!r} is a category in this model: give text")
        if kinds.get(n) == NUMERIC and text:
            raise ValueError(f"feature {n!r} is a number in this model: give numbers")
        if text:
            out[n] = [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
        else:
            out[n] = [None if v != v else v for v in values.tolist()]
    return out


def load_predictor(uri: str) -> Predictor:
    """The model under `uri` (a local path, file://, pvc://, s3:// or gs://)."""
    from flywheel.storage import uris

    served = artifact.load(uris.resolve(uri))
    return TorchPredictor(
        served.module, served.feature_names, served.preprocessor, served.calibrator
    )
