"""Window aggregations at rows' and at labels' times against a brute-force reference
written from the rules, with extreme floats, inf, NaN, int64 limits and ties."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flywheel.api.featureview import FeatureViewSpec
from flywheel.features import asof, pit, transform, windows

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
FUNCTIONS = ["sum", "mean", "count", "min", "max", "last"]
I64 = (-(2**63), 2**63 - 1)
Row = tuple[str, int, Any]  # entity, second, value


def spec(window: str, ttl: str = "1000d", column: str = "x") -> FeatureViewSpec:
    return FeatureViewSpec.model_validate(
        {
            "entities": [{"name": "e", "joinKey": "id"}],
            "source": {"datasetRef": {"name": "src"}},
            "timestampColumn": "t",
            "ttl": ttl,
            "features": [
                {"name": f, "aggregation": {"column": column, "function": f, "window": window}}
                for f in FUNCTIONS
            ],
        }
    )


def source(rows: list[Row], kind: Any) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.string()),
            "t": pa.array([EPOCH + timedelta(seconds=r[1]) for r in rows], TS),
            "x": pa.array([r[2] for r in rows], kind),
        }
    )


def present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def brute(rows: list[Row], key: str, at: int, window: int, integer: bool) -> dict[str, Any]:
    """The rules, written out: the entity's rows with at - window < time <= at."""
    inside = sorted(
        (r[1], i, r[2])
        for i, r in enumerate(rows)
        if r[0] == key and at - window < r[1] <= at and present(r[2])
    )
    values = [v for _, _, v in inside]
    if integer:
        total: Any = sum(values)
        mean = float(total) / len(values) if values else None
    else:
        total = 0.0
        for t in sorted({t for t, _, _ in inside}):
            partial = 0.0
            for u, _, v in inside:
                if u == t:
                    partial += v
            total += partial
        mean = total / len(values) if values else None
    return {
        "sum": total,
        "count": len(values),
        "mean": mean,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "last": values[-1] if values else None,
    }


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


keys = st.sampled_from(["a", "b", "c"])
times = st.integers(0, 40)
floats = st.one_of(
    st.none(),
    st.integers(-50, 50).map(float),
    st.sampled_from([0.1, 0.2, 1e300, -1e300, 1e20, 1e-300, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)
ints = st.one_of(
    st.none(),
    st.integers(-50, 50),
    st.sampled_from([I64[0], I64[1], 2**53 + 1, 2**62, -(2**62)]),
    st.integers(*I64),
)


def fits(rows: list[Row], window: int, points: list[tuple[str, int]]) -> bool:
    """Whether every integer window sum at these points fits int64."""
    return all(I64[0] <= brute(rows, k, t, window, True)["sum"] <= I64[1] for k, t in points)


def check(rows: list[Row], window: int, kind: Any, labels: list[tuple[str, int]]) -> None:
    integer = pa.types.is_integer(kind)
    view = spec(f"{window}s")
    row_points = [(r[0], r[1]) for r in rows]
    if integer and not fits(rows, window, row_points + labels):
        with pytest.raises(transform.FeatureError, match="outside int64"):
            features = transform.feature_table(source(rows, kind), view)
            asof.training_set(label_table(labels), features, view, "lt")
        return
    features = transform.feature_table(source(rows, kind), view)
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1], i))
    for f in FUNCTIONS:
        got = features.column(f).to_pylist()
        want = [brute(rows, rows[i][0], rows[i][1], window, integer)[f] for i in order]
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), (f, got, want)
    joined = asof.training_set(label_table(labels), features, view, "lt")
    for f in FUNCTIONS:
        got = joined.column(f).to_pylist()
        want = [
            brute(rows, k, t, window, integer)[f]
            if any(r[0] == k and r[1] <= t for r in rows)
            else None
            for k, t in labels
        ]
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), (f, got, want)


def label_table(labels: list[tuple[str, int]]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([k for k, _ in labels], pa.string()),
            "lt": pa.array([EPOCH + timedelta(seconds=t) for _, t in labels], TS),
        }
    )


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(keys, times, floats), min_size=1, max_size=30),
    window=st.integers(1, 30),
    labels=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "z"]), st.integers(0, 80))),
)
def test_float_windows_match_the_rules(
    rows: list[Row], window: int, labels: list[tuple[str, int]]
) -> None:
    check(rows, window, pa.float64(), labels)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(keys, times, ints), min_size=1, max_size=30),
    window=st.integers(1, 30),
    labels=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "z"]), st.integers(0, 80))),
)
def test_integer_windows_are_exact(
    rows: list[Row], window: int, labels: list[tuple[str, int]]
) -> None:
    check(rows, window, pa.int64(), labels)


def one(rows: list[Row], kind: Any, window: str, f: str, at: int, key: str = "b") -> Any:
    features = transform.feature_table(source(rows, kind), spec(window))
    return asof.training_set(label_table([(key, at)]), features, spec(window), "lt")[f][0].as_py()


def test_small_values_survive_a_large_one_elsewhere() -> None:
    assert one([("a", 0, 1e300), ("b", 1, 1.0), ("b", 2, 1.0)], pa.float64(), "7d", "sum", 3) == 2.0
    days8 = 8 * 86400
    assert one([("b", 0, 1e20), ("b", days8, 1.0)], pa.float64(), "7d", "sum", days8) == 1.0
    got = one([("a", 0, 1e300), ("b", 1, 0.1), ("b", 2, 0.2)], pa.float64(), "7d", "sum", 3)
    assert got == 0.1 + 0.2


