"""Statistics profile of a snapshot: the reference later drift checks compare against.

Pure: Arrow columns in, plain JSON-ready dicts out.

    numbers     count, nulls, nan, min, max, mean, std, quantiles, histogram (bin edges
                and counts of equal-width bins between min and max; fewer bins where
                float64 cannot tell the edges apart). Integer min and max are exact.
    categories  count, nulls, distinct, the most frequent values with their counts, other;
                a column that looks like an identifier (most values of a large sample are
                distinct) gets no frequencies: they would say nothing about drift
    times       count, nulls, min, max
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
TOP_VALUES = 50
# Above this many values, a sample decides whether a text column is an identifier.
IDENTIFIER_SAMPLE = 100_000
IDENTIFIER_DISTINCT_RATIO = 0.5


def profile_table(table: Any) -> dict[str, Any]:
    return {
        "rows": table.num_rows,
        "columns": {name: profile_column(table.column(name)) for name in table.column_names},
    }


def profile_column(column: Any) -> dict[str, Any]:
    kind = column_kind(column.type)
    base = {
        "kind": kind,
        "type": str(column.type),
        "count": len(column),
        "nulls": column.null_count,
    }
    if kind == "numeric":
        return base | numeric_profile(column)
    if kind == "categorical":
        return base | categorical_profile(column)
    if kind == "time":
        valid = column.drop_null()
        if len(valid) == 0:
            return base
        return base | {
            "min": pc.min(valid).as_py().isoformat(),
            "max": pc.max(valid).as_py().isoformat(),
        }
    return base


def column_kind(arrow_type: Any) -> str:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "numeric"
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_boolean(arrow_type)
        or pa.types.is_dictionary(arrow_type)
    ):
        return "categorical"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "time"
    return "other"


def numeric_profile(column: Any) -> dict[str, Any]:
    present = column.drop_null()
    values = present.to_numpy().astype(np.float64, copy=False)
    nan = int(np.isnan(values).sum())
    finite = values[np.isfinite(values)]
    out: dict[str, Any] = {"nan": nan}
    if finite.size == 0:
        return out
    low, high = float(finite.min()), float(finite.max())
    edges = histogram_edges(low, high)
    # Bins are [edge, next edge), the last one closed, as numpy's histogram.
    bins = np.clip(np.searchsorted(edges, finite, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(bins, minlength=len(edges) - 1)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float64 they are inf
        quantiles = np.quantile(finite, QUANTILES)
        mean, std = float(finite.mean()), float(finite.std())
    exact: Any = (low, high)
    if pa.types.is_integer(column.type):  # int64 beyond 2**53 is not a float64
        extremes = pc.min_max(present)
        exact = (extremes["min"].as_py(), extremes["max"].as_py())
    return out | {
        "min": exact[0],
        "max": exact[1],
        "mean": mean,
        "std": std,
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def histogram_edges(low: float, high: float) -> Any:
    """HISTOGRAM_BINS + 1 equal-width edges from low to high; where float64 cannot hold
    that many distinct values in between (a narrow range of large numbers), the distinct
    ones (one bin when low == high)."""
    if low == high:
        return np.array([low, high])
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    if not np.all(np.isfinite(edges)):  # a range wider than float64: split at the middle
        edges = np.linspace(low / 2, high / 2, HISTOGRAM_BINS + 1) * 2
    distinct = np.unique(edges)
    return distinct if len(distinct) > 1 else np.array([low, high])


def categorical_profile(column: Any) -> dict[str, Any]:
    present = column.drop_null()
    if len(present) > 2 * IDENTIFIER_SAMPLE:
        step = len(present) // IDENTIFIER_SAMPLE
        sample = present.take(pa.array(np.arange(0, len(present), step)[:IDENTIFIER_SAMPLE]))
        ratio = pc.count_distinct(sample).as_py() / len(sample)
        if ratio > IDENTIFIER_DISTINCT_RATIO:
            return {"identifierLike": True, "sampleDistinctRatio": round(ratio, 4)}
    counts = pc.value_counts(present)
    values = counts.field("values")
    freq = counts.field("counts").to_numpy()
    if len(freq) > TOP_VALUES:  # only the most frequent values leave Arrow
        candidates = np.argpartition(-freq, TOP_VALUES)[:TOP_VALUES]
    else:
        candidates = np.arange(len(freq))
    # Most frequent first; equal counts in the order the values first appeared.
    order = candidates[np.lexsort((candidates, -freq[candidates]))]
    top_values = values.take(pa.array(order)).to_pylist()
    top = [{"value": v, "count": int(freq[i])} for v, i in zip(top_values, order, strict=True)]
    return {
        "distinct": len(freq),
        "top": top,
        "other": int(freq.sum() - sum(t["count"] for t in top)),
    }
