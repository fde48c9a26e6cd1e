"""Perturbation sensitivity: how often the predicted class flips under small changes.

The test rows are perturbed as `evaluation.perturbation` declares (Gaussian noise of a
given scale on named numeric features; a share of rows with every categorical feature
swapped for another category found in the test rows), scored again, and compared with
the unperturbed predictions at the 0.5 threshold. A model whose class flips under noise
the world certainly has is fragile, whatever its accuracy.

    found = sensitivity(score, test_rows, categorical, spec)
    found["flipRate"]  # the metric flip_rate
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.api.trainingjob import Perturbation
from flywheel.training.errors import TrainingError

Score = Callable[[Any], Any]  # a pa.Table of raw rows -> probabilities [rows]


def perturb(table: Any, categorical: list[str], spec: Perturbation, seed: int) -> Any:
    """The rows with the declared noise and category swaps (same schema, same order)."""
    rng = np.random.default_rng([spec.seed, seed])
    out = table
    for noise in spec.noise:
        column = out[noise.name]
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        noisy = values + rng.normal(0.0, noise.scale, len(values))  # null stays NaN
        typed = pa.array(noisy, pa.float64(), from_pandas=True).cast(column.type, safe=False)
        out = out.set_column(out.schema.get_field_index(noise.name), noise.name, typed)
    if spec.category_swap_rate > 0:
        chosen = rng.random(out.num_rows) < spec.category_swap_rate
        for name in categorical:
            values = out[name].to_pylist()
            seen = sorted({v for v in values if v is not None})
            if len(seen) < 2:
                continue  # nothing to swap to
            swapped = [
                _other(v, seen, rng) if pick and v is not None else v
                for v, pick in zip(values, chosen, strict=True)
            ]
            index = out.schema.get_field_index(name)
            out = out.set_column(index, name, pa.array(swapped, out[name].type))
    return out


def _other(value: Any, seen: list[Any], rng: Any) -> Any:
    choice = seen[int(rng.integers(len(seen) - 1))]
    return seen[-1] if choice == value else choice


def check(spec: Perturbation, features: list[str], categorical: list[str]) -> None:
    """Before training: every noisy feature is a numeric feature of the training set."""
    unknown = sorted({n.name for n in spec.noise} - set(features))
    if unknown:
        raise TrainingError(
            "PerturbedFeatureUnknown",
            f"evaluation.perturbation.noise names {unknown}, not features of the training "
            f"set ({features})",
        )
    categories = sorted({n.name for n in spec.noise} & set(categorical))
    if categories:
        raise TrainingError(
            "PerturbedFeatureNotNumeric",
            f"evaluation.perturbation.noise names categorical feature(s) {categories}: "
            "perturb categories with categorySwapRate instead",
        )


def sensitivity(
    score: Score, table: Any, categorical: list[str], spec: Perturbation
) -> dict[str, Any]:
    """The flip rate over all declared perturbations at once, and per perturbation."""
    base = np.asarray(score(table)).reshape(-1) >= 0.5

    def flips(part: Perturbation, seed: int) -> float:
        changed = np.asarray(score(perturb(table, categorical, part, seed))).reshape(-1) >= 0.5
        return float((changed != base).mean()) if len(base) else 0.0

    each = {
        f"noise:{n.name}": flips(Perturbation(noise=[n], seed=spec.seed), 1 + i)
        for i, n in enumerate(spec.noise)
    }
    if spec.category_swap_rate > 0 and categorical:
        swap = Perturbation(category_swap_rate=spec.category_swap_rate, seed=spec.seed)
        each["categorySwap"] = flips(swap, 0)
    return {"flipRate": flips(spec, 0), "each": each, "rows": len(base), "spec": spec.to_wire()}
