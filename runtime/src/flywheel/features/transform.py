"""Source rows -> feature rows: the one transformation that serves training and serving.

The output has the entity join keys, the timestamp column and one column per feature,
sorted by entity then time. Each row holds the features as of that row's time:
columns are copied, expressions are evaluated on the row, and windowed aggregations
cover the entity's rows in the trailing window (time - window, time], up to and
including the row itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.api.common import duration_seconds
from flywheel.api.featureview import Aggregation, AggregationFunction, FeatureViewSpec
from flywheel.features import pit
from flywheel.features.expressions import compile_expression


class FeatureError(ValueError):
    """A feature that cannot be computed from the source; says which and why."""


def feature_table(source: Any, spec: FeatureViewSpec) -> Any:
    keys = spec.join_keys
    time = spec.timestamp_column
    needed = {*keys, time, *(c for f in spec.features for c in f.input_columns())}
    missing = sorted(needed - set(source.column_names))
    if missing:
        raise FeatureError(
            f"the source Dataset has no column(s) {', '.join(missing)}; it has "
            f"{', '.join(source.column_names)}"
        )
    valid = pc.is_valid(source.column(time))
    for k in keys:
        valid = pc.and_(valid, pc.is_valid(source.column(k)))
    if spec.materialization.start_time is not None:
        start = pa.scalar(spec.materialization.start_time, type=source.schema.field(time).type)
        valid = pc.and_(valid, pc.fill_null(pc.greater_equal(source.column(time), start), False))
    rows = source.select(sorted(needed, key=source.column_names.index)).filter(valid)
    rows = pit.sort_by_entity_and_time(rows, keys, time)
    columns: dict[str, Any] = {k: rows.column(k) for k in keys}
    columns[time] = rows.column(time)
    segments = pit.segments(rows, keys, time) if _has_aggregations(spec) else None
    for feature in spec.features:
        if feature.column is not None:
            columns[feature.name] = rows.column(feature.column)
        elif feature.expression is not None:
            try:
                columns[feature.name] = compile_expression(feature.expression)(rows)
            except (pa.ArrowException, KeyError) as exc:
                raise FeatureError(f"feature {feature.name!r}: {exc}") from None
        else:
            assert feature.aggregation is not None and segments is not None
            columns[feature.name] = windowed(rows, segments, feature.aggregation)
    return pa.table(columns)


def _has_aggregations(spec: FeatureViewSpec) -> bool:
    return any(f.aggregation is not None for f in spec.features)


def window_starts(segments: pit.Segments, window_seconds: float) -> npt.NDArray[np.int64]:
    """For each row, the first row of its entity whose time is inside (t - window, t]."""
    n = len(segments.times)
    entity_start = np.repeat(segments.starts, segments.ends - segments.starts)
    row = np.arange(n, dtype=np.int64)
    since = segments.times - int(window_seconds * 1_000_000)
    return pit.upper_bound_in_segments(segments.times, entity_start, row + 1, since)


def windowed(rows: Any, segments: pit.Segments, agg: Aggregation) -> Any:
    column = rows.column(agg.column)
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    start = window_starts(segments, duration_seconds(agg.window))
    end = np.arange(len(column), dtype=np.int64) + 1  # window is rows [start, end)
    valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
    if agg.function == AggregationFunction.LAST:
        last_valid = np.maximum.accumulate(np.where(valid, np.arange(len(column)), -1))
        hit = last_valid >= start
        return column.take(pa.array(np.where(hit, last_valid, 0), mask=~hit))
    if agg.function == AggregationFunction.COUNT:
        count = _window_sum(valid.astype(np.int64), start, end)
        return pa.array(count)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise FeatureError(f"{agg.function} needs a numeric column; {agg.column} is {column.type}")
    values = column.to_numpy(zero_copy_only=False).astype(np.float64)
    present = valid & ~np.isnan(values)
    values = np.where(present, values, 0.0)
    if agg.function == AggregationFunction.SUM and pa.types.is_integer(column.type):
        exact = column.to_numpy(zero_copy_only=False)
        ints = np.where(valid, np.nan_to_num(exact), 0).astype(np.int64)
        return pa.array(_window_sum(ints, start, end))
    if agg.function in (AggregationFunction.SUM, AggregationFunction.MEAN):
        total = _window_sum(values, start, end)
        if agg.function == AggregationFunction.SUM:
            return pa.array(total)
        count = _window_sum(present.astype(np.int64), start, end)
        return pa.array(total / np.maximum(count, 1), mask=count == 0)
    fill = np.inf if agg.function == AggregationFunction.MIN else -np.inf
    extreme = _window_extreme(np.where(present, values, fill), start, end, agg.function)
    out = _like(extreme, column.type)
    return pc.if_else(
        pa.array(np.isinf(extreme) & (extreme == fill)), pa.nulls(len(out), out.type), out
    )


def _like(values: npt.NDArray[np.float64], arrow_type: Any) -> Any:
    if pa.types.is_integer(arrow_type):
        return pa.array(np.rint(values).astype(np.int64))
    return pa.array(values)


def _window_sum(
    values: npt.NDArray[Any], start: npt.NDArray[np.int64], end: npt.NDArray[np.int64]
) -> npt.NDArray[Any]:
    """Sums over [start, end) as differences of one running total. Floats run in extended
    precision: the total grows over the whole table, and a window is a small difference."""
    exact = values.dtype.kind in "iub"
    running = np.cumsum(values if exact else values.astype(np.longdouble))
    cumulative = np.concatenate([np.zeros(1, dtype=running.dtype), running])
    window: npt.NDArray[Any] = cumulative[end] - cumulative[start]
    return window if exact else window.astype(np.float64)


def _window_extreme(
    values: npt.NDArray[np.float64],
    start: npt.NDArray[np.int64],
    end: npt.NDArray[np.int64],
    function: str,
) -> npt.NDArray[np.float64]:
    """Min or max over [start, end) per row with a sparse table: log2(longest window)
    levels, each a vectorised pairwise min/max, then two overlapping blocks per row."""
    pick = np.minimum if function == AggregationFunction.MIN else np.maximum
    length = end - start
    levels = [values]
    width = 1
    while width * 2 <= int(length.max(initial=1)):
        prev = levels[-1]
        nxt = prev.copy()
        nxt[: len(prev) - width] = pick(prev[: len(prev) - width], prev[width:])
        levels.append(nxt)
        width *= 2
    level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
    table = np.stack(levels)
    left = table[level, start]
    right = table[level, end - (1 << level)]
    return pick(left, right)  # type: ignore[no-any-return]
