"""Bad imbalance, calibration, hashing and perturbation settings fail the job before Ray
starts, with a reason and a message that names the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.entrypoints import RunContext
from flywheel.training import runner
from tests.training import world

REGRESSION = {"label": {"column": "amount"}}


@pytest.mark.parametrize(
    ("spec", "reason", "words"),
    [
        (
            {**REGRESSION, "imbalance": {"classWeights": "balanced"}},
            "NeedsClassLabel",
            ["imbalance.classWeights", "'amount'", "remove them"],
        ),
        (
            {**REGRESSION, "calibration": {"method": "platt"}},
            "NeedsClassLabel",
            ["calibration.method"],
        ),
        (
            {**REGRESSION, "split": {"strategy": "random", "stratify": True}},
            "StratifyNeedsClasses",
            ["split.stratify", "set split.stratify to false"],
        ),
        (
            {"preprocessing": {"hashed": [{"name": "city", "buckets": 8}]}},
            "HashedFeatureUnknown",
            ["preprocessing.hashed", "'city'"],
        ),
        (
            {"preprocessing": {"hashed": [{"name": "risk", "buckets": 8}]}},
            "HashedFeatureNotCategorical",
            ["'risk'", "remove it from preprocessing.hashed"],
        ),
        (
            {"evaluation": {"perturbation": {"noise": [{"name": "plan", "scale": 1.0}]}}},
            "PerturbedFeatureNotNumeric",
            ["categorySwapRate instead"],
        ),
        (
            {"evaluation": {"perturbation": {"noise": [{"name": "tenure", "scale": 1.0}]}}},
            "PerturbedFeatureUnknown",
            ["['tenure']"],
        ),
    ],
)
def test_bad_settings_fail_before_training(
    world_context: RunContext, spec: dict[str, Any], reason: str, words: list[str]
) -> None:
    status = runner.run_trainingjob(world.job("bad-practice", **spec), world_context)
    assert status.phase == "Failed"
    [condition] = status.conditions
    assert condition.reason == reason, condition.message
    for word in words:
        assert word in condition.message
    assert status.model_version is None
