"""Models: built-in and custom; each wrong model fails before training with a reason."""

from __future__ import annotations

import pytest
import torch

from flywheel.api.trainingjob import ModelSpec
from flywheel.training import models
from flywheel.training.errors import TrainingError

CUSTOM = "tests.training.custom_models"


def test_builtins_and_custom_give_one_output_per_row() -> None:
    for spec in [
        ModelSpec.model_validate({"type": "logistic"}),
        ModelSpec.model_validate({"type": "mlp", "params": {"hiddenUnits": [4], "dropout": 0.1}}),
        ModelSpec.model_validate(
            {"type": "custom", "importPath": f"{CUSTOM}:small", "params": {"width": 3}}
        ),
    ]:
        model = models.build(spec, 6)
        assert model(torch.zeros(5, 6)).reshape(-1).shape == (5,)


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        (
            {"type": "custom", "importPath": "no_such_pkg.models:build"},
            "ModelImportFailed",
            "cannot import 'no_such_pkg.models'",
        ),
        (
            {"type": "custom", "importPath": f"{CUSTOM}:missing"},
            "ModelImportFailed",
            "has no callable 'missing'",
        ),
        (
            {"type": "custom", "importPath": f"{CUSTOM}:fixed_width"},
            "ModelInputMismatch",
            "does not take the 6 preprocessed feature inputs",
        ),
        (
            {"type": "custom", "importPath": f"{CUSTOM}:two_outputs"},
            "ModelOutputMismatch",
            "one output per row",
        ),
        (
            {"type": "custom", "importPath": f"{CUSTOM}:not_a_module"},
            "ModelBuildFailed",
            "not a torch.nn.Module",
        ),
        (
            {"type": "mlp", "params": {"layers": 3}},
            "InvalidModelParams",
            "no parameter(s) ['layers']",
        ),
    ],
)
def test_bad_models_fail_with_a_reason(spec: dict[str, object], reason: str, words: str) -> None:
    with pytest.raises(TrainingError) as caught:
        models.build(ModelSpec.model_validate(spec), 6)
    assert caught.value.reason == reason
    assert words in str(caught.value)


def test_unknown_model_type_is_rejected_by_the_spec() -> None:
    with pytest.raises(ValueError, match="logistic"):
        ModelSpec.model_validate({"type": "xgboost"})
