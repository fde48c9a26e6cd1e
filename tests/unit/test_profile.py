"""Statistics profiles: the numbers a drift check will compare against."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

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
