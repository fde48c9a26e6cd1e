"""The point-in-time join against a brute-force reference, and leakage."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.features import pit

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def at(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def features_table(rows: list[tuple[str, int]]) -> pa.Table:
    """Feature rows (entity, second); the feature value is the row's input position."""
    return pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.string()),
            "t": pa.array([at(r[1]) for r in rows], TS),
            "value": pa.array(range(len(rows)), pa.int64()),
        }
    )


def labels_table(rows: list[tuple[str | None, int | None]]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.string()),
            "label_t": pa.array([None if r[1] is None else at(r[1]) for r in rows], TS),
        }
    )


def join(features: pa.Table, labels: pa.Table, ttl: int) -> list[Any]:
    ordered = pit.sort_by_entity_and_time(features, ["id"], "t")
    out = pit.point_in_time_join(
        labels, ordered, ["id"], "label_t", "t", ttl * 1_000_000, ["value"]
    )
    return list(out.column("value").to_pylist())


def brute_force(
    features: list[tuple[str, int]], labels: list[tuple[str | None, int | None]], ttl: int
) -> list[int | None]:
    """Latest feature time <= label time within ttl; among equal times the last input row."""
    out: list[int | None] = []
    for key, t in labels:
        best: tuple[int, int] | None = None
        for i, (fk, ft) in enumerate(features):
            if key is None or t is None or fk != key or ft > t or t - ft > ttl:
                continue
            if best is None or (ft, i) > best:
                best = (ft, i)
        out.append(None if best is None else best[1])
    return out


entities = st.sampled_from(["a", "b", "c", "d"])
seconds = st.integers(min_value=0, max_value=60)


@settings(max_examples=300, deadline=None)
@given(
    features=st.lists(st.tuples(entities, seconds), max_size=40),
    labels=st.lists(
        st.tuples(st.one_of(entities, st.just("zz"), st.none()), st.one_of(seconds, st.none())),
        max_size=40,
    ),
    ttl=st.integers(min_value=0, max_value=70),
)
def test_matches_brute_force(
    features: list[tuple[str, int]], labels: list[tuple[str | None, int | None]], ttl: int
) -> None:
    assert join(features_table(features), labels_table(labels), ttl) == brute_force(
        features, labels, ttl
    )


def test_a_feature_from_after_the_label_time_never_leaks() -> None:
    features = [("a", 10), ("a", 20), ("b", 31)]
    labels: list[tuple[str | None, int | None]] = [("a", 19), ("a", 9), ("b", 30), ("b", 31)]
    assert join(features_table(features), labels_table(labels), 100) == [0, None, None, 2]


def test_ties_take_the_last_written_row() -> None:
    assert join(features_table([("a", 5), ("a", 5), ("a", 5)]), labels_table([("a", 5)]), 0) == [2]


def test_ttl_is_inclusive() -> None:
    features = features_table([("a", 10)])
    assert join(features, labels_table([("a", 20), ("a", 21)]), 10) == [0, None]


def test_out_of_order_input_and_unknown_entities() -> None:
    features = [("b", 9), ("a", 3), ("b", 1), ("a", 7)]
    labels: list[tuple[str | None, int | None]] = [("a", 8), ("x", 8), ("b", 5), (None, 8)]
    assert join(features_table(features), labels_table(labels), 100) == [3, None, 2, None]


def test_empty_features() -> None:
    assert join(features_table([]), labels_table([("a", 1)]), 10) == [None]


def test_composite_keys() -> None:
    features = pa.table(
        {
            "k1": ["a", "a", "b"],
            "k2": [1, 2, 1],
            "t": pa.array([at(1), at(1), at(1)], TS),
            "v": [10, 20, 30],
        }
    )
    labels = pa.table({"k1": ["a", "b", "b"], "k2": [2, 1, 2], "lt": pa.array([at(5)] * 3, TS)})
    ordered = pit.sort_by_entity_and_time(features, ["k1", "k2"], "t")
    out = pit.point_in_time_join(labels, ordered, ["k1", "k2"], "lt", "t", 10**8, ["v"])
    assert out.column("v").to_pylist() == [20, 30, None]


