"""Window aggregations over (t - window, t], exact, evaluated at any times at once.

Rows are sorted by entity then time, input order among equal times. The window of an
entity at time t is a range of its rows [lo, hi): hi is the first row after t, so every
row at t is inside (ties all count), and lo is the first row after t - window. A result
depends only on the values inside its window:

    null, NaN   missing: every function skips them
    count       the number of present values; 0 for an empty window
    sum         0 for an empty window. Integers add exactly; a sum outside int64 is an
                error (`WindowOverflow`), never a wrapped value. Floats add in float64 in
                time order: the values of one time first (input order), then the times,
                so +inf and -inf in one window give NaN, as IEEE 754 does
    mean        sum / count; null for an empty window. Integers: the exact sum, rounded
                once to float64, divided by the count
    min, max    null for an empty window; integers stay exact in their type
    last        the latest present value (the last written among equal times)

Integer sums are differences of prefix sums of the 32-bit halves of each value: exact,
no value outside the window survives the subtraction, and an overflow is detected.
Float sums add each window's values one pass per row of the longest window (vectorised
across windows): a running total would cancel a small value against a large one from
outside the window. Min and max use a sparse table of the rows. Windows that cover
fewer rows than the table (a training set's label-time windows) read only their own
rows, gathered end to end, rather than every row of the table.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.api.featureview import AggregationFunction
from flywheel.features import pit

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
INT64_MIN = np.iinfo(np.int64).min
INT64_MAX = np.iinfo(np.int64).max
_LOW = np.int64(0xFFFFFFFF)
NUMERIC = (
    AggregationFunction.SUM,
    AggregationFunction.MEAN,
    AggregationFunction.MIN,
    AggregationFunction.MAX,
)


class WindowOverflow(ArithmeticError):
    """An integer window sum outside int64."""


class Rows:
    """An entity-then-time sorted table's row times and entities, for window ranges."""

    def __init__(self, seg: pit.Segments) -> None:
        self.seg = seg
        self.times = seg.times
        # By the identity of the window arrays, which the entries keep alive.
        self._gathered: dict[tuple[int, int], tuple[Int64s, Int64s, Gathered]] = {}

    def gathered(self, lo: Int64s, hi: Int64s) -> Gathered:
        """The rows of windows [lo, hi), laid end to end; the features aggregated over
        the same windows (the same arrays) share one."""
        key = (id(lo), id(hi))
        if key not in self._gathered:
            self._gathered[key] = (lo, hi, Gathered(lo, hi, self))
        return self._gathered[key][2]

    @functools.cached_property
    def entity_start(self) -> Int64s:
        """The first row of each row's entity."""
        return np.repeat(self.seg.starts, self.seg.ends - self.seg.starts)

    @functools.cached_property
    def entity_end(self) -> Int64s:
        return np.repeat(self.seg.ends, self.seg.ends - self.seg.starts)

    @functools.cached_property
    def time_groups(self) -> tuple[Int64s, Int64s]:
        """(group of each row, first row of each group): runs of one entity and one time."""
        n = len(self.times)
        new = np.ones(n, dtype=bool)
        if n:
            new[1:] = self.times[1:] != self.times[:-1]
            new[self.seg.starts] = True
        return np.cumsum(new, dtype=np.int64) - 1, np.flatnonzero(new).astype(np.int64)

    def at_rows(self, window: int) -> tuple[Int64s, Int64s]:
        """Each row's window at its own time (later rows of the same time included)."""
        return self.ranges(self.entity_start, self.entity_end, self.times, window)

    def ranges(self, lo: Int64s, hi: Int64s, at: Int64s, window: int) -> tuple[Int64s, Int64s]:
        """[lo, hi) of the window ending at `at`, searched inside rows [lo, hi)."""
        end = pit.upper_bound_in_segments(self.times, lo, hi, at)
        since = np.maximum(at, INT64_MIN + window) - window
        return pit.upper_bound_in_segments(self.times, lo, end, since), end


