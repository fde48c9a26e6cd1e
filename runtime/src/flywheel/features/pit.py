"""Point-in-time correct lookups, vectorised.

Feature rows are kept sorted by entity and then time (stable, so among rows with the
same time the one written last is the latest). For each label row (entity, time) the
join takes the latest feature row with feature time <= label time and label time -
feature time <= ttl; a feature from after the label time is never used.

The search is a binary search run for all label rows at once, each inside its entity's
segment of the sorted feature rows: about log2(rows per entity) numpy passes, no Python
loop over rows.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fractions
import itertools
import os
import re
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Int64s = npt.NDArray[np.int64]
TIME_UNIT = "us"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_MICROS = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}


def duration_micros(text: str) -> int:
    """A duration as whole microseconds, parsed exactly (no float on the way); digits
    finer than a microsecond are dropped. A day is 24 hours.

    >>> duration_micros("0.7d"), duration_micros("1h30m"), duration_micros("1.5ms")
    (60480000000, 5400000000, 1500)
    """
    total = sum(fractions.Fraction(n) * _UNIT_MICROS[u] for n, u in _DURATION_PART.findall(text))
    return int(total)


class LabelError(ValueError):
    """Label rows that cannot be joined; says which columns are missing."""


@dataclasses.dataclass(frozen=True)
class Segments:
    """Where each entity's rows are in a table sorted by entity then time."""

    keys: Any  # pa.Array of the distinct entity keys, in table order
    starts: Int64s  # first row of each entity
    ends: Int64s  # one past the last row
    times: Int64s  # every row's time in microseconds since the epoch

    def codes_of(self, entity_keys: Any) -> Int64s:
        """Index into `keys` of each entity key, -1 where unknown."""
        found = pc.index_in(entity_keys, value_set=self.keys)
        return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def entity_key_array(table: Any, keys: list[str], types: list[Any] | None = None) -> Any:
    """One Arrow array identifying the entity of each row; null where a key is null.

    One key column is used as it is. Composite keys become one string of length-prefixed
    parts ("<bytes>:<text>" per part), an encoding in which no two key tuples can meet,
    whatever characters they hold. `types` casts the key columns first (the types of the
    table being joined against), so a label's keys compare with the features' keys.
    """
    columns = [_combined(table.column(k)) for k in keys]
    if types is not None:
        columns = [c if c.type == t else pc.cast(c, t) for c, t in zip(columns, types, strict=True)]
    if len(columns) == 1:
        return columns[0]
    parts = []
    for column in columns:
        text = pc.cast(column, pa.string())
        parts.append(
            pc.binary_join_element_wise(pc.cast(pc.binary_length(text), pa.string()), text, ":")
        )
    return _combined(pc.binary_join_element_wise(*parts, ""))


