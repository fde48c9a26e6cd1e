"""Class imbalance: resampling of the training rows, class weights and the focal loss.

Everything here acts on the training split only. Validation and test rows keep the
class shares the world has, so early stopping, calibration and the reported metrics
measure the model on the data it will meet, not on a rebalanced copy.

    rows = resample(train_rows, y_train, Resampling.OVERSAMPLE, 1.0, seed)
    loss = loss_function(positive_weight(y_train, ClassWeights.BALANCED), gamma=None)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from flywheel.api.trainingjob import ClassWeights, Resampling

DEFAULT_FOCAL_GAMMA = 2.0


def resample(rows: Any, y: Any, method: Resampling, target_ratio: float, seed: int) -> Any:
    """Training row indices after random over- or undersampling.

    `y[i]` is the 0/1 label of `rows[i]`. Oversampling repeats random minority rows (all
    of them kept) and undersampling keeps a random subset of the majority, until
    minority/majority reaches `target_ratio`; a split already at the ratio is unchanged.

    >>> resample(np.arange(6), np.array([0, 0, 0, 0, 1, 1]), Resampling.UNDERSAMPLE, 1.0, 0)
    array([0, 2, 4, 5])
    """
    rows = np.asarray(rows)
    if method == Resampling.NONE:
        return rows
    y = np.asarray(y) > 0.5
    minority = bool(y.sum() * 2 < len(y))
    small, large = rows[y == minority], rows[y != minority]
    rng = np.random.default_rng([seed, 7])
    if method == Resampling.OVERSAMPLE:
        extra = max(0, int(np.ceil(len(large) * target_ratio)) - len(small))
        chosen = np.concatenate([small, rng.choice(small, extra, replace=True)])
        return np.sort(np.concatenate([chosen, large]))
    keep = min(len(large), max(1, int(np.ceil(len(small) / target_ratio))))
    chosen = rng.choice(large, keep, replace=False)
    return np.sort(np.concatenate([small, chosen]))


def positive_weight(y: Any, method: ClassWeights) -> float:
    """The loss weight of a positive row relative to a negative one.

    balanced: each class weighs rows/(2 x its rows), so both classes weigh the same in
    total; the ratio of the two is negatives/positives.

    >>> positive_weight(np.array([0, 0, 0, 1]), ClassWeights.BALANCED)
    3.0
    """
    if method == ClassWeights.NONE:
        return 1.0
    y = np.asarray(y) > 0.5
    positives = int(y.sum())
    return float((len(y) - positives) / positives) if positives else 1.0


class WeightedLoss(nn.Module):
    """Binary cross-entropy on logits with a positive-class weight, optionally focal:
    each row's loss is scaled by (1 - p_true)^gamma, so rows the model already gets
    right weigh little and the hard (often minority) rows dominate."""

    def __init__(self, pos_weight: float = 1.0, gamma: float | None = None) -> None:
        super().__init__()
        self.pos_weight = float(pos_weight)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_row = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        if self.gamma is not None:
            p = torch.sigmoid(logits)
            p_true = p * target + (1 - p) * (1 - target)
            per_row = per_row * (1 - p_true).pow(self.gamma)
        weights = target * self.pos_weight + (1 - target)
        return (per_row * weights).sum() / weights.sum()
