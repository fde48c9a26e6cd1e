"""split.window: only the newest labels are split into train, validation and test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from pydantic import ValidationError

from flywheel.api.trainingjob import Split
from flywheel.training import trainset

START = datetime(2026, 1, 1, tzinfo=UTC)


def labels(days: list[int]) -> pa.Table:
    times = [START + timedelta(days=d) for d in days]
    return pa.table(
        {
            "id": [f"c{i}" for i in range(len(days))],
            "ts": pa.array(times, pa.timestamp("us", "UTC")),
        }
    )


def test_the_window_keeps_the_labels_of_its_last_stretch_up_to_the_newest() -> None:
    kept = trainset.newest(labels([50, 90, 99, 100, 105, 119]), "ts", "20d")
    # 119 - 20 = day 99: a label exactly at the cut is outside, like everything older.
    assert kept["id"].to_pylist() == ["c3", "c4", "c5"]


def test_a_window_longer_than_the_labels_keeps_them_all() -> None:
    assert trainset.newest(labels([1, 2, 3]), "ts", "52w").num_rows == 3


def test_the_window_is_a_positive_duration() -> None:
    assert Split.model_validate({"window": "20d"}).window == "20d"
    with pytest.raises(ValidationError, match="greater than zero"):
        Split.model_validate({"window": "0d"})
    with pytest.raises(ValidationError, match="window"):
        Split.model_validate({"window": "twenty days"})
