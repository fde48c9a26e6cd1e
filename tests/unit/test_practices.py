"""Imbalance, calibration and the hashing trick as pure functions, and their spec fields."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from flywheel.api.trainingjob import (
    ClassWeights,
    FeatureNoise,
    Perturbation,
    Resampling,
    SplitStrategy,
    TrainingJob,
)
from flywheel.features import calibration
from flywheel.features.preprocess import MAX_CATEGORIES, Preprocessor, bucket
from flywheel.training import card, evaluate, imbalance, perturb, trainset
from tests.training import world

# --- spec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"split": {"stratify": True}}, "stratify needs strategy random"),
        ({"imbalance": {"focalGamma": 1.0}}, "focalGamma is only allowed with loss focal"),
        (
            {"preprocessing": {"hashed": [{"name": "plan", "buckets": 8}] * 2}},
            "duplicate hashed features ['plan']",
        ),
        ({"preprocessing": {"hashed": [{"name": "plan", "buckets": 1}]}}, "greater than or equal"),
        ({"calibration": {"method": "isotonic"}}, "'none', 'platt' or 'temperature'"),
        ({"warmStart": {}}, "exactly one of version, alias or deploymentRef"),
        (
            {"warmStart": {"version": "abc", "alias": "champion"}},
            "exactly one of version, alias or deploymentRef",
        ),
        ({"warmStart": {"alias": "x", "forgettingTolerance": 2}}, "less than or equal to 1"),
        ({"quantization": {"mode": "static"}}, "'dynamicInt8'"),
        ({"quantization": {"maxMetricDrop": -0.1}}, "greater than or equal to 0"),
    ],
)
def test_bad_practice_settings_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        world.job(**changes)
    assert message in str(caught.value)


def test_practices_default_to_off() -> None:
    spec = world.job().spec
    assert not spec.split.stratify
    assert spec.imbalance.class_weights == "none" and spec.imbalance.resampling == "none"
    assert spec.calibration.method == "none" and spec.preprocessing.hashed == []
    assert spec.warm_start is None and spec.quantization is None


def test_a_warm_start_from_a_deployment_reads_it_without_waiting_for_it() -> None:
    from flywheel import plan
    from flywheel_operator.handlers import trainingjob as handler

    job = world.job(warmStart={"deploymentRef": {"name": "churn-md"}})
    assert ("ModelDeployment", "churn-md") in job.references()
    assert handler.deployments_read(job) == ["churn-md"]
    found = plan._training_references("spec", job.spec)
    assert ("spec.warmStart.deploymentRef", "ModelDeployment", "churn-md") in found
    assert handler.deployments_read(world.job(warmStart={"alias": "champion"})) == []


def test_warm_start_and_quantization_carry_their_cel_rules() -> None:
    from flywheel.api import crdgen

    crd = crdgen.crd(TrainingJob)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    warm = spec["properties"]["warmStart"]
    assert warm["x-kubernetes-validations"][0]["message"] == (
        "warmStart needs exactly one of version, alias or deploymentRef"
    )
    assert "forgettingTolerance" in warm["properties"]
    assert spec["properties"]["quantization"]["properties"]["mode"]["enum"] == ["dynamicInt8"]


def test_forgetting_and_compute_against_from_scratch() -> None:
    from flywheel.training import runner, warmstart

    base_card = {"config": {"epochsRun": 12}, "lineage": {"split": {"trainAfterResampling": 100}}}
    base = warmstart.Base(
        "m",
        "v1",
        "alias champion",
        Path("."),
        Preprocessor(()),
        {},
        {},
        "y",
        base_card,
        4.0,
    )
    found = warmstart.compute(base, 3, 80)
    assert found["fromScratch"] == {"version": "v1", "epochs": 12, "rowsSeen": 1200, "seconds": 4.0}
    assert found["epochsSaved"] == 9 and found["rowsSeenRatio"] == pytest.approx(0.2)
    # A chain of warm starts keeps counting against the run it began with.
    chained = dataclasses.replace(base, card={**base_card, "warmStart": found})
    assert warmstart.compute(chained, 2, 80)["fromScratch"]["version"] == "v1"
    warm = {"base": {"model": "m", "version": "v2"}, **found}
    assert runner.warm_note(warm, 1.0).endswith("1.0s (4.0s from scratch)")


# --- imbalance ----------------------------------------------------------------------


def rare_labels(n: int = 1000, share: float = 0.05, seed: int = 0) -> Any:
    return (np.random.default_rng(seed).random(n) < share).astype(np.float64)


@pytest.mark.parametrize("method", [Resampling.OVERSAMPLE, Resampling.UNDERSAMPLE])
def test_resampling_reaches_the_ratio_from_the_given_rows_only(method: Resampling) -> None:
    y = rare_labels()
    rows = np.arange(2000, 3000)  # row numbers of a training split, not positions
    out = imbalance.resample(rows, y, method, 0.5, seed=1)
    assert set(out.tolist()) <= set(rows.tolist())
    y_out = y[out - 2000]
    assert (y_out == 1).sum() / (y_out == 0).sum() == pytest.approx(0.5, abs=0.02)
    if method == Resampling.OVERSAMPLE:
        assert set(out.tolist()) == set(rows.tolist())  # every row kept, minority repeated
    else:
        assert len(set(out.tolist())) == len(out)  # no repeats
        assert (y_out == 1).sum() == (y == 1).sum()  # every minority row kept


def test_no_resampling_and_balanced_weights() -> None:
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    rows = np.arange(8)
    assert imbalance.resample(rows, y, Resampling.NONE, 1.0, 0) is rows
    assert imbalance.positive_weight(y, ClassWeights.BALANCED) == 3.0
    assert imbalance.positive_weight(y, ClassWeights.NONE) == 1.0


def rare_set(n: int = 400, share: float = 0.05) -> trainset.TrainingSet:
    y = rare_labels(n, share, seed=4)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    table = pa.table(
        {
            "label": y,
            "t": pa.array(
                [start + timedelta(hours=i) for i in range(n)], pa.timestamp("us", "UTC")
            ),
            "x": np.arange(n, dtype=np.float64),
        }
    )
    return trainset.TrainingSet(table, ["x"], "label", "t", {})


def test_stratified_split_keeps_the_share_a_plain_random_split_can_miss() -> None:
    ts = rare_set()
    y = trainset.label_values(ts, np.arange(400))
    worst_plain, worst_stratified = 0.0, 0.0
    for seed in range(20):
        for stratify in (False, True):
            parts = trainset.split(ts, SplitStrategy.RANDOM, 0.2, seed, stratify)
            gap = abs(y[parts.test].mean() - y.mean())
            if stratify:
                worst_stratified = max(worst_stratified, gap)
                assert sorted(np.concatenate([parts.train, parts.validation, parts.test])) == list(
                    range(400)
                )
            else:
                worst_plain = max(worst_plain, gap)
    assert worst_stratified < 0.005 < worst_plain


def test_stratify_refuses_a_numeric_label() -> None:
    ts = rare_set()
    numeric = trainset.TrainingSet(
        ts.table.set_column(0, "label", pa.array(np.linspace(0, 3, 400))), ["x"], "label", "t", {}
    )
    with pytest.raises(Exception, match=r"split\.stratify needs a 0/1 label"):
        trainset.split(numeric, SplitStrategy.RANDOM, 0.2, 0, True)


def test_pr_auc_falls_with_the_positive_rate_where_roc_auc_does_not() -> None:
    rng = np.random.default_rng(0)
    pr = []
    for share in (0.5, 0.02):
        y = rng.random(20000) < share
        scores = rng.normal(size=20000) + 1.0 * y  # the same separation at any share
        assert evaluate.auc(y, scores) == pytest.approx(0.76, abs=0.02)
        pr.append(evaluate.pr_auc(y, scores))
    assert pr[0] > 0.7 and pr[1] < 0.15
    assert evaluate.pr_auc([0, 1, 1], [0.1, 0.9, 0.8]) == 1.0
    assert np.isnan(evaluate.pr_auc([0, 0], [0.1, 0.2]))


def test_per_class_recall_shows_what_accuracy_hides() -> None:
    y = np.array([0] * 95 + [1] * 5)
    always_no = np.zeros(100)
    found = evaluate.evaluate(y, always_no, True, ["accuracy"], {})
    assert found.metrics["accuracy"] == 0.95
    assert found.classes == [
        {"class": 0, "rows": 95, "share": 0.95, "recall": 1.0},
        {"class": 1, "rows": 5, "share": 0.05, "recall": 0.0},
    ]


# --- calibration --------------------------------------------------------------------


def miscalibrated(n: int, seed: int) -> tuple[Any, Any]:
    """True probability sigmoid(z); the model says sigmoid(3z - 1): overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return 1 / (1 + np.exp(-(3 * z - 1))), y


