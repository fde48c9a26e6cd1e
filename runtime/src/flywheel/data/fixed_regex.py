"""Regexes that only match text of one length made of ASCII characters, checked byte by
byte with numpy instead of RE2: `C[0-9]{6}`, `[A-Z]{2}-\\d{4}`, `v[0-9]\\.[0-9]`.

Pure. `classes` reads a small subset of RE2's syntax: ASCII literals, escaped
punctuation, `\\d` and `\\w` (ASCII in RE2), classes of those and of ranges, each
optionally repeated an exact `{n}` times. Anything else (alternation, groups, flags,
open repeats, negated classes, non-ASCII) gives None, and RE2 checks the column as
before. A string fully matches such a regex exactly when it has one byte per position
and each byte is in its position's class: an ASCII class never matches a byte of a
multi-byte character.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_DIGITS = frozenset(map(ord, string.digits))
_WORD = frozenset(map(ord, string.ascii_letters + string.digits + "_"))
_PERL = {"d": _DIGITS, "w": _WORD}
# RE2 reads a backslash before ASCII punctuation as that character.
_PUNCTUATION = frozenset(string.punctuation)
_SPECIAL = frozenset("\\.^$|?*+()[]{}")
_REPEAT = re.compile(r"\{([0-9]{1,4})\}")
# Longer patterns are left to RE2: a numpy pass per position would cost more.
MAX_POSITIONS = 64


@functools.lru_cache(maxsize=256)
def classes(regex: str) -> tuple[frozenset[int], ...] | None:
    """The bytes allowed at each position of the strings `regex` fully matches, or None
    when the regex is outside the subset (see the module docstring)."""
    out: list[frozenset[int]] = []
    i = 0
    while i < len(regex):
        parsed = _class(regex, i) if regex[i] == "[" else _atom(regex, i)
        if parsed is None:
            return None
        allowed, i = parsed
        count = 1
        repeat = _REPEAT.match(regex, i)
        if repeat is not None:
            count, i = int(repeat.group(1)), repeat.end()
        if i < len(regex) and regex[i] in "?*+{":
            return None  # an open or lazy repeat
        out += [allowed] * count
        if len(out) > MAX_POSITIONS:
            return None
    return tuple(out)


def _atom(regex: str, i: int) -> tuple[frozenset[int], int] | None:
    char = regex[i]
    if char == "\\":
        escaped = regex[i + 1 : i + 2]
        if escaped in _PERL:
            return _PERL[escaped], i + 2
        if escaped in _PUNCTUATION:
            return frozenset([ord(escaped)]), i + 2
        return None
    if char in _SPECIAL or not char.isascii():
        return None
    return frozenset([ord(char)]), i + 1


def _class(regex: str, i: int) -> tuple[frozenset[int], int] | None:
    """`[...]` starting at `i`: literals, escaped punctuation, \\d, \\w and ranges of
    literals; a `-` only first or last. Negation, brackets inside and any other form
    give None."""
    tokens: list[int | frozenset[int] | None] = []  # None: an unescaped `-`
    j = i + 1
    while j < len(regex) and not (regex[j] == "]" and tokens):
        char = regex[j]
        if char in "[]" or (char == "^" and not tokens) or not char.isascii():
            return None
        if char == "\\":
            escaped = regex[j + 1 : j + 2]
            if escaped in _PERL:
                tokens.append(_PERL[escaped])
            elif escaped in _PUNCTUATION:
                tokens.append(ord(escaped))
            else:
                return None
            j += 2
        else:
            tokens.append(None if char == "-" else ord(char))
            j += 1
    if j >= len(regex):
        return None
    members: set[int] = set()
    k = 0
    while k < len(tokens):
        token = tokens[k]
        last = len(tokens) - 1
        if token is None:  # a `-` that starts no range: literal only first or last
            if k not in (0, last):
                return None
            members.add(ord("-"))
            k += 1
            continue
        ranged = k + 2 <= last and tokens[k + 1] is None
        if not ranged:
            members |= token if isinstance(token, frozenset) else {token}
            k += 1
            continue
        high = tokens[k + 2]
        if isinstance(token, frozenset) or not isinstance(high, int) or high < token:
            return None
        members |= set(range(token, high + 1))
        k += 3
    return frozenset(members), j + 1


def full_match(array: Any, allowed: tuple[frozenset[int], ...]) -> Any:
    """Which strings of `array` (pa.string()) are one byte per position, each in its
    position's class: a boolean array, false for nulls."""
    n = len(array)
    if n == 0:
        return pa.array([], pa.bool_())
    validity, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, n + 1, array.offset * 4)
    data = np.frombuffer(data_buffer or b"", np.uint8)
    fits = np.diff(offsets) == len(allowed)
    starts = offsets[:-1][fits]
    ok = np.ones(len(starts), dtype=bool)
    for position, members in enumerate(allowed):
        if not len(starts):
            break
        byte = data[starts + position]
        low, high = min(members), max(members)
        if len(members) == high - low + 1:  # one range: one subtraction and a comparison
            ok &= (byte - np.uint8(low)) <= np.uint8(high - low)
        else:
            table = np.zeros(256, dtype=bool)
            table[list(members)] = True
            ok &= table[byte]
    matched = np.zeros(n, dtype=bool)
    matched[fits] = ok
    if validity is not None:
        matched &= pc.is_valid(array).to_numpy(zero_copy_only=False)
    return pa.array(matched)
