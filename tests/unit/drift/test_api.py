"""DriftMonitor tests: each method's level means one thing, and the CRD says the same."""

from __future__ import annotations

import pydantic
import pytest

from flywheel.api import crdgen
from flywheel.api import driftmonitor as dm
from flywheel.api.driftmonitor import (
    Correction,
    DriftMonitor,
    DriftTest,
    DriftTests,
    FeatureOverride,
)


def test_levels_and_defaults() -> None:
    assert DriftTest(method=dm.TestMethod.KS).level() == 0.05
    assert DriftTest(method=dm.TestMethod.CHI2, alpha=0.01).level() == 0.01
    assert DriftTest(method=dm.TestMethod.PSI).level() == 0.2
    assert DriftTest(method=dm.TestMethod.WASSERSTEIN).level() == 0.1
    assert DriftTest(method=dm.TestMethod.JS, threshold=0.3).level() == 0.3
    tests = DriftTests()
    assert (tests.numerical.method, tests.categorical.method) == ("ks", "chi2")
    assert tests.correction == Correction.BENJAMINI_HOCHBERG


@pytest.mark.parametrize(
    "wire",
    [
        {"method": "ks", "threshold": 0.99},
        {"method": "chi2", "threshold": 0.2},
        {"method": "psi", "alpha": 0.05},
        {"method": "ks", "alpha": 1.5},
        {"method": "js", "threshold": 0},
    ],
)
def test_a_level_that_does_not_fit_the_method_is_rejected(wire: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        DriftTest.model_validate(wire)
    with pytest.raises(pydantic.ValidationError):
        FeatureOverride.model_validate({"feature": "x", **wire})


def test_crd_carries_the_rule_and_the_meanings() -> None:
    schema = crdgen.structural_schema(DriftMonitor)
    tests = schema["properties"]["spec"]["properties"]["tests"]
    for test in (tests["properties"]["numerical"], tests["properties"]["overrides"]["items"]):
        rules = [r["rule"] for r in test["x-kubernetes-validations"]]
        assert any("has(self.threshold)" in r and "has(self.alpha)" in r for r in rules)
        assert "p-value" in test["properties"]["alpha"]["description"]
    status = schema["properties"]["status"]["properties"]
    assert status["scores"]["items"]["properties"]["verdict"]["enum"] == [
        "Drift",
        "NoDrift",
        "Insufficient",
    ]
