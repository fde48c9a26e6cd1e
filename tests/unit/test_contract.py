"""The schema contract on in-memory batches: casts, checks and reasons, no I/O."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from flywheel.api.dataset import Column, DatasetSchema
from flywheel.data import contract
from flywheel.data.errors import IngestError


def col(**kw: object) -> Column:
    return Column.model_validate(kw)


def check(values: pa.Array, **kw: object) -> tuple[list[Any], dict[str, list[bool]]]:
    typed, failures = contract.check_column(values, col(name="c", **kw), "f.csv")
    return typed.to_pylist(), {f.check: f.mask.to_pylist() for f in failures}


def test_text_to_int_reports_bad_cells_and_keeps_the_rest() -> None:
    typed, fails = check(
        pa.array(["1", " 2 ", "x", None, "3.5", "99999999999999999999"]), type="int64"
    )
    assert typed == [1, 2, None, None, None, None]
    assert fails["type"] == [False, False, True, False, True, True]


def test_int32_overflow_is_unsafe() -> None:
    typed, fails = check(pa.array([1, 3_000_000_000]), type="int32")
    assert typed == [1, None]
    assert fails["type"] == [False, True]


def test_float_to_int_is_safe_only_without_loss() -> None:
    typed, fails = check(pa.array([1.0, 1.5, None, float("nan")]), type="int64")
    assert typed[:3] == [1, None, None]
    assert fails["type"] == [False, True, False, True]


def test_timestamps_iso_naive_and_zoned_to_utc() -> None:
    typed, fails = check(
        pa.array(["2026-01-01 01:00:00", "2026-01-01T01:00:00+01:00", "2026-13-01", "noon"]),
        type="timestamp",
    )
    assert [t.isoformat() if t else None for t in typed] == [
        "2026-01-01T01:00:00+00:00",
        "2026-01-01T00:00:00+00:00",
        None,
        None,
    ]
    assert fails["timestamp"] == [False, False, True, True]


def test_timestamp_format() -> None:
    typed, fails = check(
        pa.array(["01/02/2026 10:00", "2026-01-02"]),
        type="timestamp",
        timestampFormat="%d/%m/%Y %H:%M",
    )
    assert typed[0].isoformat() == "2026-02-01T10:00:00+00:00"
    assert fails["timestamp"] == [False, True]


def test_every_check_runs_on_every_row() -> None:
    _, fails = check(
        pa.array(["a1", "zz", None]),
        type="string",
        nullable=False,
        regex="[a-z][0-9]",
        allowedValues=["a1", "b2"],
    )
    assert fails == {
        "type": [False, False, False],
        "null": [False, False, True],
        "allowed": [False, True, False],
        "regex": [False, True, False],
    }


def test_ranges() -> None:
    _, fails = check(pa.array([-1.0, 0.0, 10.0, 11.0, None]), type="float64", min=0, max=10)
    assert fails["min"] == [True, False, False, False, False]
    assert fails["max"] == [False, False, False, True, False]


def test_reasons_name_every_failed_check_of_each_bad_row() -> None:
    schema = DatasetSchema.model_validate(
        {
            "columns": [
                {"name": "a", "type": "int64", "min": 0},
                {"name": "b", "type": "string", "allowedValues": ["x"]},
            ]
        }
    )
    batch = pa.record_batch({"a": ["1", "-1", "q"], "b": ["x", "y", "y"]})
    conformed = contract.conform(batch, schema, "f.csv")
    bad = conformed.bad_mask()
    assert bad.to_pylist() == [False, True, True]
    assert contract.reasons(conformed, bad).to_pylist() == ["a:min;b:allowed", "a:type;b:allowed"]


def test_missing_column_names_file_column_and_fix() -> None:
    schema = DatasetSchema.model_validate({"columns": [{"name": "a", "type": "int64"}]})
    with pytest.raises(IngestError) as err:
        contract.conform(pa.record_batch({"b": [1]}), schema, "f.csv")
    assert err.value.file == "f.csv" and err.value.column == "a" and "fix:" in str(err.value)


def test_repeated_after_first() -> None:
    values = pa.chunked_array([["a", "b", None], ["a", None, "b", "c"]])
    assert contract.repeated_after_first(values).tolist() == [
        False,
        False,
        False,
        True,
        False,
        True,
        False,
    ]
