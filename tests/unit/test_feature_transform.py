"""Feature rows from source rows: expressions and windowed aggregations, no I/O."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.api.featureview import FeatureViewSpec
from flywheel.features import transform
from flywheel.features.expressions import compile_expression

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a / 2 + 1", [1.5, 3.0, None]),
        ("a % 3", [1.0, 1.0, None]),
        ("-7 % a", [0.0, 1.0, None]),
        ("clip(a, 2, 3)", [2, 3, None]),
        ("coalesce(a, 0)", [1, 4, 0]),
        ("if_else(a > 1, 'hi', 'lo')", ["lo", "hi", None]),
        ("upper(s)", ["AB", "C", None]),
        ("a > 1 and b < 1", [False, True, False]),
        ("round(b / 3, 2)", [0.67, 0.0, 0.33]),
        ("is_null(a)", [False, False, True]),
        ("b if a > 1 else 0.5", [0.5, 0.0, None]),
        ("1 + 2", [3, 3, 3]),
        ("log1p(b) > 0", [True, False, True]),
    ],
)
def test_expressions(expression: str, expected: list[Any]) -> None:
    table = pa.table({"a": [1, 4, None], "b": [2.0, 0.0, 1.0], "s": ["Ab", "c", None]})
    assert compile_expression(expression)(table).to_pylist() == expected


def spec(features: list[dict[str, Any]]) -> FeatureViewSpec:
    return FeatureViewSpec.model_validate(
        {
            "entities": [{"name": "e", "joinKey": "id"}],
            "source": {"datasetRef": {"name": "src"}},
            "timestampColumn": "t",
            "ttl": "1d",
            "features": features,
        }
    )


FUNCTIONS = ["sum", "mean", "count", "min", "max", "last"]


def brute(rows: list[tuple[str, int, float | None]], window: int) -> dict[str, list[Any]]:
    """Per row in (id, t, input order) order: aggregates over (t - window, t], every row
    at t included."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1], i))
    out: dict[str, list[Any]] = {f: [] for f in FUNCTIONS}
    for i in order:
        key, t, _ = rows[i]
        inside = [rows[j][2] for j in order if rows[j][0] == key and t - window < rows[j][1] <= t]
        values = [v for v in inside if v is not None]
        out["sum"].append(sum(values) if values else 0.0)
        out["count"].append(len(values))
        out["mean"].append(sum(values) / len(values) if values else None)
        out["min"].append(min(values) if values else None)
        out["max"].append(max(values) if values else None)
        out["last"].append(values[-1] if values else None)
    return out


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 40),
            st.one_of(st.none(), st.integers(-50, 50).map(float)),
        ),
        min_size=1,
        max_size=40,
    ),
    window=st.integers(1, 30),
)
def test_windowed_aggregations_match_brute_force(
    rows: list[tuple[str, int, float | None]], window: int
) -> None:
    source = pa.table(
        {
            "id": [r[0] for r in rows],
            "t": pa.array([EPOCH + timedelta(seconds=r[1]) for r in rows], TS),
            "x": pa.array([r[2] for r in rows], pa.float64()),
        }
    )
    features = [
        {"name": f, "aggregation": {"column": "x", "function": f, "window": f"{window}s"}}
        for f in FUNCTIONS
    ]
    table = transform.feature_table(source, spec(features))
    expected = brute(rows, window)
    for f in FUNCTIONS:
        got = table.column(f).to_pylist()
        assert len(got) == len(expected[f])
        for g, e in zip(got, expected[f], strict=True):
            assert (g is None and e is None) or math.isclose(g, e, abs_tol=1e-9), (f, got)


def test_columns_and_missing_source_columns() -> None:
    source = pa.table({"id": ["b", "a", None], "t": pa.array([EPOCH] * 3, TS), "x": [1, 2, 3]})
    table = transform.feature_table(
        source, spec([{"name": "y", "column": "x"}, {"name": "z", "expression": "x * 2"}])
    )
    assert table.column("id").to_pylist() == ["a", "b"]  # sorted; null keys dropped
    assert table.column("z").to_pylist() == [4, 2]
    with pytest.raises(transform.FeatureError, match="no column"):
        transform.feature_table(source, spec([{"name": "y", "column": "nope"}]))


def test_start_time_drops_older_source_rows() -> None:
    source = pa.table(
        {
            "id": ["a", "a", "a"],
            "t": pa.array([EPOCH + timedelta(days=d) for d in (0, 1, 2)], TS),
            "x": [1.0, 2.0, 4.0],
        }
    )
    view = spec([{"name": "s", "aggregation": {"column": "x", "function": "sum", "window": "7d"}}])
    view.materialization.start_time = EPOCH + timedelta(days=1)
    table = transform.feature_table(source, view)
    assert table.column("s").to_pylist() == [2.0, 6.0]


def test_an_expression_the_data_cannot_satisfy_names_the_feature() -> None:
    source = pa.table({"id": ["a"], "t": pa.array([EPOCH], TS), "x": [1.0]})
    with pytest.raises(transform.FeatureError, match="feature 'bad'"):
        transform.feature_table(source, spec([{"name": "bad", "expression": "lower(x)"}]))
