"""Window tiles: partial aggregates per event time, written online, combined on read.

When an entity's document is written, each window aggregation is stored as one tile per
event time inside the window as of the entity's latest row, holding the partial
aggregate of that time's rows:

    count       [t, present values]
    sum         [t, exact integer sum | float64 sum of the time's values in input order]
    mean        [t, sum as above, count]
    min, max    [t, min | max]
    last        [t, the last present value]

Tiles without a present value are not stored. A read at T combines the tiles with
T - window < t <= T in time order, by the same rules as `flywheel.features.windows`, so
it gives exactly what a training label at T gets, bit for bit, as the window empties.
Tiles from before the latest row's window are dropped: no read at or after the latest
row can need them. One tile per event time is the coarsest grid that keeps that
exactness: a window's edge (T - window) can fall between any two event times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from flywheel.api.featureview import AggregationFunction, FeatureViewSpec
from flywheel.features import pit, transform, windows

F = AggregationFunction
# join-key values, event time of the latest row, its column values, window tiles
Document = tuple[tuple[Any, ...], int, dict[str, Any], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Window:
    name: str
    function: str
    micros: int


def of_spec(spec: FeatureViewSpec) -> list[Window]:
    return [
        Window(f.name, f.aggregation.function, pit.duration_micros(f.aggregation.window))
        for f in spec.features
        if f.aggregation is not None
    ]


def combine(window: Window, integer: bool, parts: Sequence[Sequence[Any]], now: int) -> Any:
    """The window's value at `now` from its stored tiles (sorted by time)."""
    since = now - window.micros
    inside = [p for p in parts if since < p[0] <= now]
    function = window.function
    if function == F.COUNT:
        return sum(p[1] for p in inside)
    if function == F.LAST:
        return inside[-1][1] if inside else None
    if function in (F.MIN, F.MAX):
        if not inside:
            return None
        pick = min if function == F.MIN else max
        return pick(p[1] for p in inside)
    if integer:
        total: Any = sum(p[1] for p in inside)
        if function == F.SUM and not windows.INT64_MIN <= total <= windows.INT64_MAX:
            raise windows.WindowOverflow(f"the sum of {window.name} is outside int64")
    else:
        total = 0.0
        for p in inside:  # in time order, as training adds them
            total += p[1]
    if function == F.SUM:
        return total
    count = sum(p[2] for p in inside)
    return (float(total) / count) if count else None


def documents(
    spec: FeatureViewSpec, features: Any, until: int, since: int | None
) -> list[Document]:
    """Online documents, as of `until`, of the entities with a row in (since, until] (every
    entity with a row at or before `until` when `since` is None)."""
    times = pit.micros(features.column(spec.timestamp_column))
    upto = features.filter(pa.array(times <= until)) if len(times) else features
    keys = spec.join_keys
    seg = pit.segments(upto, keys, spec.timestamp_column)
    if len(seg.starts) == 0:
        return []
    latest = seg.times[seg.ends - 1]
    chosen = np.flatnonzero(latest > since) if since is not None else np.arange(len(latest))
    if chosen.size == 0:
        return []
    last_rows = seg.ends[chosen] - 1
    picked = upto.take(pa.array(last_rows))
    key_values = [picked.column(k).to_pylist() for k in keys]
    entity_keys = list(zip(*key_values, strict=True))
    plain = [f.name for f in spec.features if f.aggregation is None]
    values = picked.select(plain).to_pylist()
    stored = [dict[str, Any]() for _ in chosen]
    rows = windows.Rows(seg)
    for feature in spec.features:
        if feature.aggregation is None:
            continue
        column = upto.column(transform.INPUT_PREFIX + feature.aggregation.column)
        window = pit.duration_micros(feature.aggregation.window)
        per_entity = _tiles(rows, column, feature.aggregation.function, chosen, latest, window)
        integer = pa.types.is_integer(column.type)
        for doc, parts in zip(stored, per_entity, strict=True):
            doc[feature.name] = [integer, parts]
    return list(zip(entity_keys, latest[chosen].tolist(), values, stored, strict=True))


def _tiles(
    rows: windows.Rows, column: Any, function: str, chosen: Any, latest: Any, window: int
) -> list[list[list[Any]]]:
    """Per chosen entity: its tiles inside the window ending at its latest row."""
    seg = rows.seg
    lo, hi = rows.ranges(seg.starts[chosen], seg.ends[chosen], latest[chosen], window)
    group_of, group_start = rows.time_groups
    group_end = np.append(group_start[1:], len(rows.times)).astype(np.int64)
    first = np.where(hi > lo, group_of[np.minimum(lo, len(group_of) - 1)], 0)
    count = np.where(hi > lo, group_of[np.maximum(hi - 1, 0)] + 1 - first, 0)
    offsets = np.repeat(np.cumsum(count) - count, count)
    groups = np.arange(int(count.sum()), dtype=np.int64) - offsets + np.repeat(first, count)
    starts, ends = group_start[groups], group_end[groups]
    present = windows.evaluate(column, F.COUNT, starts, ends).to_numpy()
    if function in (F.SUM, F.MEAN) and pa.types.is_integer(column.type):
        partial: list[Any] = windows.exact_int_sums(column, starts, ends)
    else:
        plain = F.SUM if function == F.MEAN else function
        partial = windows.evaluate(column, plain, starts, ends).to_pylist()
    tile_times = rows.times[starts].tolist()
    counts = present.tolist()
    out: list[list[list[Any]]] = []
    at = 0
    for n in count.tolist():
        parts = []
        for i in range(at, at + n):
            if counts[i]:
                tile = [tile_times[i], partial[i]]
                if function == F.MEAN:
                    tile.append(counts[i])
                parts.append(tile)
        out.append(parts)
        at += n
    return out
