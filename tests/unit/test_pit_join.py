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
    out = pit.point_in_time_join(labels, ordered, ["id"], "label_t", "t", ttl, ["value"])
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
    out = pit.point_in_time_join(labels, ordered, ["k1", "k2"], "lt", "t", 100, ["v"])
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
        labels, features, ["id"], "label_t", "t", 100, ["value"], label_keys=["customer"]
    )
    assert out.column("value").to_pylist() == [1, 0]
