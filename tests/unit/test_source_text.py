"""Parquet text is checked for UTF-8 as it is read: ASCII by one vectorised pass, the rest
decoded value by value; either way the same verdict."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flywheel.data import sources
from flywheel.data.errors import IngestError


def text(values: list[bytes | None], large: bool = False) -> pa.Array:
    binary = pa.array(values, pa.large_binary() if large else pa.binary())
    return binary.view(pa.large_string() if large else pa.string())


@pytest.mark.parametrize("large", [False, True])
@pytest.mark.parametrize(
    ("values", "valid", "ascii"),
    [
        ([b"C000001", None, b"", b"plain"], True, True),
        ([None, None], True, True),
        ([b"caf\xc3\xa9", b"x"], True, False),  # valid UTF-8, not ASCII
        ([b"ok", b"caf\xe9"], False, False),  # Latin-1
        ([b"\xff", b"ok"], False, False),
    ],
)
def test_text_is_valid_exactly_when_full_validation_says_so(
    values: list[bytes | None], valid: bool, ascii: bool, large: bool
) -> None:
    for start in range(len(values)):  # slices read their own bytes only
        column = text(values, large).slice(start)
        expect_valid = valid or all(v is None or v.isascii() for v in values[start:])
        batch = pa.RecordBatch.from_arrays([column], names=["c"])
        if expect_valid:
            sources._check_utf8(batch, "f.parquet")
        else:
            with pytest.raises(IngestError, match="not valid UTF-8"):
                sources._check_utf8(batch, "f.parquet")
    assert sources._ascii(text(values, large)) == ascii