def test_platt_recovers_the_distortion_and_lowers_ece_on_other_rows() -> None:
    p_fit, y_fit = miscalibrated(5000, 0)
    p_test, y_test = miscalibrated(5000, 1)
    platt = calibration.fit(p_fit, y_fit, calibration.PLATT)
    assert platt.a == pytest.approx(1 / 3, abs=0.03) and platt.b == pytest.approx(1 / 3, abs=0.05)
    before, _ = evaluate.reliability(y_test, p_test)
    after, _ = evaluate.reliability(y_test, platt.apply(p_test))
    assert after < before / 3
    temperature = calibration.fit(p_fit, y_fit, calibration.TEMPERATURE)
    assert temperature.b == 0 and temperature.to_json()["temperature"] > 2
    assert evaluate.reliability(y_test, temperature.apply(p_test))[0] < before
    # Temperature keeps the order of the scores (and so the AUC).
    order = np.argsort(p_test)
    assert (np.diff(temperature.apply(p_test)[order]) >= 0).all()


def test_calibrator_round_trips_and_refuses_one_class() -> None:
    for c in (
        calibration.Calibrator("platt", 0.5, -0.2),
        calibration.Calibrator("temperature", 0.25),
    ):
        assert calibration.Calibrator.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="both classes"):
        calibration.fit([0.2, 0.3], [1, 1], "platt")
    with pytest.raises(ValueError, match="unknown method 'isotonic'"):
        calibration.Calibrator.from_json({"method": "isotonic"})