def _combined(column: Any) -> Any:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def micros(column: Any) -> Int64s:
    """Timestamps as int64 microseconds (nulls become the smallest int64)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.type.unit != TIME_UNIT:
        column = pc.cast(column, pa.timestamp(TIME_UNIT, tz=column.type.tz))
    as_int = column.view(pa.int64())
    if as_int.null_count:
        as_int = pc.fill_null(as_int, np.iinfo(np.int64).min)
    return np.asarray(as_int.to_numpy(zero_copy_only=False), dtype=np.int64)


def sort_by_entity_and_time(table: Any, keys: list[str], time_column: str) -> Any:
    """The table sorted by entity keys then time; stable, so input order breaks ties."""
    order = pc.sort_indices(
        table, sort_keys=[*((k, "ascending") for k in keys), (time_column, "ascending")]
    )
    return table.take(order)


def segments(sorted_table: Any, keys: list[str], time_column: str) -> Segments:
    key = entity_key_array(sorted_table, keys)
    n = len(key)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Segments(key, empty, empty, empty)
    if pa.types.is_integer(key.type) and key.null_count == 0:
        values = key.to_numpy()
        changed = values[1:] != values[:-1]
    else:
        changed = pc.not_equal(key.slice(1), key.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    boundaries = np.flatnonzero(changed) + 1
    starts = np.concatenate([[0], boundaries]).astype(np.int64)
    ends = np.concatenate([boundaries, [n]]).astype(np.int64)
    return Segments(key.take(pa.array(starts)), starts, ends, micros(sorted_table[time_column]))


def upper_bound_in_segments(
    times: Int64s, lo: Int64s, hi: Int64s, value: Int64s, inclusive: bool = True
) -> Int64s:
    """Per query q: the first index i in [lo[q], hi[q]) with times[i] > value[q]
    (>= when not inclusive), or hi[q]. `times` is sorted within each segment.

    A branchless binary search, all queries at once: each pass halves every query's
    range with one gather, one comparison and one select.
    """
    base = lo.copy()
    n = hi - lo
    if len(times) == 0 or len(base) == 0:
        return base
    # Preallocated buffers and in-place ufuncs: each pass allocates nothing.
    half = np.empty_like(n)
    probe_at = np.empty_like(n)
    probe = np.empty_like(value)
    below = np.empty(len(n), dtype=bool)
    compare = np.less_equal if inclusive else np.less
    while True:
        np.right_shift(n, 1, out=half)
        if not half.any():
            break
        np.add(base, half, out=probe_at)
        np.take(times, probe_at, out=probe)
        compare(probe, value, out=below)
        np.copyto(base, probe_at, where=below)
        np.subtract(n, half, out=n)
    np.minimum(base, len(times) - 1, out=probe_at)
    np.take(times, probe_at, out=probe)
    compare(probe, value, out=below)
    below &= n > 0
    return base + below


def asof_rows(features: Segments, label_keys: Any, label_times: Int64s, ttl_micros: int) -> Int64s:
    """Row of the feature table to use for each label row, or -1 for none."""
    codes = features.codes_of(label_keys)
    known = codes >= 0
    safe = np.where(known, codes, 0)
    lo = np.where(known, features.starts[safe] if len(features.starts) else 0, 0)
    hi = np.where(known, features.ends[safe] if len(features.ends) else 0, 0)
    bound = upper_bound_in_segments(features.times, lo, hi, label_times)
    row = bound - 1
    found = known & (bound > lo) & (label_times != np.iinfo(np.int64).min)
    age = label_times - features.times[np.where(found, row, 0)] if len(features.times) else 0
    found &= age <= ttl_micros
    return np.where(found, row, -1)


def point_in_time_join(
    labels: Any,
    features: Any,
    keys: list[str],
    label_time: str,
    feature_time: str,
    ttl_micros: int,
    feature_columns: list[str],
    feature_segments: Segments | None = None,
    label_keys: list[str] | None = None,
) -> Any:
    """`labels` with the point-in-time correct value of each feature column appended.

    `features` must be sorted by entity then time (`sort_by_entity_and_time`); pass its
    `segments` when joining the same features repeatedly. `label_keys` names the labels'
    entity columns when they differ from the features' `keys` (same order).
    """
    seg = feature_segments or segments(features, keys, feature_time)
    rows = label_rows(labels, features, keys, label_time, ttl_micros, seg, label_keys)
    gather = Gather(rows.rows)
    columns = parallel(rows.workers, lambda n: gather(features.column(n)), feature_columns)
    out = labels
    for name, column in zip(feature_columns, columns, strict=True):
        out = out.append_column(name, column)
    return out


@dataclasses.dataclass(frozen=True)
class LabelRows:
    """For each label: its time, and the feature row as of it (-1 for none)."""

    times: Int64s
    rows: Int64s
    workers: int


def label_rows(
    labels: Any,
    features: Any,
    keys: list[str],
    label_time: str,
    ttl_micros: int,
    seg: Segments,
    label_keys: list[str] | None = None,
) -> LabelRows:
    names = label_keys or keys
    absent = [k for k in [*names, label_time] if k not in labels.column_names]
    if absent:
        raise LabelError(
            f"the labels have no column(s) {', '.join(absent)} (they have "
            f"{', '.join(labels.column_names)}); name the label entity columns in join-key "
            f"order ({', '.join(keys)}) and the label time column"
        )
    types = [features.schema.field(k).type for k in keys]
    label_entities = entity_key_array(labels, names, types)
    times = micros(labels[label_time])
    workers = _workers(len(times))
    if workers == 1:
        return LabelRows(times, asof_rows(seg, label_entities, times, ttl_micros), 1)
    # numpy and Arrow release the GIL: label slices go to threads.
    bounds = np.linspace(0, len(times), workers + 1).astype(np.int64)
    slices = list(itertools.pairwise(bounds.tolist()))
    parts = parallel(
        workers,
        lambda s: asof_rows(
            seg, label_entities.slice(s[0], s[1] - s[0]), times[s[0] : s[1]], ttl_micros
        ),
        slices,
    )
    return LabelRows(times, np.concatenate(parts), workers)


def parallel(workers: int, fn: Any, items: list[Any]) -> list[Any]:
    if workers == 1 or len(items) < 2:
        return [fn(i) for i in items]
    with concurrent.futures.ThreadPoolExecutor(min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


PARALLEL_MIN_LABELS = 100_000


def _workers(labels: int) -> int:
    return 1 if labels < PARALLEL_MIN_LABELS else max(1, min(8, os.cpu_count() or 1))


class Gather:
    """column[rows] for many columns, null where rows is -1.

    Numbers without nulls are gathered by numpy (several times faster than Arrow's
    general take) and share one validity bitmap, computed once. A column in several
    chunks (one per Parquet row group) is gathered chunk by chunk, in place: joining
    the chunks first would copy every row of it to keep a few.
    """

    def __init__(self, rows: Int64s) -> None:
        self.rows = rows
        missing = rows < 0
        self.null_count = int(missing.sum())
        self.safe_rows = np.where(missing, 0, rows) if self.null_count else rows
        self.validity = pa.array(~missing).buffers()[1] if self.null_count else None
        self.indices = pa.array(rows, mask=missing if self.null_count else None)
        self._by_chunk: dict[tuple[int, ...], list[tuple[Int64s, Int64s]]] = {}
        self._lock = threading.Lock()

    def __call__(self, column: Any) -> Any:
        n = len(self.rows)
        if len(column) == 0:
            return pa.nulls(n, column.type)
        fixed = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if not fixed or column.null_count:
            return _combined(column).take(self.indices)
        chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
        if len(chunks) == 1:
            values = np.ascontiguousarray(np.take(chunks[0].to_numpy(), self.safe_rows))
        else:
            values = np.empty(n, dtype=column.type.to_pandas_dtype())
            for chunk, (where, local) in zip(chunks, self._split(chunks), strict=True):
                if len(where):
                    values[where] = np.take(chunk.to_numpy(), local)
        buffers = [self.validity, pa.py_buffer(values)]
        return pa.Array.from_buffers(column.type, n, buffers, null_count=self.null_count)

    def _split(self, chunks: list[Any]) -> list[tuple[Int64s, Int64s]]:
        """Per chunk: the output positions its rows go to, and those rows in the chunk.
        Computed once per chunk layout; the columns of one table share theirs."""
        lengths = tuple(len(c) for c in chunks)
        with self._lock:
            if lengths not in self._by_chunk:
                starts = np.cumsum((0, *lengths), dtype=np.int64)
                chunk_of = np.searchsorted(starts, self.safe_rows, side="right") - 1
                order = np.argsort(chunk_of, kind="stable")
                bounds = np.searchsorted(chunk_of[order], np.arange(len(lengths) + 1))
                self._by_chunk[lengths] = [
                    (where, self.safe_rows[where] - starts[k])
                    for k, where in enumerate(np.split(order, bounds[1:-1]))
                ]
            return self._by_chunk[lengths]
