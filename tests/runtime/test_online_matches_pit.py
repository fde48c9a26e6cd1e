"""Property: after every incremental materialization at time m, the online store answers
for "now = m" exactly what the point-in-time join gives for labels at m (real SQLite)."""

from __future__ import annotations

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
from flywheel.features import materialize, pit, serving, stores, transform
from flywheel.storage import publish

pytestmark = pytest.mark.runtime

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
ENTITIES = ["a", "b", "c", "d"]


def view(ttl_seconds: int) -> FeatureView:
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
                "features": [
                    {"name": "x", "column": "x"},
                    {"name": "double", "expression": "x * 2"},
                    {
                        "name": "sum5",
                        "aggregation": {"column": "x", "function": "sum", "window": "5s"},
                    },
                ],
            },
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(ENTITIES), st.integers(0, 50), st.integers(-9, 9)),
        min_size=1,
        max_size=30,
    ),
    moments=st.lists(st.integers(0, 70), min_size=1, max_size=4, unique=True).map(sorted),
    ttl=st.integers(1, 30),
)
def test_online_equals_the_point_in_time_join_at_each_materialization(
    events: list[tuple[str, int, int]], moments: list[int], ttl: int
) -> None:
    fv = view(ttl)
    source = pa.table(
        {
            "id": [e[0] for e in events],
            "t": pa.array([EPOCH + timedelta(seconds=e[1]) for e in events], TS),
            "x": pa.array([e[2] for e in events], pa.int64()),
        }
    )
    features = transform.feature_table(source, fv.spec)
    names = [f.name for f in fv.spec.features]
    with tempfile.TemporaryDirectory() as tmp:
        context = RunContext(artifact_root=Path(tmp), base_dir=Path(tmp))
        for m in moments:
            now = EPOCH + timedelta(seconds=m)
            materialize.update_online(fv, context, features, now, publish.no_checkpoint)
            online = serving.OnlineView(fv, stores.open_online(fv, context))
            try:
                got = online.get([{"id": e} for e in ENTITIES], now)
            finally:
                online.store.close()
            labels = pa.table({"id": ENTITIES, "lt": pa.array([now] * len(ENTITIES), TS)})
            joined = (
                pit.point_in_time_join(labels, features, ["id"], "lt", "t", ttl, names)
                .select(names)
                .to_pylist()
            )
            expected: list[Any] = [
                None if all(v is None for v in row.values()) else row for row in joined
            ]
            assert got == expected, (m, got, expected)