def test_infinity_stays_with_its_entity_and_its_window() -> None:
    rows = [("a", 0, math.inf), ("b", 1, 5.0)]
    assert one(rows, pa.float64(), "7d", "sum", 2) == 5.0
    expired = [("b", 0, math.inf), ("b", 10, 5.0)]
    assert one(expired, pa.float64(), "5s", "sum", 12) == 5.0
    assert one([("b", 0, math.inf)], pa.float64(), "5s", "min", 1) == math.inf


def test_integers_stay_exact() -> None:
    top = 2**63 - 1
    assert one([("b", 0, top)], pa.int64(), "5s", "min", 1) == top
    assert one([("b", 0, top)], pa.int64(), "5s", "max", 1) == top
    assert one([("b", 0, 2**53 + 1)], pa.int64(), "5s", "max", 1) == 2**53 + 1
    assert one([("b", 0, 2**53 + 1), ("b", 0, None)], pa.int64(), "5s", "sum", 1) == 2**53 + 1
    with pytest.raises(transform.FeatureError, match="outside int64"):
        transform.feature_table(source([("b", 0, 2**62), ("b", 1, 2**62)], pa.int64()), spec("5s"))


def test_fractional_durations_are_exact_microseconds() -> None:
    features = transform.feature_table(source([("b", 0, 1.0)], pa.float64()), spec("0.7d", "1.4d"))

    def at(micros: int) -> dict[str, Any]:
        since_epoch = int(EPOCH.timestamp()) * 1_000_000 + micros
        labels = pa.table({"id": ["b"], "lt": pa.array([since_epoch], pa.int64()).cast(TS)})
        row: dict[str, Any] = asof.training_set(
            labels, features, spec("0.7d", "1.4d"), "lt"
        ).to_pylist()[0]
        return row

    w, ttl = 60_480_000_000, 120_960_000_000  # 0.7d and 1.4d in microseconds
    assert at(w - 1)["count"] == 1 and at(w)["count"] == 0
    assert at(ttl)["count"] == 0 and at(ttl + 1)["count"] is None  # the ttl is inclusive


def test_all_rows_of_one_time_are_in_its_window() -> None:
    features = transform.feature_table(
        source([("b", 5, 1.0), ("b", 5, 2.0), ("b", 5, None)], pa.float64()), spec("1s")
    )
    assert features.column("count").to_pylist() == [2, 2, 2]
    assert features.column("sum").to_pylist() == [3.0, 3.0, 3.0]
    assert features.column("last").to_pylist() == [2.0, 2.0, 2.0]


def test_a_window_empties_at_the_label_time_within_the_ttl() -> None:
    rows = [("b", 0, 1.0)]
    assert one(rows, pa.float64(), "7s", "count", 6) == 1
    assert one(rows, pa.float64(), "7s", "count", 7) == 0
    assert one(rows, pa.float64(), "7s", "sum", 7) == 0.0
    assert one(rows, pa.float64(), "7s", "mean", 7) is None


def test_non_numeric_columns_count_and_last_only() -> None:
    rows = [("b", 0, "x"), ("b", 1, None)]
    view = FeatureViewSpec.model_validate(
        {
            "entities": [{"name": "e", "joinKey": "id"}],
            "source": {"datasetRef": {"name": "src"}},
            "timestampColumn": "t",
            "ttl": "1d",
            "features": [
                {"name": "n", "aggregation": {"column": "x", "function": "count", "window": "5s"}},
                {"name": "l", "aggregation": {"column": "x", "function": "last", "window": "5s"}},
            ],
        }
    )
    table = transform.feature_table(source(rows, pa.string()), view)
    assert table.column("n").to_pylist() == [1, 1]
    assert table.column("l").to_pylist() == ["x", "x"]
    with pytest.raises(transform.FeatureError, match="needs a numeric column"):
        transform.feature_table(source(rows, pa.string()), spec("5s"))


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(keys, times, st.one_of(floats, ints)), min_size=1, max_size=30),
    window=st.integers(1, 30),
    labels=st.lists(st.tuples(keys, st.integers(0, 80)), min_size=1, max_size=6),
    integer=st.booleans(),
)
def test_windows_of_a_few_rows_read_alone_agree_with_the_whole_table(
    rows: list[Row], window: int, labels: list[tuple[str, int]], integer: bool
) -> None:
    """Windows covering fewer rows than the table are evaluated over their own rows
    only; the same windows beside one covering every row read the whole table."""
    kind = pa.int64() if integer else pa.float64()
    rows = [(k, t, v if (type(v) is int) == integer or v is None else None) for k, t, v in rows]
    table = pit.sort_by_entity_and_time(source(rows, kind), ["id"], "t")
    seg = pit.segments(table, ["id"], "t")
    ranges = windows.Rows(seg)
    entity = dict(zip(seg.keys.to_pylist(), seg.starts.tolist(), strict=True))
    ends = dict(zip(seg.keys.to_pylist(), seg.ends.tolist(), strict=True))
    lo = np.array([entity.get(k, 0) for k, _ in labels], dtype=np.int64)
    hi = np.array([ends.get(k, 0) for k, _ in labels], dtype=np.int64)
    at = np.array([t * 1_000_000 for _, t in labels], dtype=np.int64) + pit.micros(
        pa.array([EPOCH], TS)
    )
    lo, hi = ranges.ranges(lo, hi, at, window * 1_000_000)
    assume(int((hi - lo).sum()) < table.num_rows)
    every = (np.append(lo, 0), np.append(hi, table.num_rows))
    for f in FUNCTIONS:
        try:
            alone = windows.evaluate(table.column("x"), f, lo, hi, ranges).to_pylist()
        except windows.WindowOverflow:
            continue
        try:
            beside = windows.evaluate(table.column("x"), f, *every, ranges).to_pylist()
        except windows.WindowOverflow:
            continue  # the window of every row overflows; the others did not
        assert all(same(a, b) for a, b in zip(alone, beside[:-1], strict=True)), (f, alone, beside)
