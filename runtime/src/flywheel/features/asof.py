"""Training sets: each label row gets the FeatureView's features as of the label's time.

For a label (entity, t) with a feature row no older than the ttl at or before t:

    column, expression   the value of the latest such row (the last written among rows
                         of equal time), as `pit.point_in_time_join` gives it
    window aggregation   evaluated over the window (t - window, t] of the entity's rows,
                         at the label's own time; a window that has emptied since the
                         entity's last row gives count 0, sum 0 and null otherwise

Without such a row, every feature is null. Nothing after t is ever used.

    training_set(labels, transform.feature_table(source, spec), spec, "label_time")
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flywheel.api.featureview import FeatureViewSpec
from flywheel.features import pit, transform, windows


def training_set(
    labels: Any,
    features: Any,
    spec: FeatureViewSpec,
    label_time: str,
    label_keys: list[str] | None = None,
) -> Any:
    """`labels` plus one column per feature. `features` is an offline table (sorted by
    entity then time, with the aggregation inputs); `label_keys` names the labels' entity
    columns when they differ from the join keys (in join-key order)."""
    keys = spec.join_keys
    seg = pit.segments(features, keys, spec.timestamp_column)
    ttl = pit.duration_micros(spec.ttl)
    found = pit.label_rows(labels, features, keys, label_time, ttl, seg, label_keys)
    plain = [f.name for f in spec.features if f.aggregation is None]
    gather = pit.Gather(found.rows)
    values = dict(
        zip(
            plain,
            pit.parallel(found.workers, lambda n: gather(features.column(n)), plain),
            strict=True,
        )
    )
    aggregated = [f for f in spec.features if f.aggregation is not None]
    if aggregated:
        rows = windows.Rows(seg)
        known = found.rows >= 0
        safe = np.where(known, found.rows, 0)
        # The first row of each found row's entity: searched among the entities' starts
        # rather than a start spelled out for every row of the table.
        if len(safe) and len(seg.starts):
            start = seg.starts[np.searchsorted(seg.starts, safe, side="right") - 1]
        else:
            start = safe
        end = np.where(known, found.rows + 1, start)
        by_window: dict[int, tuple[Any, Any]] = {}
        for feature in aggregated:
            agg = feature.aggregation
            assert agg is not None
            window = pit.duration_micros(agg.window)
            if window not in by_window:
                by_window[window] = rows.ranges(start, end, found.times, window)
            lo, hi = by_window[window]
            column = features.column(transform.INPUT_PREFIX + agg.column)
            values[feature.name] = transform.aggregate(
                feature.name, column, agg, lo, hi, rows, known
            )
    out = labels
    for feature in spec.features:
        out = out.append_column(feature.name, values[feature.name])
    return out
