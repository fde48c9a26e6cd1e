"""A failed materialization publishes nothing, and never into another object's store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flywheel.api.featureview import FeatureView
from flywheel.data import runner as datasets
from flywheel.entrypoints import RunContext
from flywheel.features import runner, stores
from flywheel.storage import publish
from tests.components.helpers import dataset, write

pytestmark = pytest.mark.runtime

EVENTS = "customer_id,event_time,charges\nC1,2026-01-01 00:00:00,10\nC1,2026-01-02 00:00:00,20\n"


def events(time_type: str = "timestamp", **extra: Any) -> Any:
    return dataset(
        "events",
        {
            "source": {"uri": "./events.csv", "format": "csv"},
            "schema": {
                "columns": [
                    {"name": "customer_id", "type": "string"},
                    {"name": "event_time", "type": time_type},
                    {"name": "charges", "type": "float64"},
                ]
            },
            **extra,
        },
    )


def view(features: list[dict[str, Any]], **store: Any) -> FeatureView:
    return FeatureView.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": "customer"},
            "spec": {
                "entities": [{"name": "customer", "joinKey": "customer_id"}],
                "source": {"datasetRef": {"name": "events"}},
                "timestampColumn": "event_time",
                "ttl": "5d",
                "features": features,
                "offlineStore": store,
            },
        }
    )


def ingested(tmp_path: Path, ds: Any) -> RunContext:
    write(tmp_path / "events.csv", EVENTS)
    ctx = RunContext(artifact_root=tmp_path / "artifacts", base_dir=tmp_path)
    status = datasets.run_dataset(ds, ctx)
    assert status.phase == "Ready", status.conditions
    return ctx.replace(resources={ds.key: ds}, statuses={ds.key: status})


@pytest.mark.parametrize(
    ("time_type", "features"),
    [
        ("timestamp", [{"name": "event_time", "expression": "charges * 2"}]),
        ("string", [{"name": "charges", "column": "charges"}]),
    ],
    ids=["feature-replaces-time", "time-is-text"],
)
def test_a_failed_materialization_publishes_no_offline_version(
    tmp_path: Path, time_type: str, features: list[dict[str, Any]]
) -> None:
    ctx = ingested(tmp_path, events(time_type))
    named = [f["name"] for f in features]
    # validate refuses a feature named like the time column now; an object stored before
    # that rule still reaches the run
    fv = view([{**f, "name": f"{f['name']}_x"} for f in features])
    for feature, name in zip(fv.spec.features, named, strict=True):
        feature.name = name
    status = runner.run_featureview(fv, ctx)
    assert status.phase == "Failed"
    assert status.conditions[-1].reason == "InvalidFeatures"
    root = stores.offline_root(fv, ctx)
    assert publish.current(root) is None
    assert not Path(root.path, publish.VERSIONS).exists()


def test_an_offline_store_on_a_datasets_root_is_refused(tmp_path: Path) -> None:
    ds = events(destination="./artifacts/events")
    ctx = ingested(tmp_path, ds)
    dataset_root = datasets.dataset_root(ds, ctx)
    before = publish.current(dataset_root)
    fv = view([{"name": "charges", "column": "charges"}], uri="./artifacts/events")
    status = runner.run_featureview(fv, ctx)
    assert status.phase == "Failed"
    assert status.conditions[-1].reason == "StoreOwnedByAnother"
    assert "belongs to Dataset default/events" in status.conditions[-1].message
    assert publish.current(dataset_root) == before
