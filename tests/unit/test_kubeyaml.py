"""Manifests read as kubectl reads them: go-yaml v2 scalars, int64/float64 numbers, its
document separators, and early refusals of what would hang or blow up."""

from __future__ import annotations

import math
import time

import pytest

from flywheel import kubeyaml


def value(text: str) -> object:
    [doc] = kubeyaml.read(f"v: {text}\n".encode())
    return doc.value["v"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(w, True) for w in ["y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "TRUE"]],
        *[(w, False) for w in ["n", "N", "no", "No", "NO", "off", "Off", "OFF", "false"]],
        *[(w, None) for w in ["~", "null", "Null", "NULL", ""]],
        ("yEs", "yEs"),
        ("0x1F", 31),
        ("0o17", 15),
        ("0777", 511),
        ("0b101", 5),
        ("-0b11", -3),
        ("1_000", 1000),
        ("+12", 12),
        ("08", 8),  # not octal, so a float, sent without a fraction
        ("09.5", 9.5),
        ("1e3", 1000),
        ("1.0", 1),
        ("1.", 1),
        (".5", 0.5),
        ("4.5", 4.5),
        ("1e400", "1e400"),  # out of range: go-yaml keeps the text
        ("1e-400", 0),
        ("190:20:30", "190:20:30"),  # no sexagesimal numbers in go-yaml
        ("2026-01-01", "2026-01-01"),  # timestamps stay text
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", 9223372036854775808.0),  # uint64, decoded as float64
        ("18446744073709551616", 1.8446744073709552e19),
        ("0x10000000000000000", "0x10000000000000000"),
        ("1e18", 10**18),
        ("4611686018427387904.0", 4611686018427388000),  # Go's shortest digits, then int64
        ("-9223372036854775809", -9.223372036854776e18),
        ("1e19", 1e19),
        ("'n'", "n"),
        ('"4"', "4"),
        ("!!str 4", "4"),
        ("!!float 4", 4),
        ("v1", "v1"),
    ],
)
def test_scalars_resolve_as_go_yaml_v2(text: str, expected: object) -> None:
    got = value(text)
    assert got == expected and type(got) is type(expected), (text, got)


@pytest.mark.parametrize("text", [".nan", ".NaN", ".inf", "-.Inf", "+.INF"])
def test_special_floats_are_refused(text: str) -> None:
    with pytest.raises(kubeyaml.ReadError, match="not a number JSON can carry"):
        value(text)


def test_plain_scalars_that_are_not_text_are_remembered() -> None:
    [doc] = kubeyaml.read(b"a:\n  - n\n  - 'n'\n")
    assert doc.value == {"a": [False, "n"]}
    assert doc.readings[("a", 0)].describe() == "the unquoted 'n' as the boolean false"
    assert ("a", 1) not in doc.readings
    assert doc.lines[("a", 1)] == 3


def test_documents_are_split_as_kubectl_splits_them() -> None:
    text = b"# head\n---\na: 1\n--- # comment\n~\n---\n---\nb: 2\n"
    docs = kubeyaml.read(text)
    assert [(d.index, d.value, d.line) for d in docs] == [(1, {"a": 1}, 3), (2, {"b": 2}, 8)]
    assert kubeyaml.read(b"") == []
    assert kubeyaml.read(b"# only a comment\n---\n") == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"--- a: 1\n", "only a comment after a document separator"),
        (b"a: 1\n----\nb: 2\n", "only a comment after a document separator"),
        (b"a: 1\n...\nb: 2\n", "not valid YAML"),
        (b"a: 1\na: 2\n", "appears twice"),
        (b"a: &x [*x]\n", "contains an alias to itself"),
        (b"a: *x\n", "names no anchor"),
        (b"n: 1\n", "quote it"),
        (b"1: x\n", "quote it"),
        (b"~: x\n", "quote it"),
        (b"[1]: x\n", "must be text"),
        (b"a: !Ref x\n", "tag !Ref is not supported"),
        (b"a: !!int x\n", "cannot read 'x' as a !!int"),
        (b"a: [" + b"[" * 100 + b"]" * 100 + b"]\n", "nested deeper"),
        (b"\xff\xfea\x00", "UTF-16"),
        (b"a: caf\xe9\n", "not UTF-8"),
        (b"a: 1\n\x00\x01", "binary"),
        (b"a: 'x\x07'\n", "not valid YAML"),
        (b"a:\n\tb: 1\n", "not valid YAML"),
        (b'{"a": 1, "a": 2}', "appears twice"),
    ],
)
def test_refusals_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(kubeyaml.ReadError, match=message.replace("[", r"\[")):
        kubeyaml.read(data)


def test_alias_bomb_is_refused_before_expanding() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)
    ]
    started = time.monotonic()
    with pytest.raises(kubeyaml.ReadError, match=r"aliasing|values once its aliases"):
        kubeyaml.read("\n".join(lines).encode())
    assert time.monotonic() - started < 2


def test_modest_aliasing_is_read() -> None:
    [doc] = kubeyaml.read(b"base: &b {cpu: '1'}\np: *b\nq: {<<: *b, memory: 2Gi}\n")
    assert doc.value["q"] == {"cpu": "1", "memory": "2Gi"}


def test_merge_keys_follow_go_yaml_v2() -> None:
    # go-yaml v2 applies entries in order: a merge after a key overrides it.
    [doc] = kubeyaml.read(b"m: {a: 1, <<: {a: 2, b: 3}, b: 4}\n")
    assert doc.value["m"] == {"a": 2, "b": 4}
    [doc] = kubeyaml.read(b"m: {<<: [{a: 1}, {a: 2, c: 3}]}\n")
    assert doc.value["m"] == {"a": 1, "c": 3}


def test_oversized_file_is_refused_unread() -> None:
    with pytest.raises(kubeyaml.ReadError, match="over the"):
        kubeyaml.read(b"#" * (kubeyaml.MAX_FILE_BYTES + 1))


def test_json_files_keep_kubectl_numbers() -> None:
    [a, b] = kubeyaml.read(b'{"x": 1.0, "y": 1e19, "z": 2.5}\n{"x": 9223372036854775808}')
    assert a.value == {"x": 1, "y": 1e19, "z": 2.5}
    assert type(a.value["x"]) is int
    assert b.value == {"x": 9223372036854775808.0}
    with pytest.raises(kubeyaml.ReadError, match="out of range"):
        kubeyaml.read_json('{"x": 1e400}')
    with pytest.raises(kubeyaml.ReadError, match="NaN is not valid JSON"):
        kubeyaml.read_json('{"x": NaN}')
    assert math.isclose(kubeyaml.read_json('{"x": 0.1}')["x"], 0.1)