# --- the hashing trick --------------------------------------------------------------


def test_hashing_keeps_high_cardinality_categories_apart_and_places_unseen_ones() -> None:
    cities = [f"city-{i}" for i in range(500)]
    train = pa.table({"city": cities})
    vocab = Preprocessor.fit(train, ["city"])
    hashed = Preprocessor.fit(train, ["city"], {"city": 4096})
    # A vocabulary keeps the most frequent MAX_CATEGORIES; the rest all become "unknown".
    unknown = vocab.transform(train)[:, 0]
    assert unknown.sum() == 500 - MAX_CATEGORIES
    codes = hashed.category_indices(train)[:, 0]
    assert len(set(codes.tolist())) > 450 and codes.min() >= 1
    # Serving: a city never seen in training is a bucket, not an error and not null.
    state = hashed.to_json()
    served = Preprocessor.from_json(state).transform({"city": ["city-9999", None]})
    assert served[0, 0] == 0 and served[0, bucket("city-9999", 4096)] == 1
    assert served[1, 0] == 1 and served[1].sum() == 1
    assert state["columns"][0] == {
        "name": "city",
        "kind": "hashed",
        "buckets": 4096,
        "hash": "crc32",
    }
    assert hashed.width == 4097 and hashed.output_names()[1] == "city#0"


# --- perturbation sensitivity -------------------------------------------------------


