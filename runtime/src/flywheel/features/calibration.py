"""Probability calibration: the output-side twin of preprocess.py, saved with the model.

Training fits it on the validation split (carved from the training data; the test split
only measures it) and writes `calibration.json` beside the model; the model server
applies it to the model's probability, so the score a client reads is the calibrated one.

    platt        p' = sigmoid(a * logit(p) + b)      two parameters
    temperature  p' = sigmoid(logit(p) / T)           one; keeps the ranking and the 0.5 point

    state = fit(p_validation, y_validation, "platt").to_json()
    Calibrator.from_json(state).apply(scores)

Pure numpy, so a server applies it without importing training code.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

PLATT = "platt"
TEMPERATURE = "temperature"
EPS = 1e-7
# A small ridge keeps Newton's step finite when the validation rows separate perfectly.
RIDGE = 1e-6
MAX_STEPS = 100


@dataclasses.dataclass(frozen=True)
class Calibrator:
    method: str
    a: float = 1.0  # slope on the logit (1/T for temperature)
    b: float = 0.0  # intercept (always 0 for temperature)

    def apply(self, p: Any) -> Any:
        """Probabilities (any shape) -> calibrated probabilities, float32."""
        z = logit(np.asarray(p, dtype=np.float64))
        return _sigmoid(self.a * z + self.b).astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": 1, "method": self.method, "input": "probability"}
        if self.method == TEMPERATURE:
            out["temperature"] = 1.0 / self.a
        else:
            out.update(a=self.a, b=self.b)
        return out

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> Calibrator:
        method = state["method"]
        if method == TEMPERATURE:
            return cls(method, 1.0 / float(state["temperature"]), 0.0)
        if method == PLATT:
            return cls(method, float(state["a"]), float(state["b"]))
        raise ValueError(f"calibration.json: unknown method {method!r} (platt or temperature)")


def _sigmoid(x: Any) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _loss(design: Any, y: Any, w: Any) -> float:
    q = np.clip(_sigmoid(design @ w), EPS, 1 - EPS)
    return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).sum() + 0.5 * RIDGE * w @ w)


def logit(p: Any) -> Any:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def fit(p: Any, y: Any, method: str) -> Calibrator:
    """The calibrator minimising log-loss of `y` (0/1) on `p` (Newton's method)."""
    z = logit(np.asarray(p, dtype=np.float64).reshape(-1))
    y = (np.asarray(y).reshape(-1) > 0.5).astype(np.float64)
    if len(z) == 0 or y.min() == y.max():
        raise ValueError("calibration needs both classes among the validation rows")
    design = np.stack([z, np.ones_like(z)], axis=1) if method == PLATT else z[:, None]
    w = np.zeros(design.shape[1])
    loss = _loss(design, y, w)
    for _ in range(MAX_STEPS):
        q = _sigmoid(design @ w)
        gradient = design.T @ (q - y) + RIDGE * w
        hessian = (design * (q * (1 - q))[:, None]).T @ design + RIDGE * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        # Halve the step until the loss falls: plain Newton overshoots on saturated scores.
        scale = 1.0
        while scale > 1e-6 and _loss(design, y, w - scale * step) > loss:
            scale /= 2
        w = w - scale * step
        new_loss = _loss(design, y, w)
        if loss - new_loss < 1e-12:
            break
        loss = new_loss
    if method == PLATT:
        return Calibrator(PLATT, float(w[0]), float(w[1]))
    # A temperature is positive; a non-positive slope means the scores rank backwards.
    return Calibrator(TEMPERATURE, max(float(w[0]), 1e-3), 0.0)