def evaluate(
    column: Any,
    function: str,
    lo: Int64s,
    hi: Int64s,
    rows: Rows | None = None,
    known: Bools | None = None,
) -> Any:
    """The aggregate of column[lo:hi] for each window, as an Arrow array.

    `rows` gives the time groups float sums add in; without it each range is one time
    (the partial aggregate of one tile). Windows where `known` is False are null.
    """
    check_fits_int64(column)  # any value of the column, as when every row is read
    if int(np.maximum(hi - lo, 0).sum()) < len(column):
        # The windows cover fewer rows than the table (label-time windows of a few rows
        # each): read only their rows, laid end to end, instead of every row.
        gathered = rows.gathered(lo, hi) if rows is not None else Gathered(lo, hi, None)
        column, lo, hi, rows = gathered.take(column), gathered.lo, gathered.hi, gathered.rows
    hi_safe = np.maximum(hi, lo)
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = Values.of(column, function)
    count = values.count(lo, hi_safe)
    unknown = np.zeros(len(lo), dtype=bool) if known is None else ~known
    if function == AggregationFunction.COUNT:
        return pa.array(np.where(unknown, 0, count), mask=unknown)
    if function == AggregationFunction.LAST:
        last = values.last_present[np.maximum(hi_safe - 1, 0)] if len(column) else lo
        hit = (hi_safe > lo) & (last >= lo) & ~unknown
        return column.take(pa.array(np.where(hit, last, 0), mask=~hit))
    if function in (AggregationFunction.SUM, AggregationFunction.MEAN):
        if values.integer:
            check = function == AggregationFunction.SUM
            high, low = values.int_halves(lo, hi_safe, unknown if check else None)
            if function == AggregationFunction.SUM:
                return pa.array(np.where(unknown, 0, (high << 32) | low), mask=unknown)
            total = high.astype(np.float64) * 4294967296.0 + low.astype(np.float64)
        else:
            total = values.float_sum(lo, hi_safe, rows)
            if function == AggregationFunction.SUM:
                return pa.array(np.where(unknown, 0.0, total), mask=unknown)
        empty = (count == 0) | unknown
        with np.errstate(over="ignore", invalid="ignore"):
            return pa.array(total / np.maximum(count, 1), mask=empty)
    extreme = values.extreme(lo, hi_safe, function)
    empty = (count == 0) | unknown
    out = pa.array(np.where(empty, 0, extreme), mask=empty)
    return out if out.type == column.type else pc.cast(out, column.type)


def check_fits_int64(column: Any) -> None:
    """Integer windows add in int64: a uint64 column must not hold larger values."""
    if not pa.types.is_uint64(column.type) or not len(column):
        return
    if (pc.max(column).as_py() or 0) > INT64_MAX:
        raise WindowOverflow(f"values above {INT64_MAX} do not fit int64")


class Gathered:
    """The rows of many windows laid end to end, each window's rows in table order.

    Every window aggregation reads only the rows inside its windows, so it gives the
    same values over these rows as over the whole table; a window's time groups stay
    whole, since a window never splits the rows of one time. Built once per set of
    windows: the features aggregated over the same windows share it.
    """

    def __init__(self, lo: Int64s, hi: Int64s, rows: Rows | None) -> None:
        lengths = np.maximum(hi - lo, 0)
        self.hi = np.cumsum(lengths, dtype=np.int64)
        self.lo = self.hi - lengths
        total = int(self.hi[-1]) if len(self.hi) else 0
        # Row of the table for each gathered row: its window's lo plus its offset.
        self.index = np.arange(total, dtype=np.int64) + np.repeat(lo - self.lo, lengths)
        self.rows: Rows | None = None
        if rows is not None:
            opened = self.lo[lengths > 0]
            keys = pa.nulls(len(opened), pa.int64())
            ends = np.append(opened[1:], total).astype(np.int64)
            times = rows.times[self.index]
            self.rows = Rows(pit.Segments(keys, opened.astype(np.int64), ends, times))
        self._gather = pit.Gather(self.index)

    def take(self, column: Any) -> Any:
        return self._gather(column)


