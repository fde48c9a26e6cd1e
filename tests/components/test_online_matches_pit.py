"""Property: after any sequence of source versions (late rows, dropped rows) materialized
at increasing times m, the online store answers at m, and at later times T while its
windows empty, exactly what a training set gives a label at T (real SQLite)."""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.api.featureview import FeatureView
from flywheel.entrypoints import RunContext
from flywheel.features import asof, materialize, serving, stores, transform
from flywheel.storage import publish

pytestmark = pytest.mark.runtime

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
ENTITIES = ["a", "b", "a\x1fb", "7"]
FUNCTIONS = ["sum", "mean", "count", "min", "max", "last"]


def view(ttl_seconds: int, window: str) -> FeatureView:
    features: list[dict[str, Any]] = [
        {"name": "x", "column": "x"},
        {"name": "double", "expression": "x * 2"},
    ]
    for column in ("x", "y"):
        for f in FUNCTIONS:
            aggregation = {"column": column, "function": f, "window": window}
            features.append({"name": f"{column}_{f}", "aggregation": aggregation})
    return FeatureView.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": "prop"},
            "spec": {
                "entities": [{"name": "e", "joinKey": "id"}],
                "source": {"datasetRef": {"name": "src"}},
                "timestampColumn": "t",
                "ttl": f"{ttl_seconds}s",
                "features": features,
            },
        }
    )


floats = st.one_of(
    st.none(),
    st.integers(-9, 9).map(float),
    st.sampled_from([0.1, 0.2, 1e300, -1e300, 1e-300, math.inf, -math.inf, math.nan, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
ints = st.one_of(st.none(), st.integers(-9, 9), st.integers(-(2**40), 2**40))
events_strategy = st.lists(
    st.tuples(st.sampled_from(ENTITIES), st.integers(0, 50), ints, floats),
    min_size=1,
    max_size=30,
)


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (and nothing else)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def source_of(events: list[tuple[str, int, int | None, float | None]]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array([e[0] for e in events], pa.string()),
            "t": pa.array([EPOCH + timedelta(seconds=e[1]) for e in events], TS),
            "x": pa.array([e[2] for e in events], pa.int64()),
            "y": pa.array([e[3] for e in events], pa.float64()),
        }
    )


def training_rows(fv: FeatureView, features: pa.Table, moments: list[datetime]) -> list[Any]:
    """Per moment, per entity: the training set's row for a label then."""
    labels = pa.table(
        {
            "id": ENTITIES * len(moments),
            "lt": pa.array([m for m in moments for _ in ENTITIES], TS),
        }
    )
    names = [f.name for f in fv.spec.features]
    rows = asof.training_set(labels, features, fv.spec, "lt").select(names).to_pylist()
    return [None if all(v is None for v in row.values()) else row for row in rows]


@settings(max_examples=40, deadline=None)
@given(
    events=events_strategy,
    versions=st.lists(
        st.tuples(st.lists(st.booleans(), min_size=30, max_size=30), st.integers(0, 70)),
        min_size=1,
        max_size=4,
    ),
    ttl=st.integers(1, 30),
    window=st.sampled_from(["5s", "12s", "1.5s", "0.0001d"]),
)
def test_online_equals_the_training_set_after_any_sequence_of_versions(
    events: list[tuple[str, int, int | None, float | None]],
    versions: list[tuple[list[bool], int]],
    ttl: int,
    window: str,
) -> None:
    fv = view(ttl, window)
    moments = sorted(m for _, m in versions)
    with tempfile.TemporaryDirectory() as tmp:
        context = RunContext(artifact_root=Path(tmp), base_dir=Path(tmp))
        for number, ((keep, _), m) in enumerate(zip(versions, moments, strict=True)):
            # Each version holds any subset of the events: rows older than the watermark
            # arrive late, and rows disappear.
            chosen = [e for e, k in zip(events, keep, strict=False) if k]
            features = transform.feature_table(source_of(chosen), fv.spec)
            now = EPOCH + timedelta(seconds=m)
            materialize.update_online(
                fv, context, features, now, publish.no_checkpoint, f"v{number}"
            )
            seen = transform.feature_table(source_of([e for e in chosen if e[1] <= m]), fv.spec)
            # Every half second until every window has emptied and the ttl has passed.
            later = [now + timedelta(seconds=s / 2) for s in range(0, 2 * 32)]
            online = serving.OnlineView(fv, stores.open_online(fv, context))
            try:
                got = [r for at in later for r in online.get([{"id": e} for e in ENTITIES], at)]
            finally:
                online.store.close()
            expected = training_rows(fv, seen, later)
            assert same(got, expected), (m, got, expected)


def test_the_same_version_later_writes_only_entities_with_new_rows(tmp_path: Path) -> None:
    fv = view(100, "5s")
    context = RunContext(artifact_root=tmp_path, base_dir=tmp_path)
    features = transform.feature_table(
        source_of([("a", 1, 1, 1.0), ("b", 2, 2, 2.0), ("b", 20, 3, 3.0)]), fv.spec
    )
    first = materialize.update_online(
        fv, context, features, EPOCH + timedelta(seconds=10), publish.no_checkpoint, "v1"
    )
    assert first[:2] == (2, 2)
    second = materialize.update_online(
        fv, context, features, EPOCH + timedelta(seconds=30), publish.no_checkpoint, "v1"
    )
    assert second[:2] == (1, 2)  # only b has a row after the watermark
    third = materialize.update_online(
        fv, context, features, EPOCH + timedelta(seconds=30), publish.no_checkpoint, "v2"
    )
    assert third[:2] == (2, 2)  # a new version rebuilds every entity
