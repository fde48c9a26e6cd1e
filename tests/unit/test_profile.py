"""Statistics profiles: the numbers a drift check will compare against."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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


RANGES = {"int8": (-128, 127), "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
RANGES["uint64"] = (0, 2**64 - 1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-3, 3), min_size=1, max_size=60),
    st.sampled_from([0, 2**53 - 2, 2**63 - 2, -(2**63)]),
    st.sampled_from(sorted(RANGES)),
)
def test_narrow_integers_are_counted_as_arrow_computes_them(
    small: list[int], offset: int, type_name: str
) -> None:
    """Integers of a narrow range are profiled by counting each value; the quantiles and
    histogram are exactly those of Arrow's sort and numpy's binning."""
    low, high = RANGES[type_name]
    values = [min(max(v + offset, low), high) for v in small]
    array = pa.array(values, pa.type_for_alias(type_name))
    p = profile.profile_column(pa.chunked_array([array]))
    as_float = array.cast(pa.float64(), safe=False)
    want = pc.quantile(as_float, q=list(profile.QUANTILES), interpolation="linear")
    assert [p["quantiles"][str(q)] for q in profile.QUANTILES] == want.to_pylist()
    edges = np.array(p["histogram"]["edges"])
    bins = np.clip(np.searchsorted(edges, as_float.to_numpy(), side="right") - 1, 0, len(edges) - 2)
    assert p["histogram"]["counts"] == np.bincount(bins, minlength=len(edges) - 1).tolist()


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([0.0, 1.0, 1e-300, 1e300, -1e308, 1e308, 2.0**53, 2.0**53 + 2]),
        ),
        min_size=2,
        max_size=2,
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_histogram_bins_by_arithmetic_are_the_searched_bins(bounds: list[float], seed: int) -> None:
    # + 0.0 makes -0.0 plain 0.0: sorted() keeps (0.0, -0.0) and numpy's uniform then
    # sees high - low as negative.
    low, high = sorted(b + 0.0 for b in bounds)
    edges = profile.histogram_edges(low, high)
    rng = np.random.default_rng(seed)
    inside = rng.uniform(low / 2, high / 2, 4000) * 2  # a range wider than float64 too
    with np.errstate(over="ignore"):
        near = np.concatenate([edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)])
    values = np.concatenate([near[np.isfinite(near)], np.clip(inside, low, high)])
    searched = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    assert profile.histogram_bins(values, edges).tolist() == searched.tolist()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([0.0, -0.5, 1.0, 1e-300, 1e300, -1e308, 1e308, 2.0**53]),
            st.integers(-5, 5).map(float),
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 3),
)
@example([1.7976931348623157e308, -9.9792015476736e291], 1)  # a range wider than float64
def test_quantiles_from_the_bins_are_arrows(values: list[float], repeat: int) -> None:
    """The quantiles read from the few bins that hold them are exactly Arrow's sort and
    linear interpolation (repeated values and more than 1024 of them included)."""
    array = pa.array(values * (1 + repeat * 600 // len(values)), pa.float64())
    p = profile.profile_column(pa.chunked_array([array]))
    want = pc.quantile(array, q=list(profile.QUANTILES), interpolation="linear").to_pylist()
    assert [p["quantiles"][str(q)] for q in profile.QUANTILES] == want


@pytest.mark.parametrize("block", [1024, 1500, 1 << 16])
def test_histogram_bins_of_a_large_column_are_binned_block_by_block(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(0, 1, 5000), rng.integers(-3, 4, 5000).astype(float)])
    edges = profile.histogram_edges(float(values.min()), float(values.max()))
    whole = profile.histogram_bins(values, edges)
    monkeypatch.setattr(profile, "HISTOGRAM_BLOCK", block)
    assert profile.histogram_bins(values, edges).tolist() == whole.tolist()
    searched = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    assert whole.tolist() == searched.tolist()


@pytest.mark.parametrize("block", [1000, 1 << 16])
@pytest.mark.parametrize("spread", [5, 3000])
def test_narrow_integers_in_many_chunks_are_counted_block_by_block(
    block: int, spread: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile, "HISTOGRAM_BLOCK", block)
    rng = np.random.default_rng(11)
    parts = [rng.integers(-spread, spread, size) for size in (7000, 1, 2500, 0, 4000)]
    column = pa.chunked_array([pa.array(p, pa.int32()) for p in parts], pa.int32())
    p = profile.profile_column(column)
    as_float = pa.array(np.concatenate(parts).astype(float))
    want = pc.quantile(as_float, q=list(profile.QUANTILES), interpolation="linear")
    assert [p["quantiles"][str(q)] for q in profile.QUANTILES] == want.to_pylist()
    edges = np.array(p["histogram"]["edges"])
    bins = np.clip(np.searchsorted(edges, as_float.to_numpy(), side="right") - 1, 0, len(edges) - 2)
    assert p["histogram"]["counts"] == np.bincount(bins, minlength=len(edges) - 1).tolist()
