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
# Values binned per block of this many: the temporaries of a block stay in the cache.
HISTOGRAM_BLOCK = 1 << 16


def profile_table(table: Any) -> dict[str, Any]:
    return {
        "rows": table.num_rows,
        "columns": {name: profile_column(table.column(name)) for name in table.column_names},
    }


def profile_column(column: Any, value_counts: Any = None) -> dict[str, Any]:
    """`value_counts`, if given, is `pc.value_counts(column)` computed along the way."""
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
        return base | categorical_profile(column, value_counts)
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
    # Arrow kernels for the moments; numpy for the histogram, whose bins then narrow the
    # exact quantiles down to the few bins that hold them. Integers of a narrow range are
    # counted value by value instead: the same quantiles and bins from one pass.
    values = column.drop_null()
    nan = 0
    if pa.types.is_floating(values.type):
        nan = int(pc.sum(pc.is_nan(values)).as_py() or 0)
        finite_mask = pc.is_finite(values)
        if pc.sum(finite_mask).as_py() != len(values):
            values = values.filter(finite_mask)
    out: dict[str, Any] = {"nan": nan}
    if len(values) == 0:
        return out
    bounds = pc.min_max(values)
    # int64 beyond 2**53 is not a float64: min and max stay exact integers.
    exact = (bounds["min"].as_py(), bounds["max"].as_py())
    low, high = float(exact[0]), float(exact[1])
    as_float = (
        values if pa.types.is_float64(values.type) else pc.cast(values, pa.float64(), safe=False)
    )
    edges = histogram_edges(low, high)
    narrow = exact[1] - exact[0] < len(values) // 2 and exact[1] < 2**63  # fits an int64
    if pa.types.is_integer(values.type) and narrow:
        quantiles, counts = _counted(values, exact[0], exact[1], edges)
    else:
        array = as_float.combine_chunks() if isinstance(as_float, pa.ChunkedArray) else as_float
        floats = array.to_numpy()
        bins = histogram_bins(floats, edges)
        counts = np.bincount(bins, minlength=len(edges) - 1)
        quantiles = binned_quantiles(floats, bins, counts)
    return out | {
        "min": exact[0],
        "max": exact[1],
        "mean": float(pc.mean(as_float).as_py()),
        "std": float(pc.stddev(as_float, ddof=0).as_py()),
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


def histogram_bins(values: Any, edges: Any) -> Any:
    """The bin of each value: bins are [edge, next edge), the last one closed, as numpy's
    histogram; values outside the edges go to the nearest bin.

    >>> histogram_bins(np.array([0.0, 0.5, 1.0, 2.0]), np.array([0.0, 1.0, 2.0])).tolist()
    [0, 0, 1, 1]
    """
    last = len(edges) - 2
    low, high = float(edges[0]), float(edges[-1])
    if last < 1 or not np.isfinite(high - low) or len(values) < 1024:
        return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, last)
    if len(values) > HISTOGRAM_BLOCK:
        bins = np.empty(len(values), dtype=np.int64)
        for start in range(0, len(values), HISTOGRAM_BLOCK):
            end = start + HISTOGRAM_BLOCK
            bins[start:end] = _arithmetic_bins(values[start:end], edges, low, high, last)
        return bins
    return _arithmetic_bins(values, edges, low, high, last)


def _arithmetic_bins(values: Any, edges: Any, low: float, high: float, last: int) -> Any:
    # Equal-width bins: a value's bin by arithmetic, each checked against its edges (a
    # binary search per value costs several times more); the few rounding put in a
    # neighbouring bin are searched.
    with np.errstate(invalid="ignore"):
        guess = np.floor((values - low) * ((last + 1) / (high - low)))
    bins = np.clip(np.nan_to_num(guess), 0, last).astype(np.int64)
    wrong = ((edges[bins] > values) & (bins > 0)) | ((bins < last) & (edges[bins + 1] <= values))
    if wrong.any():
        found = np.searchsorted(edges, values[wrong], side="right") - 1
        bins[wrong] = np.clip(found, 0, last)
    return bins


def binned_quantiles(values: Any, bins: Any, counts: Any) -> list[float]:
    """The QUANTILES of `values` (float64, no NaN) exactly as Arrow's linear
    interpolation computes them, found among the values of the few bins that hold the
    ranks asked for: bins are ordered ranges of values, so the value of rank r is the
    (r - values in earlier bins)-th smallest of its bin. No sort of the whole column."""
    n = len(values)
    ends = np.cumsum(counts)
    wanted: list[tuple[int, int, float]] = []  # (lower rank, higher rank, fraction)
    for q in QUANTILES:
        index = (n - 1) * q
        lower = int(index)
        fraction = index - lower
        wanted.append((lower, lower + 1 if fraction != 0 else lower, fraction))
    ranks = sorted({r for lower, higher, _ in wanted for r in (lower, higher)})
    bin_of = {r: int(np.searchsorted(ends, r, side="right")) for r in ranks}
    held = sorted(set(bin_of.values()))
    keep = np.zeros(len(counts), dtype=bool)
    keep[held] = True
    subset = values[keep[bins]]  # in value order: the held bins, one after the other
    offset, before = {}, 0
    for b in held:
        offset[b] = before - (int(ends[b]) - int(counts[b]))  # rank -> position in subset
        before += int(counts[b])
    positions = [r + offset[bin_of[r]] for r in ranks]
    selected = np.partition(subset, positions)
    value_at = {r: float(selected[p]) for r, p in zip(ranks, positions, strict=True)}
    return [
        value_at[lower]
        if fraction == 0
        else fraction * value_at[higher] + (1 - fraction) * value_at[lower]
        for lower, higher, fraction in wanted
    ]


