"""Metrics on the test split, calibration, metrics per slice, and gates.

Pure numpy: predictions and labels in, numbers out. Higher is better for auc, accuracy,
f1, precision, recall and pr_auc; lower for logloss, rmse, mae, ece and flip_rate.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

LOWER_IS_BETTER = {"logloss", "rmse", "mae", "ece", "flip_rate"}
CLASSIFICATION = ("auc", "pr_auc", "accuracy", "f1", "precision", "recall", "logloss")
REGRESSION = ("rmse", "mae")
CALIBRATION_BINS = 10
# A slice is flagged when its primary metric trails the whole test set by this much.
WEAK_SLICE_GAP = 0.05
MIN_SLICE_ROWS = 20
EPS = 1e-7


def auc(y: Any, p: Any) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN with one class."""
    y = np.asarray(y) > 0.5
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = np.asarray(p)[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def pr_auc(y: Any, p: Any) -> float:
    """Area under the precision-recall curve as average precision: the mean, over the
    positives, of the precision among the rows scored at least as high. Unlike ROC AUC
    it falls with the positive rate, so a rare class cannot hide behind the negatives.
    NaN without a positive.

    >>> pr_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    0.8333333333333333
    """
    y = np.asarray(y) > 0.5
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(-p, kind="mergesort")
    sorted_p, hits = p[order], y[order]
    # Rows tied on a score share the precision at the last of them.
    last = np.r_[np.flatnonzero(np.diff(sorted_p) != 0), len(p) - 1]
    cum_hits = np.cumsum(hits)
    precision_at = (cum_hits[last] / (last + 1.0))[np.searchsorted(last, np.arange(len(p)))]
    return float(precision_at[hits].sum() / positives)


def per_class(y: Any, p: Any, threshold: float = 0.5) -> list[dict[str, Any]]:
    """Rows, share and recall of each class at the threshold (recall of 0 is the
    specificity): an accuracy of 0.95 with a class-1 recall of 0.1 shows here."""
    actual = np.asarray(y) > 0.5
    predicted = np.asarray(p, dtype=np.float64) >= threshold
    out = []
    for label, member in ((0, ~actual), (1, actual)):
        n = int(member.sum())
        hit = int((predicted[member] == bool(label)).sum())
        out.append(
            {
                "class": label,
                "rows": n,
                "share": n / max(len(actual), 1),
                "recall": hit / n if n else None,
            }
        )
    return out


def classification_metrics(y: Any, p: Any, threshold: float = 0.5) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    predicted = p >= threshold
    actual = y > 0.5
    tp = float((predicted & actual).sum())
    fp = float((predicted & ~actual).sum())
    fn = float((~predicted & actual).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "auc": auc(y, p),
        "pr_auc": pr_auc(y, p),
        "accuracy": float((predicted == actual).mean()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "logloss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()),
    }


def regression_metrics(y: Any, p: Any) -> dict[str, float]:
    error = np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return {"rmse": float(np.sqrt((error**2).mean())), "mae": float(np.abs(error).mean())}


def reliability(y: Any, p: Any, bins: int = CALIBRATION_BINS) -> tuple[float, list[dict[str, Any]]]:
    """Expected calibration error and the reliability bins (equal width over [0, 1])."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    ece = 0.0
    for b in range(bins):
        member = which == b
        n = int(member.sum())
        mean_p = float(p[member].mean()) if n else None
        rate = float(y[member].mean()) if n else None
        if n:
            ece += n / len(p) * abs(mean_p - rate)  # type: ignore[operator]
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": n,
                "meanPredicted": mean_p,
                "observedRate": rate,
            }
        )
    return float(ece), out


@dataclasses.dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    primary: str
    calibration: list[dict[str, Any]]
    slices: list[dict[str, Any]]
    rows: int
    # Per class: rows, share and recall at 0.5 (classification only).
    classes: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def evaluate(
    y: Any,
    p: Any,
    classification: bool,
    wanted: list[str],
    slice_values: dict[str, list[Any]],
) -> Evaluation:
    """All metrics of the task (the spec's first metric is the primary one)."""
    if classification:
        metrics = classification_metrics(y, p)
        ece, bins = reliability(y, p)
        metrics["ece"] = ece
    else:
        metrics, bins = regression_metrics(y, p), []
    usable = [m for m in wanted if m in metrics]
    primary = usable[0] if usable else ("auc" if classification else "rmse")
    slices = []
    for column, values in slice_values.items():
        keys = np.asarray(["<null>" if v is None else str(v) for v in values])
        for value in sorted(set(keys.tolist())):
            member = keys == value
            n = int(member.sum())
            if classification:
                found = classification_metrics(np.asarray(y)[member], np.asarray(p)[member])
            else:
                found = regression_metrics(np.asarray(y)[member], np.asarray(p)[member])
            score = found.get(primary, float("nan"))
            gap = score - metrics[primary]
            if primary in LOWER_IS_BETTER:
                gap = -gap
            weak = n >= MIN_SLICE_ROWS and bool(np.isfinite(gap)) and gap < -WEAK_SLICE_GAP
            slices.append(
                {
                    "column": column,
                    "value": value,
                    "rows": n,
                    "metrics": {k: v for k, v in found.items() if k in (primary, *wanted)},
                    "weak": weak,
                }
            )
    classes = per_class(y, p) if classification else []
    return Evaluation(metrics, primary, bins, slices, len(np.asarray(y)), classes)


@dataclasses.dataclass(frozen=True)
class GateResult:
    name: str
    metric: str
    value: float | None
    bound: str
    passed: bool
    # notWorseThanDeployed: both versions' figures, the rows they were measured on, and
    # the version compared (see `comparison`).
    comparison: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        found = dataclasses.asdict(self)
        if self.comparison is None:
            del found["comparison"]
        return found

    def describe(self) -> str:
        shown = "missing" if self.value is None else f"{self.value:.4f}"
        return f"{self.metric}={shown} {'meets' if self.passed else 'fails'} {self.bound}"


def check_gates(
    metrics: dict[str, float],
    gates: list[Any],
    baseline: dict[str, Any] | None,
) -> list[GateResult]:
    """Every `evaluation.gates` bound, and the baseline comparison when there is one.

    `baseline`: {"metric", "tolerance", "value", "version"} of the deployed model, and
    how `value` was found: {"rows", "registryValue", "fallback"} (`comparison`).
    """
    results = []
    for gate in gates:
        metric = str(gate.metric)
        value = metrics.get(metric)
        ok = value is not None and bool(np.isfinite(value))
        bounds = []
        if gate.min is not None:
            bounds.append(f">= {gate.min:g}")
            ok = ok and value >= gate.min
        if gate.max is not None:
            bounds.append(f"<= {gate.max:g}")
            ok = ok and value <= gate.max
        results.append(GateResult("gate", metric, value, " and ".join(bounds), bool(ok)))
    if baseline is not None and baseline.get("value") is not None:
        metric = baseline["metric"]
        value = metrics.get(metric)
        reference = float(baseline["value"])
        tolerance = float(baseline["tolerance"])
        if metric in LOWER_IS_BETTER:
            limit, bound = reference + tolerance, f"<= {reference:.4f} + {tolerance:g}"
            ok = value is not None and value <= limit
        else:
            limit, bound = reference - tolerance, f">= {reference:.4f} - {tolerance:g}"
            ok = value is not None and value >= limit
        found = comparison(baseline, value)
        bound += f" ({found['basis']})"
        results.append(GateResult("notWorseThanDeployed", metric, value, bound, bool(ok), found))
    return results


def comparison(baseline: dict[str, Any], value: float | None) -> dict[str, Any]:
    """What notWorseThanDeployed compared, in words (`basis`) and figures.

    >>> comparison({"metric": "auc", "value": 0.7, "version": "3", "rows": 200,
    ...             "registryValue": 0.8}, 0.75)["basis"]
    'deployed version 3 scored on the same 200 test rows; its registry figure 0.8000'
    >>> comparison({"metric": "auc", "value": 0.8, "version": "3", "rows": None,
    ...             "registryValue": 0.8, "fallback": "no 'x'"}, 0.75)["basis"]
    "deployed version 3's registry figure, from its own test split: no 'x'"
    """
    version, rows = baseline["version"], baseline.get("rows")
    fallback = baseline.get("fallback")
    if fallback:
        basis = f"deployed version {version}'s registry figure, from its own test split: {fallback}"
    else:
        basis = f"deployed version {version} scored on the same {rows} test rows"
        if baseline.get("registryValue") is not None:
            basis += f"; its registry figure {float(baseline['registryValue']):.4f}"
    return {
        "deployedVersion": version,
        "metric": baseline["metric"],
        "deployedValue": baseline["value"],
        "newValue": value,
        "rows": rows,
        "registryValue": baseline.get("registryValue"),
        "sameRows": not fallback,
        "fallback": fallback,
        "basis": basis,
    }
