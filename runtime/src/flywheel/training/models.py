"""The models a TrainingJob can train: built-in `logistic` and `mlp`, or a factory.

Every model maps a float32 [batch, inputs] matrix to one logit (classification) or one
value (regression) per row. A custom model is `package.module:function`, called as
`function(n_inputs=..., **params)` with the spec's params in snake_case, returning a
`torch.nn.Module`. Checks run before training so that a wrong model fails in seconds.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import torch
from torch import nn

from flywheel.api.trainingjob import ModelSpec, ModelType
from flywheel.training.errors import TrainingError


class Logistic(nn.Module):
    def __init__(self, n_inputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_inputs, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(features)
        return out


class MLP(nn.Module):
    def __init__(
        self, n_inputs: int, hidden_units: list[int] | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_inputs
        for units in hidden_units or [64, 32]:
            layers += [nn.Linear(width, int(units)), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(float(dropout)))
            width = int(units)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(features)
        return out


BUILTIN_PARAMS = {ModelType.LOGISTIC: set(), ModelType.MLP: {"hidden_units", "dropout"}}


def snake(name: str) -> str:
    """hiddenUnits -> hidden_units.

    >>> snake("hiddenUnits")
    'hidden_units'
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def build(spec: ModelSpec, n_inputs: int) -> nn.Module:
    """The untrained model; raises TrainingError on anything that cannot train."""
    params = {snake(k): v for k, v in spec.params.items()}
    if spec.type == ModelType.CUSTOM:
        model = _custom(spec.import_path or "", n_inputs, params)
    elif spec.type in BUILTIN_PARAMS:
        unknown = sorted(set(params) - BUILTIN_PARAMS[spec.type])
        if unknown:
            allowed = sorted(BUILTIN_PARAMS[spec.type]) or "none"
            raise TrainingError(
                "InvalidModelParams",
                f"model {spec.type} takes no parameter(s) {unknown}; allowed: {allowed}",
            )
        model = Logistic(n_inputs) if spec.type == ModelType.LOGISTIC else MLP(n_inputs, **params)
    else:
        raise TrainingError(
            "UnknownModelType",
            f"unknown model type {spec.type!r}; use logistic, mlp or custom with importPath",
        )
    check_shapes(model, n_inputs, spec)
    return model


def _custom(path: str, n_inputs: int, params: dict[str, Any]) -> nn.Module:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise TrainingError(
            "ModelImportFailed",
            f"model importPath {path!r}: cannot import {module_name!r}: "
            f"{type(exc).__name__}: {exc}",
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise TrainingError(
            "ModelImportFailed",
            f"model importPath {path!r}: {module_name} has no callable {attr!r}",
        )
    try:
        model = factory(n_inputs=n_inputs, **params)
    except Exception as exc:
        raise TrainingError(
            "ModelBuildFailed", f"{path}(n_inputs={n_inputs}, **{params}) raised {exc!r}"
        ) from None
    if not isinstance(model, nn.Module):
        raise TrainingError(
            "ModelBuildFailed",
            f"{path} returned {type(model).__name__}, not a torch.nn.Module",
        )
    return model


def check_shapes(model: nn.Module, n_inputs: int, spec: ModelSpec) -> None:
    """One forward pass on two rows: the input width fits, and one output per row."""
    probe = torch.zeros(2, n_inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as exc:
        raise TrainingError(
            "ModelInputMismatch",
            f"model {spec.import_path or spec.type} does not take the {n_inputs} preprocessed "
            f"feature inputs: {type(exc).__name__}: {exc}",
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.reshape(2, -1).shape[1] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrainingError(
            "ModelOutputMismatch",
            f"model {spec.import_path or spec.type} must give one output per row "
            f"([batch] or [batch, 1]); it gave {shape} for 2 rows",
        )


class Serving(nn.Module):
    """What is exported: preprocessed features -> probability (or value), [batch, 1]."""

    def __init__(self, model: nn.Module, classification: bool) -> None:
        super().__init__()
        self.model = model
        self.classification = classification

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.model(features).reshape(-1, 1)
        return torch.sigmoid(out) if self.classification else out
