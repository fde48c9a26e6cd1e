"""Small types of the api: cron schedules, durations, expressions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flywheel.api import common, expressions, schedules


@pytest.mark.parametrize(
    ("expr", "minutes"),
    [("*/20 * * * *", [0, 20, 40]), ("5,10-12 * * * *", [5, 10, 11, 12]), ("@hourly", [0])],
)
def test_cron_minutes(expr: str, minutes: list[int]) -> None:
    assert schedules.parse_cron(expr)[0] == minutes


def test_cron_names() -> None:
    assert schedules.parse_cron("0 0 * jan-mar mon")[3:] == [[1, 2, 3], [1]]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("60 * * * *", "minute '60' is outside 0-59"),
        ("* 25 * * *", "hour '25' is outside 0-23"),
        ("*/0 * * * *", "step '0' must be at least 1"),
        ("a * * * *", "minute 'a' is not a number"),
        ("5-1 * * * *", "minute '5-1' is outside"),
    ],
)
def test_cron_errors_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedules.parse_cron(expr)


# Written out here, not read from the code: a wrong unit in the code must fail this test.
SECONDS_PER_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("45s", 45),
        ("30m", 1800),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1w1d1h1m1s1ms", 694861.001),
        ("0s", 0),
    ],
)
def test_duration_seconds_examples(text: str, seconds: float) -> None:
    assert common.duration_seconds(text) == pytest.approx(seconds)


@given(
    st.lists(
        st.tuples(st.integers(0, 500), st.sampled_from(sorted(SECONDS_PER_UNIT))),
        min_size=1,
        max_size=4,
    )
)
def test_duration_seconds_adds_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    expected = sum(n * SECONDS_PER_UNIT[u] for n, u in parts)
    assert common.duration_seconds(text) == pytest.approx(expected)
    # The CEL rule in the CRD says "zero exactly when no digit 1-9 appears"; check it.
    assert (expected == 0) == (not any(c in "123456789" for c in text))


@pytest.mark.parametrize(
    ("expr", "columns"),
    [
        ("log1p(amount) / (tenure + 1)", {"amount", "tenure"}),
        ("if_else(plan == 'basic', 1, 0)", {"plan"}),
        ("coalesce(a, b, 0) * -c", {"a", "b", "c"}),
        ("x if x > 0 else 0", {"x"}),
    ],
)
def test_expression_columns(expr: str, columns: set[str]) -> None:
    assert expressions.columns(expr) == columns


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("__import__('os')", "function '__import__' is not allowed"),
        ("a.real", "Attribute is not allowed"),
        ("[a, b]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("a < b < c", "one comparison at a time"),
        ("a // b", "FloorDiv is not allowed"),
        ("log(a, 2)", "takes 1 positional"),
        ("amount +", "not valid syntax"),
        ("f(a)(b)", "only these functions may be called"),
    ],
)
def test_expression_errors(expr: str, message: str) -> None:
    with pytest.raises(expressions.ExpressionError, match=message):
        expressions.parse(expr)
