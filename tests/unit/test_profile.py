"""Statistics profiles: the numbers a drift check will compare against."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flywheel.data import profile


def test_numeric_profile() -> None:
    values: list[float | None] = [*map(float, range(101)), None]
    p = profile.profile_column(pa.chunked_array([pa.array(values, pa.float64())]))
    assert p["kind"] == "numeric" and p["count"] == 102 and p["nulls"] == 1
    assert (p["min"], p["max"], p["mean"]) == (0.0, 100.0, 50.0)
    assert p["quantiles"]["0.5"] == 50.0 and p["quantiles"]["0.99"] == pytest.approx(99.0)
    assert sum(p["histogram"]["counts"]) == 101
    assert len(p["histogram"]["edges"]) == profile.HISTOGRAM_BINS + 1


def test_categorical_profile_orders_by_frequency() -> None:
    p = profile.profile_column(pa.chunked_array([["b", "a", "b", None, "c", "b", "a"]]))
    assert p["kind"] == "categorical" and p["distinct"] == 3
    assert p["top"] == [
        {"value": "b", "count": 3},
        {"value": "a", "count": 2},
        {"value": "c", "count": 1},
    ]
    assert p["other"] == 0


def test_empty_and_nan_numbers() -> None:
    p = profile.profile_column(pa.chunked_array([pa.array([np.nan, None], pa.float64())]))
    assert p["nan"] == 1 and "min" not in p


@pytest.mark.parametrize(
    "values",
    [
        [2**53 + 1, 2**53 + 3],
        [2**63 - 1, 2**63 - 2, 2**63 - 1],
        [-(2**63), 2**63 - 1],
        [5, 5, 5],
    ],
)
def test_integers_near_and_beyond_two_to_the_53(values: list[int]) -> None:
    p = profile.profile_column(pa.chunked_array([pa.array(values, pa.int64())]))
    assert (p["min"], p["max"]) == (min(values), max(values))  # exact, not float64
    assert sum(p["histogram"]["counts"]) == len(values)
    edges = p["histogram"]["edges"]
    assert edges == sorted(edges) and len(p["histogram"]["counts"]) == len(edges) - 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-(2**63), 2**63 - 1),
            st.integers(2**53 - 4, 2**53 + 4),
            st.integers(-3, 3),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_int64_column_profiles(values: list[int]) -> None:
    p = profile.profile_column(pa.chunked_array([pa.array(values, pa.int64())]))
    assert (p["min"], p["max"]) == (min(values), max(values))
    assert sum(p["histogram"]["counts"]) == len(values)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30))
@example([1.7976931348623157e308, -9.9792015476736e291])  # a range wider than float64
def test_any_float_column_profiles(values: list[float]) -> None:
    p = profile.profile_column(pa.chunked_array([pa.array(values, pa.float64())]))
    finite = [v for v in values if np.isfinite(v)]
    assert p["nan"] == sum(v != v for v in values)
    if finite:
        assert sum(p["histogram"]["counts"]) == len(finite)