class Values:
    """A column's values ready for numpy: missing (null, NaN) rows hold 0."""

    def __init__(self, column: Any, present: Bools, numbers: Any, integer: bool) -> None:
        self.column = column
        self.present = present
        self.numbers = numbers
        self.integer = integer

    @classmethod
    def of(cls, column: Any, function: str) -> Values:
        valid = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
        kind = column.type
        if pa.types.is_integer(kind):
            check_fits_int64(column)
            numbers = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            return cls(column, valid, numbers, True)
        if pa.types.is_floating(kind):
            floats = pc.fill_null(column, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
            present = valid & ~np.isnan(floats)
            return cls(column, present, np.where(present, floats, 0.0), False)
        if function in NUMERIC:
            raise TypeError(f"{function} needs a numeric column, not {kind}")
        return cls(column, valid, None, False)

    @functools.cached_property
    def count_prefix(self) -> Int64s:
        return np.concatenate([[0], np.cumsum(self.present, dtype=np.int64)])

    def count(self, lo: Int64s, hi: Int64s) -> Int64s:
        counts: Int64s = self.count_prefix[hi] - self.count_prefix[lo]
        return counts

    @functools.cached_property
    def last_present(self) -> Int64s:
        index = np.where(self.present, np.arange(len(self.present), dtype=np.int64), -1)
        return np.maximum.accumulate(index) if len(index) else index

    def int_halves(self, lo: Int64s, hi: Int64s, unknown: Bools | None) -> tuple[Int64s, Int64s]:
        """The exact sum of each window as (high, low): sum = high * 2**32 + low, with
        0 <= low < 2**32. Each half's prefix sum fits int64 for under 2**31 rows. Sums
        outside int64 raise, except where `unknown` is None (no check)."""
        low_prefix = np.concatenate([[0], np.cumsum(self.numbers & _LOW)])
        high_prefix = np.concatenate([[0], np.cumsum(self.numbers >> 32)])
        low = low_prefix[hi] - low_prefix[lo]
        high = high_prefix[hi] - high_prefix[lo] + (low >> 32)
        low &= _LOW
        if unknown is None:
            return high, low
        over = ((high < -(2**31)) | (high >= 2**31)) & ~unknown
        if over.any():
            raise WindowOverflow(
                f"a sum of {int(over.sum())} window(s) is outside int64 (the first is rows "
                f"{int(lo[over][0])}..{int(hi[over][0]) - 1})"
            )
        return high, low

    def float_sum(self, lo: Int64s, hi: Int64s, rows: Rows | None) -> npt.NDArray[np.float64]:
        if rows is None:
            return sequential_sum(self.numbers, lo, hi)
        group_of, group_start = rows.time_groups
        group_end = np.append(group_start[1:], len(self.numbers)).astype(np.int64)
        partial = sequential_sum(self.numbers, group_start, group_end)
        n = len(self.numbers)
        first = group_of[np.minimum(lo, max(n - 1, 0))] if n else lo
        last = group_of[np.maximum(hi - 1, 0)] + 1 if n else hi
        return sequential_sum(partial, first, np.where(hi > lo, last, first))

    def extreme(self, lo: Int64s, hi: Int64s, function: str) -> npt.NDArray[Any]:
        if self.integer:
            fill: Any = INT64_MAX if function == AggregationFunction.MIN else INT64_MIN
        else:
            fill = np.inf if function == AggregationFunction.MIN else -np.inf
        values = np.where(self.present, self.numbers, fill)
        pick = np.minimum if function == AggregationFunction.MIN else np.maximum
        if len(values) and lo[0] == 0 and hi[-1] == len(values) and np.array_equal(lo[1:], hi[:-1]):
            # Windows laid end to end (gathered): one reduction per window, in one call.
            opened = hi > lo
            out = np.zeros(len(lo), dtype=values.dtype)
            out[opened] = pick.reduceat(values, lo[opened])
            return out
        return sparse_extreme(values, lo, hi, pick)


def exact_int_sums(column: Any, lo: Int64s, hi: Int64s) -> list[int]:
    """Exact sums of an integer column's ranges as Python ints (any size)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = Values.of(column, AggregationFunction.SUM)
    high, low = values.int_halves(lo, np.maximum(hi, lo), None)
    return [(h << 32) + x for h, x in zip(high.tolist(), low.tolist(), strict=True)]


def sequential_sum(values: npt.NDArray[Any], lo: Int64s, hi: Int64s) -> npt.NDArray[np.float64]:
    """values[lo] + values[lo + 1] + ... in order from 0.0, for every range at once:
    one vectorised pass per element of the longest range, over the ranges still open."""
    total = np.zeros(len(lo), dtype=np.float64)
    open_ = np.flatnonzero(hi > lo)
    at = lo[open_]
    end = hi[open_]
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are IEEE 754's
        while open_.size:
            total[open_] += values[at]
            at = at + 1
            more = at < end
            if not more.all():
                open_, at, end = open_[more], at[more], end[more]
    return total


def sparse_extreme(values: npt.NDArray[Any], lo: Int64s, hi: Int64s, pick: Any) -> npt.NDArray[Any]:
    """min or max of values[lo:hi] per range with a sparse table: log2(longest range)
    levels of pairwise picks, then two overlapping blocks inside each range."""
    length = hi - lo
    if len(values) == 0:
        return np.zeros(len(lo), dtype=values.dtype)
    levels = [values]
    width = 1
    while width * 2 <= int(length.max(initial=1)):
        prev = levels[-1]
        nxt = prev.copy()
        nxt[: len(prev) - width] = pick(prev[: len(prev) - width], prev[width:])
        levels.append(nxt)
        width *= 2
    level = np.zeros(len(length), dtype=np.int64)
    positive = length > 0
    level[positive] = np.floor(np.log2(length[positive])).astype(np.int64)
    table = np.stack(levels)
    start = np.minimum(lo, len(values) - 1)
    end = np.clip(hi - (np.int64(1) << level), 0, len(values) - 1)
    return pick(table[level, start], table[level, end])  # type: ignore[no-any-return]