def _counted(values: Any, low: int, high: int, edges: Any) -> tuple[list[float], Any]:
    """Quantiles (linear interpolation, as Arrow's) and histogram counts of integers
    between low and high, from the count of each value."""
    # Counted chunk by chunk, block by block: no copy of the column, and temporaries
    # that stay in the cache.
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    per_value = np.zeros(high - low + 1, dtype=np.int64)
    step = max(HISTOGRAM_BLOCK, 4 * len(per_value))  # a wide range: fewer, larger blocks
    for chunk in chunks:
        ints = chunk.cast(pa.int64()).to_numpy()
        for start in range(0, len(ints), step):
            block = ints[start : start + step] - np.int64(low)
            per_value += np.bincount(block, minlength=len(per_value))
    ranks = np.cumsum(per_value)
    n = int(ranks[-1])

    def at(rank: int) -> float:  # the value at this 0-based position in sorted order
        return float(np.int64(low) + np.searchsorted(ranks, rank, side="right"))

    quantiles = []
    for q in QUANTILES:
        index = q * (n - 1)
        below = int(np.floor(index))
        fraction = index - below
        lower, higher = at(below), at(min(below + 1, n - 1))
        quantiles.append(fraction * higher + (1 - fraction) * lower)
    value_of = (np.arange(high - low + 1, dtype=np.int64) + np.int64(low)).astype(np.float64)
    bins = histogram_bins(value_of, edges)
    counts = np.bincount(bins, weights=per_value, minlength=len(edges) - 1).astype(np.int64)
    return quantiles, counts


def histogram_edges(low: float, high: float) -> Any:
    """HISTOGRAM_BINS + 1 equal-width edges from low to high; where float64 cannot hold
    that many distinct values in between (a narrow range of large numbers), the distinct
    ones (one bin when low == high)."""
    if low == high:
        return np.array([low, high])
    if np.isfinite(high / 2 - low / 2) and not np.isfinite(high - low):
        # A range wider than float64 (e.g. -1e308 to 1e308): step over it in halves.
        edges = np.linspace(low / 2, high / 2, HISTOGRAM_BINS + 1) * 2
    else:
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    distinct = np.unique(edges)
    return distinct if len(distinct) > 1 else np.array([low, high])


def categorical_profile(column: Any, value_counts: Any = None) -> dict[str, Any]:
    present_count = len(column) - column.null_count
    if present_count > 2 * IDENTIFIER_SAMPLE:
        # Sampled before nulls are dropped: dropping them copies every value.
        step = len(column) // (2 * IDENTIFIER_SAMPLE)
        sample = column.take(pa.array(np.arange(0, len(column), step))).drop_null()
        sample = sample.slice(0, IDENTIFIER_SAMPLE)
        ratio = len(pc.unique(sample)) / len(sample) if len(sample) else 0.0
        if ratio > IDENTIFIER_DISTINCT_RATIO:
            return {"identifierLike": True, "sampleDistinctRatio": round(ratio, 4)}
    counts = pc.value_counts(column) if value_counts is None else value_counts
    if column.null_count:
        counts = counts.filter(pc.is_valid(counts.field("values")))
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


class CodeCounts:
    """The value counts of a column, gathered batch by batch from codes: each row's
    index into a list of `values` (null: none of them), which a check computed anyway.
    `result` is `pc.value_counts` of the whole column, values in the order they first
    appear, without hashing a value again; None if a value outside the list appeared."""

    def __init__(self, values: Any) -> None:
        self.values = values
        self.counts: dict[int, int] = {}
        self.complete = True

    def add(self, codes: Any, column: Any) -> None:
        if codes.null_count != column.null_count:  # a value that has no code
            self.complete = False
        if not self.complete:
            return
        tally = pc.value_counts(codes)
        found = tally.field("values").to_pylist()
        for code, count in zip(found, tally.field("counts").to_pylist(), strict=True):
            if code is not None:
                self.counts[code] = self.counts.get(code, 0) + count

    def result(self) -> Any:
        if not self.complete:
            return None
        values = self.values.take(pa.array(list(self.counts), pa.int32()))
        counts = pa.array(list(self.counts.values()), pa.int64())
        return pa.StructArray.from_arrays([values, counts], names=["values", "counts"])
