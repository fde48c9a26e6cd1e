"""Fixed-width ASCII regexes checked byte by byte: the same answers as RE2, always."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import re2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flywheel.data import contract, fixed_regex

# Pieces of regexes, the subset's and its neighbours' (which must fall back to RE2).
PIECES = [
    "a", "b", "C", "0", "-", "_", " ", ".", "\\.", "\\-", "\\d", "\\w", "\\s", "\\D", "é",
    "[0-9]", "[a-c]", "[a-]", "[-a]", "[\\d_]", "[\\w-]", "[^a]", "[]a]", "[a-c-e]",
    "[\\--/]", "[\\]x]", "[z-a]", "[[:digit:]]", "{2}", "{0}", "{1,3}", "{,2}", "{", "}",
    "?", "*", "+", "|", "(", ")", "(?:", "(?i)", "^", "$", "\\", "\\x41", "\n",
]  # fmt: skip
ALPHABET = "abcC0129-_ .]/é\n\t"


def re2_matches(values: Sequence[str | None], regex: str) -> list[bool]:
    matched = pc.match_substring_regex(pa.array(values, pa.string()), f"^(?:{regex})$")
    result: list[bool] = pc.fill_null(matched, False).to_pylist()
    return result


def compiles(regex: str) -> bool:
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(regex, options)
        pc.match_substring_regex(pa.array([""]), f"^(?:{regex})$")
    except (re2.error, pa.ArrowInvalid):
        return False
    return True


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6).map("".join),
    st.lists(st.one_of(st.none(), st.text(ALPHABET, max_size=9)), min_size=1, max_size=30),
    st.integers(0, 3),
)
@example("C[0-9]{6}", ["C000001", "C00001", "c000001", "C0000012", "C00000é", None], 1)
@example("[\\w-]{2}\\.", ["a-.", "_x.", "é.", "--.", "ab"], 0)
def test_fixed_width_regexes_match_exactly_what_re2_matches(
    regex: str, values: list[str | None], offset: int
) -> None:
    if not compiles(regex):
        return
    array = pa.array(["pad"] * offset + values, pa.string()).slice(offset)
    got = contract.regex_matches(array, regex).to_pylist()
    assert got == re2_matches(values, regex), (regex, fixed_regex.classes(regex))
    # Values made of the pattern's own classes, to reach the matches as well as misses.
    allowed = fixed_regex.classes(regex)
    if allowed:
        made = ["".join(chr(min(c)) for c in allowed), "".join(chr(max(c)) for c in allowed)]
        got = contract.regex_matches(pa.array(made), regex).to_pylist()
        assert got == re2_matches(made, regex) == [True, True]


@pytest.mark.parametrize(
    "regex", ["C[0-9]{6}", "[A-Z]{2}-\\d{4}", "v[0-9]\\.[0-9]", "[a-f0-9]{32}", "\\w{3}"]
)
def test_common_identifier_patterns_take_the_byte_path(regex: str) -> None:
    assert fixed_regex.classes(regex) is not None


@pytest.mark.parametrize("regex", ["a|b", "[^a]b", "a{1,3}", "(?i)ab", "ab*", "é", "[[:alpha:]]"])
def test_other_patterns_are_left_to_re2(regex: str) -> None:
    assert fixed_regex.classes(regex) is None
