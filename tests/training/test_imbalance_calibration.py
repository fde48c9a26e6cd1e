"""Class imbalance and calibration on a world where churn is rare (under one row in ten).

Three Ray fits share the module: plain cross-entropy, balanced class weights, and random
oversampling. The calibrated job differs from the weighted one in `calibration` alone,
which is fitted after the loop, so it continues the weighted run's final checkpoint
instead of training again. Every job hashes `plan`, so the served version also shows an
unseen category being scored.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from flywheel.entrypoints import RunContext
from flywheel.features import calibration
from flywheel.features.preprocess import Preprocessor
from flywheel.serving import predictor
from flywheel.training import export, runner, trainset
from flywheel.training.imbalance import WeightedLoss
from tests.training import world

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    # A test may train one model on Ray; on a busy shared machine that takes minutes.
    pytest.mark.timeout(900),
]

RARE = {"customers": 600, "intercept": -4.0}


@pytest.fixture(scope="module")
def rare_context(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    return world.build(tmp_path_factory.mktemp("rare"), **RARE)


def rare_job(name: str, **spec: Any) -> Any:
    return world.job(
        name,
        split={"strategy": "random", "stratify": True, "testFraction": 0.3, "seed": 3},
        hyperparameters={"epochs": 6, "batchSize": 64, "learningRate": 0.05},
        scaling={"numWorkers": 1},
        preprocessing={"hashed": [{"name": "plan", "buckets": 16}]},
        output={"modelName": name},
        **spec,
    )


JOBS = {
    "plain": lambda: rare_job("plain"),
    "weighted": lambda: rare_job("weighted", imbalance={"classWeights": "balanced"}),
    "calibrated": lambda: rare_job(
        "weighted", imbalance={"classWeights": "balanced"}, calibration={"method": "platt"}
    ),
    "oversampled": lambda: rare_job("oversampled", imbalance={"resampling": "oversample"}),
}


@pytest.fixture(scope="module")
def fits(rare_context: RunContext, ray_cluster: None) -> Callable[[str], Any]:
    """Each job's status, trained on first use: a test pays for one fit at most."""
    done: dict[str, Any] = {}

    def fit(key: str) -> Any:
        if key not in done:
            status = runner.run_trainingjob(JOBS[key](), rare_context)
            assert status.phase == "Succeeded", (key, status.conditions)
            done[key] = status
        return done[key]

    return fit


def card(status: Any) -> dict[str, Any]:
    return dict(json.loads((version_dir(status) / "card.json").read_text()))


def version_dir(status: Any) -> Path:
    return Path(status.artifact_uri.removeprefix("file://"))


def class_recall(status: Any, label: int) -> float:
    found = card(status)["evaluation"]["classes"]
    return float(next(c["recall"] for c in found if c["class"] == label))


def test_stratified_split_keeps_the_rare_class_share_in_every_part(
    rare_context: RunContext,
) -> None:
    job = rare_job("plain")
    ts = trainset.load(job, rare_context)
    y = trainset.label_values(ts, np.arange(ts.table.num_rows))
    parts = runner.split_of(job, ts)
    shares = [y[p].mean() for p in (parts.train, parts.validation, parts.test)]
    assert 0.03 < y.mean() < 0.15
    assert max(abs(s - y.mean()) for s in shares) < 0.01
    assert sorted(np.concatenate([parts.train, parts.validation, parts.test])) == list(
        range(len(y))
    )


def test_unweighted_training_misses_the_rare_class(fits: Callable[[str], Any]) -> None:
    plain = fits("plain")
    # Accuracy looks fine because the majority is easy; recall of class 1 and PR-AUC show
    # what ROC AUC and accuracy hide.
    assert plain.metrics["accuracy"] > 0.85 and plain.metrics["auc"] > 0.8
    assert class_recall(plain, 1) < 0.5
    assert plain.metrics["pr_auc"] < plain.metrics["auc"]
    assert class_recall(plain, 0) > 0.95


def test_class_weights_raise_the_rare_class_recall(fits: Callable[[str], Any]) -> None:
    plain, weighted = fits("plain"), fits("weighted")
    assert class_recall(weighted, 1) > class_recall(plain, 1) + 0.2
    assert weighted.metrics["auc"] > 0.8 and 0 < weighted.metrics["pr_auc"] <= 1
    print(
        f"\nrecall of class 1: plain {class_recall(plain, 1):.3f}, balanced weights "
        f"{class_recall(weighted, 1):.3f}; pr_auc {plain.metrics['pr_auc']:.3f} / "
        f"{weighted.metrics['pr_auc']:.3f}"
    )


def test_oversampling_raises_the_rare_class_recall(fits: Callable[[str], Any]) -> None:
    plain, oversampled = fits("plain"), fits("oversampled")
    assert class_recall(oversampled, 1) > class_recall(plain, 1) + 0.2
    print(f"\nrecall of class 1 oversampled: {class_recall(oversampled, 1):.3f}")


def test_oversampling_touches_the_training_rows_only(
    fits: Callable[[str], Any], rare_context: RunContext
) -> None:
    job = rare_job("oversampled", imbalance={"resampling": "oversample"})
    ts = trainset.load(job, rare_context)
    parts = runner.split_of(job, ts)
    y_test = trainset.label_values(ts, parts.test)
    found = card(fits("oversampled"))
    split = found["lineage"]["split"]
    assert split["trainAfterResampling"] > split["train"]
    assert split["trainPositiveShare"] == pytest.approx(0.5, abs=0.01)
    # The test rows are the unsampled split's, with the world's class shares.
    assert split["test"] == len(parts.test) == found["evaluation"]["rows"]
    classes = {c["class"]: c["rows"] for c in found["evaluation"]["classes"]}
    assert classes == {0: int((y_test == 0).sum()), 1: int((y_test == 1).sum())}


