"""The one redaction function: what it masks, what it leaves, and how it bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flywheel import redaction

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


@pytest.mark.parametrize(
    "text",
    [
        f"http://user:{SECRET}@example.com/x.csv",
        f"s3://AKIAIOSFODNN7EXAMPLE:{SECRET}@bucket/data/",
        f"s3://KEY:SE/{SECRET}@bucket/data/",
        f"https://h/x.csv?X-Amz-Signature={SECRET}&part=1",
        f"https://h/x.csv?sig={SECRET}",
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        f"row 1: user=ann,password={SECRET}",
        f'{{"secretAccessKey": "{SECRET}"}}',
        f"api_key: {SECRET}",
        f"Authorization: Bearer {SECRET}",
    ],
)
def test_credentials_are_masked(text: str) -> None:
    shown = redaction.redact(text)
    assert SECRET not in shown
    assert redaction.MASK in shown


@pytest.mark.parametrize(
    "text",
    [
        "file:///srv/data/events.csv",
        "s3://bucket/data/events.parquet",
        "column 'charges': 3 of 10 rows failed: charges:min 3",
        "https://h/x.csv?part=1",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redaction.redact(text) == text


def test_an_aws_access_key_id_alone_is_masked() -> None:
    assert "AKIAIOSFODNN7EXAMPLE" not in redaction.redact("key AKIAIOSFODNN7EXAMPLE used")


def test_a_sample_of_source_content_is_short_and_redacted() -> None:
    row = f"C000001,token={SECRET}," + "x" * 500
    shown = redaction.sample(row)
    assert SECRET not in shown
    assert len(shown) <= redaction.SAMPLE_CHARS + 3


def test_an_arrow_reader_error_quotes_only_a_sample_of_the_row() -> None:
    row = "first line of a file with " + "private text " * 40
    error = ValueError(f"CSV parse error: Expected 3 columns, got 1: {row}")
    shown = redaction.arrow_error(error)
    assert shown.startswith("CSV parse error: Expected 3 columns, got 1: ")
    assert "private text " * 3 not in shown


@given(st.text(max_size=70_000))
def test_a_condition_message_fits_the_api_limit_and_keeps_its_head(text: str) -> None:
    message = redaction.condition_message(text)
    assert len(message.encode()) <= redaction.CONDITION_MESSAGE_BYTES
    if len(text.encode()) > redaction.CONDITION_MESSAGE_BYTES:
        assert message.endswith("chars cut)")
        head = redaction.redact(text)[:100]
        assert message.startswith(head[: min(len(head), 50)])


def test_a_long_condition_message_is_cut_keeping_the_head() -> None:
    text = "validation failed: " + "x" * 40_000
    message = redaction.condition_message(text)
    assert message.startswith("validation failed: xxx")
    assert len(message.encode()) <= 32 * 1024