def test_the_threaded_path_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pit, "PARALLEL_MIN_LABELS", 1)
    rng = random.Random(11)
    features = [(rng.choice("abcdefg"), rng.randrange(300)) for _ in range(400)]
    labels: list[tuple[str | None, int | None]] = [
        (rng.choice("abcdefgh"), rng.randrange(300)) for _ in range(400)
    ]
    assert join(features_table(features), labels_table(labels), 40) == brute_force(
        features, labels, 40
    )


def test_labels_may_name_their_entity_columns_differently() -> None:
    features = pit.sort_by_entity_and_time(features_table([("a", 1), ("b", 2)]), ["id"], "t")
    labels = labels_table([("b", 5), ("a", 5)]).rename_columns(["customer", "label_t"])
    out = pit.point_in_time_join(
        labels, features, ["id"], "label_t", "t", 10**8, ["value"], label_keys=["customer"]
    )
    assert out.column("value").to_pylist() == [1, 0]


awkward = st.sampled_from(["a", "b", "", "a\x1fb", "b\x1fc", "1:a", "1", ":", "é", "\x00"])


@settings(max_examples=300, deadline=None)
@given(
    features=st.lists(st.tuples(awkward, awkward, st.integers(0, 9)), max_size=20),
    labels=st.lists(st.tuples(awkward, awkward, st.integers(0, 9)), max_size=20),
)
def test_composite_keys_never_collide(
    features: list[tuple[str, str, int]], labels: list[tuple[str, str, int]]
) -> None:
    table = pa.table(
        {
            "k1": pa.array([f[0] for f in features], pa.string()),
            "k2": pa.array([f[1] for f in features], pa.string()),
            "t": pa.array([at(f[2]) for f in features], TS),
            "v": pa.array(range(len(features)), pa.int64()),
        }
    )
    label_table = pa.table(
        {
            "k1": pa.array([lb[0] for lb in labels], pa.string()),
            "k2": pa.array([lb[1] for lb in labels], pa.string()),
            "lt": pa.array([at(lb[2]) for lb in labels], TS),
        }
    )
    ordered = pit.sort_by_entity_and_time(table, ["k1", "k2"], "t")
    out = pit.point_in_time_join(label_table, ordered, ["k1", "k2"], "lt", "t", 10**9, ["v"])
    expected = []
    for k1, k2, t in labels:
        best = None
        for i, (f1, f2, ft) in enumerate(features):
            if (f1, f2) == (k1, k2) and ft <= t and (best is None or (ft, i) >= best):
                best = (ft, i)
        expected.append(None if best is None else best[1])
    assert out.column("v").to_pylist() == expected


def test_the_separator_of_old_is_just_a_character() -> None:
    table = pa.table({"k1": ["a\x1fb", "a"], "k2": ["c", "b\x1fc"]})
    keys = pit.entity_key_array(table, ["k1", "k2"]).to_pylist()
    assert keys[0] != keys[1]


def test_labels_keys_are_cast_to_the_feature_key_types() -> None:
    features = pit.sort_by_entity_and_time(
        pa.table({"id": [7], "n": ["x"], "t": pa.array([at(1)], TS), "v": [1]}), ["id", "n"], "t"
    )
    labels = pa.table({"id": ["7"], "n": ["x"], "lt": pa.array([at(2)], TS)})
    out = pit.point_in_time_join(labels, features, ["id", "n"], "lt", "t", 10**9, ["v"])
    assert out.column("v").to_pylist() == [1]


def test_missing_label_columns_are_named() -> None:
    features = pit.sort_by_entity_and_time(features_table([("a", 1)]), ["id"], "t")
    labels = labels_table([("a", 2)]).rename_columns(["customer", "label_t"])
    with pytest.raises(pit.LabelError, match=r"no column.*id"):
        pit.point_in_time_join(labels, features, ["id"], "label_t", "t", 10, ["value"])


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("0.7d", 60_480_000_000),
        ("1.4d", 120_960_000_000),
        ("1h30m", 5_400_000_000),
        ("0.1s", 100_000),
        ("1.5ms", 1_500),
        ("1w2d", 777_600_000_000),
        ("0.0000001s", 0),
    ],
)
def test_durations_parse_exactly(text: str, micros: int) -> None:
    assert pit.duration_micros(text) == micros