def test_calibration_fitted_on_validation_lowers_the_test_ece(
    fits: Callable[[str], Any],
) -> None:
    weighted, calibrated = fits("weighted"), fits("calibrated")
    # Balanced weights inflate the rare class's probabilities; Platt scaling undoes it.
    assert calibrated.metrics["ece_uncalibrated"] == pytest.approx(weighted.metrics["ece"])
    assert calibrated.metrics["ece"] < weighted.metrics["ece"] / 2
    assert calibrated.metrics["auc"] == pytest.approx(weighted.metrics["auc"], abs=1e-6)
    fix = card(calibrated)["evaluation"]["calibrationFix"]
    assert fix["method"] == "platt" and fix["fittedOn"] == "validation"
    assert fix["after"]["ece"] < fix["before"]["ece"]
    html = (version_dir(calibrated) / "card.html").read_text()
    assert "Calibration fix" in html and "Recall per class" in html
    print(f"\nECE before {fix['before']['ece']:.4f}, after {fix['after']['ece']:.4f}")


def test_the_model_server_applies_calibration_and_hashes_an_unseen_plan(
    fits: Callable[[str], Any],
) -> None:
    where = version_dir(fits("calibrated"))
    assert (where / "calibration.json").is_file()
    served = predictor.load_predictor(str(where))
    rows = {
        "plan": np.array(["enterprise", "basic"], dtype=object),  # enterprise: never seen
        "risk": np.array([1.5, 1.5]),
        "noise": np.array([0.0, 0.0]),
    }
    scores = served.predict_columns(rows).reshape(-1)
    assert np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    pre = Preprocessor.from_json(json.loads((where / "preprocessing.json").read_text()))
    matrix = pre.transform(pa.table({k: list(v) for k, v in rows.items()}))
    plan = pre.columns[0]
    assert plan.kind == "hashed"
    assert matrix[0, 0] == 0 and matrix[0, 1 : plan.width].sum() == 1  # a bucket, not null
    raw = export.load(where / export.MODEL_FILE)(torch.from_numpy(matrix)).detach().numpy()
    state = json.loads((where / "calibration.json").read_text())
    expected = calibration.Calibrator.from_json(state).apply(raw).reshape(-1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert not np.allclose(scores, raw.reshape(-1))
    # Triton has no calibration hook: its TorchScript copy carries the calibrator.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        triton = torch.jit.load(str(where / "triton" / "weighted" / "1" / "model.pt"))
    from_triton = triton(torch.from_numpy(matrix)).detach().numpy().reshape(-1)
    np.testing.assert_allclose(from_triton, scores, rtol=1e-4, atol=1e-6)


def test_focal_loss_weighs_easy_rows_less_than_hard_ones() -> None:
    logits = torch.tensor([4.0, -4.0])  # a confident right answer, a confident wrong one
    target = torch.tensor([1.0, 1.0])
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    focal = [WeightedLoss(gamma=2.0)(logits[i : i + 1], target[i : i + 1]) for i in range(2)]
    assert float(focal[0]) < float(plain[0]) / 1000  # easy: almost nothing left
    assert float(focal[1]) > float(plain[1]) * 0.9  # hard: nearly all of it
    # A positive row weighs three negatives: (3 x its loss + the negative's) / 4.
    both = torch.tensor([-2.0, -2.0])
    labels = torch.tensor([1.0, 0.0])
    each = torch.nn.functional.binary_cross_entropy_with_logits(both, labels, reduction="none")
    weighted = WeightedLoss(pos_weight=3.0)(both, labels)
    assert float(weighted) == pytest.approx(float(3 * each[0] + each[1]) / 4)


def sensitivity_job(noise: float, swap: float) -> Any:
    """The weighted job with a perturbation gate: evaluation is not part of the run's
    identity, so it scores the weighted run's final weights without training again."""
    return rare_job(
        "weighted",
        imbalance={"classWeights": "balanced"},
        evaluation={
            "metrics": ["auc", "flip_rate"],
            "perturbation": {
                "noise": [{"name": "risk", "scale": noise}],
                "categorySwapRate": swap,
                "seed": 1,
            },
            "gates": [{"metric": "flip_rate", "max": 0.05}],
        },
    )


def test_perturbation_sensitivity_is_measured_and_gated(
    fits: Callable[[str], Any], rare_context: RunContext
) -> None:
    fits("weighted")
    steady = runner.run_trainingjob(sensitivity_job(0.01, 0.0), rare_context)
    assert steady.phase == "Succeeded", steady.conditions
    assert steady.metrics["flip_rate"] <= 0.05
    shaken = runner.run_trainingjob(sensitivity_job(1.5, 0.5), rare_context)
    assert shaken.phase == "Failed"
    assert shaken.conditions[0].reason == "GateFailed"
    assert "flip_rate=" in shaken.conditions[0].message
    assert shaken.metrics["flip_rate"] > 0.1 > steady.metrics["flip_rate"]
    found = card(steady)["evaluation"]["perturbation"]
    assert set(found["each"]) == {"noise:risk"} and found["rows"] > 0
    print(
        f"\nflip rate: risk noise 0.01 -> {steady.metrics['flip_rate']:.3f}; "
        f"risk noise 1.5 + half the plans swapped -> {shaken.metrics['flip_rate']:.3f}"
    )