def test_perturbation_changes_only_what_it_declares() -> None:
    table = pa.table(
        {
            "risk": pa.array([0.0] * 1000, pa.float64()),
            "age": pa.array([30] * 1000, pa.int64()),
            "plan": pa.array(["a", "b", "c", None] * 250),
        }
    )
    spec = Perturbation(noise=[FeatureNoise(name="risk", scale=0.5)], category_swap_rate=0.3)
    out = perturb.perturb(table, ["plan"], spec, seed=0)
    assert out.schema == table.schema
    assert np.std(out["risk"].to_numpy()) == pytest.approx(0.5, abs=0.05)
    assert out["age"].equals(table["age"])
    before, after = table["plan"].to_pylist(), out["plan"].to_pylist()
    changed = [a != b for a, b in zip(before, after, strict=True)]
    assert 0.2 < np.mean(changed) < 0.3  # 30% of the rows, nulls left alone
    assert all(b is not None for b, c in zip(before, changed, strict=True) if c)
    assert set(after) == {"a", "b", "c", None}
    assert perturb.perturb(table, ["plan"], spec, seed=0).equals(out)  # seeded


def test_flip_rate_counts_class_changes() -> None:
    table = pa.table({"x": np.linspace(-1, 1, 1001)})
    spec = Perturbation(noise=[FeatureNoise(name="x", scale=0.1)])

    def score(rows: Any) -> Any:
        return 1 / (1 + np.exp(-10 * rows["x"].to_numpy()))

    found = perturb.sensitivity(score, table, [], spec)
    # Only rows within a few noise widths of the 0.5 boundary at x=0 can flip.
    assert 0.01 < found["flipRate"] < 0.1 and 0.01 < found["each"]["noise:x"] < 0.1


def test_perturbation_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="needs noise or a categorySwapRate"):
        Perturbation()
    spec = Perturbation(noise=[FeatureNoise(name="plan", scale=1.0)])
    with pytest.raises(Exception, match="categorical feature"):
        perturb.check(spec, ["plan", "risk"], ["plan"])
    with pytest.raises(Exception, match=r"names \['plan'\], not features"):
        perturb.check(spec, ["risk"], [])


# --- the model card -----------------------------------------------------------------


def test_card_shows_recall_per_class_calibration_before_and_after_and_flips(
    tmp_path: Path,
) -> None:
    y = np.array([0] * 90 + [1] * 10)
    p = np.where(y == 1, 0.45, 0.3)
    found = evaluate.evaluate(y, p, True, ["pr_auc"], {})
    ece, bins = evaluate.reliability(y, p)
    fix = {
        "method": "platt",
        "fittedOn": "validation",
        "validationRows": 50,
        "parameters": {"method": "platt", "a": 1.0, "b": -1.0},
        "before": {"ece": 0.25, "bins": bins},
        "after": {"ece": ece, "bins": bins},
    }
    flips = {"flipRate": 0.12, "each": {"noise:risk": 0.1}, "rows": 100, "spec": {}}
    card.write(
        tmp_path,
        {
            "model": "churn",
            "intendedUse": "test",
            "evaluation": {
                "metrics": found.metrics,
                "primaryMetric": found.primary,
                "calibration": found.calibration,
                "slices": [],
                "classes": found.classes,
                "calibrationFix": fix,
                "perturbation": flips,
                "rows": found.rows,
            },
            "gates": [],
            "lineage": {},
            "config": {},
        },
    )
    html = (tmp_path / card.CARD_HTML).read_text()
    assert found.primary == "pr_auc"
    assert "Recall per class" in html and "class 1 (10 rows, 10.0%)" in html
    assert "ECE before" in html and "0.2500" in html
    assert "noise:risk only" in html and "0.1200" in html
    assert (tmp_path / card.RELIABILITY_PNG).is_file()
    notes = json.loads((tmp_path / card.CARD_JSON).read_text())["limitations"]
    assert any("Class 1 (10 test rows, 10.0%) has a recall of 0.000" in n for n in notes)
