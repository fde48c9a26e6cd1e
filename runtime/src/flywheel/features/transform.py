"""Source rows -> feature rows: the one transformation that serves training and serving.

The output has the entity join keys, the timestamp column and one column per feature,
sorted by entity then time (input order among equal times). Each row holds the features
as of that row's time: columns are copied, expressions are evaluated on the row, and
windowed aggregations cover the entity's rows in (time - window, time], every row at
that time included (`flywheel.features.windows` states the rules).

The inputs of the aggregations are kept too, as `input.<column>` (a name no feature can
have): training sets and the online store evaluate windows at other times from them.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flywheel.api.featureview import Aggregation, FeatureViewSpec
from flywheel.features import pit, windows
from flywheel.features.expressions import compile_expression

INPUT_PREFIX = "input."


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
    ranges = windows.Rows(segments) if segments is not None else None
    for feature in spec.features:
        if feature.column is not None:
            columns[feature.name] = rows.column(feature.column)
        elif feature.expression is not None:
            try:
                columns[feature.name] = compile_expression(feature.expression)(rows)
            except (pa.ArrowException, KeyError) as exc:
                raise FeatureError(f"feature {feature.name!r}: {exc}") from None
        else:
            assert feature.aggregation is not None and ranges is not None
            agg = feature.aggregation
            lo, hi = ranges.at_rows(pit.duration_micros(agg.window))
            columns[feature.name] = aggregate(
                feature.name, rows.column(agg.column), agg, lo, hi, ranges
            )
    for column in aggregation_inputs(spec):
        columns[INPUT_PREFIX + column] = rows.column(column)
    return pa.table(columns)


def aggregation_inputs(spec: FeatureViewSpec) -> list[str]:
    """The source columns that window aggregations read, in first-use order."""
    names = [f.aggregation.column for f in spec.features if f.aggregation is not None]
    return list(dict.fromkeys(names))


def aggregate(
    name: str,
    column: Any,
    agg: Aggregation,
    lo: Any,
    hi: Any,
    rows: windows.Rows | None = None,
    known: Any = None,
) -> Any:
    """`windows.evaluate`, with errors that name the feature."""
    try:
        return windows.evaluate(column, agg.function, lo, hi, rows, known)
    except TypeError as exc:
        raise FeatureError(f"feature {name!r}: {exc}; {agg.column} is {column.type}") from None
    except windows.WindowOverflow as exc:
        raise FeatureError(f"feature {name!r} ({agg.function} of {agg.column}): {exc}") from None


def _has_aggregations(spec: FeatureViewSpec) -> bool:
    return any(f.aggregation is not None for f in spec.features)
