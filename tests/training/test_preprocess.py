"""Preprocessing: fitted on the training split only, applied the same everywhere."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from flywheel.entrypoints import RunContext
from flywheel.features.preprocess import Preprocessor
from flywheel.training import runner, trainset
from tests.training import world


def test_standardises_imputes_and_one_hots() -> None:
    train = pa.table({"x": [1.0, 3.0, None], "c": ["a", "b", "a"]})
    pre = Preprocessor.fit(train, ["x", "c"])
    assert pre.output_names() == ["x", "x:null", "c=<unknown>", "c=a", "c=b"]
    out = pre.transform({"x": [2.0, None, 5.0], "c": ["b", None, "zzz"]})
    np.testing.assert_allclose(
        out,
        [[0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0, 0.0], [3.0, 0.0, 1.0, 0.0, 0.0]],
    )
    assert out.dtype == np.float32
    np.testing.assert_array_equal(pre.category_indices({"x": [1.0], "c": ["b"]}), [[2]])


def test_state_round_trips_through_json() -> None:
    train = pa.table(
        {"x": [1, 2, 3, 4], "c": ["p", "q", "q", None], "b": [True, False, True, True]}
    )
    pre = Preprocessor.fit(train, ["x", "c", "b"])
    again = Preprocessor.from_json(json.loads(json.dumps(pre.to_json())))
    assert again == pre
    np.testing.assert_array_equal(again.transform(train), pre.transform(train))


def test_constant_column_stays_finite() -> None:
    pre = Preprocessor.fit(pa.table({"x": [2.0, 2.0]}), ["x"])
    assert np.isfinite(pre.transform({"x": [2.0, 9.0]})).all()


def test_no_test_split_statistic_reaches_the_preprocessing(world_context: RunContext) -> None:
    """Replacing every test-split feature value changes neither the fitted state nor the
    training rows the model sees."""
    job = world.job()
    ts = trainset.load(job, world_context)
    before = runner.prepare(job, ts)
    test = np.zeros(ts.table.num_rows, dtype=bool)
    test[before.parts.test] = True
    mask = pa.array(test)
    risk = pc.if_else(mask, pa.scalar(1e6), ts.table["risk"])
    plan = pc.if_else(mask, pa.scalar("leaked"), ts.table["plan"])
    table = ts.table.set_column(ts.table.schema.get_field_index("risk"), "risk", risk)
    table = table.set_column(table.schema.get_field_index("plan"), "plan", plan)
    after = runner.prepare(
        job, trainset.TrainingSet(table, ts.features, ts.label, ts.time_column, ts.lineage)
    )
    np.testing.assert_array_equal(after.parts.test, before.parts.test)
    assert after.preprocessor == before.preprocessor
    assert "leaked" not in after.preprocessor.to_json()["outputs"][0]
    np.testing.assert_array_equal(after.x[after.parts.train], before.x[before.parts.train])
    # The check can fail: fitting on every row does see the test split.
    assert Preprocessor.fit(table, ts.features) != Preprocessor.fit(ts.table, ts.features)


def test_time_split_puts_the_newest_rows_in_test(world_context: RunContext) -> None:
    job = world.job()
    ts = trainset.load(job, world_context)
    parts = trainset.split(ts, job.spec.split.strategy, 0.25, 0)
    times = pc.cast(ts.table["label_time"], pa.int64()).to_numpy()
    assert times[parts.train].max() <= times[parts.validation].min()
    assert times[parts.validation].max() <= times[parts.test].min()
    assert len(parts.test) == round(ts.table.num_rows * 0.25)


def test_random_split_is_seeded(world_context: RunContext) -> None:
    job = world.job(split={"strategy": "random", "seed": 5})
    ts = trainset.load(job, world_context)
    a = trainset.split(ts, job.spec.split.strategy, 0.2, 5)
    b = trainset.split(ts, job.spec.split.strategy, 0.2, 5)
    c = trainset.split(ts, job.spec.split.strategy, 0.2, 6)
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)


@pytest.mark.parametrize("strategy", ["time", "random"])
def test_training_set_is_the_point_in_time_join(world_context: RunContext, strategy: str) -> None:
    """The same rows `flywheel features training-set` gives, label entity column honoured."""
    from flywheel.api.featureview import FeatureView
    from flywheel.data import runner as datasets
    from flywheel.data import snapshots
    from flywheel.features import runner as features

    job = world.job(split={"strategy": strategy})
    ts = trainset.load(job, world_context)
    view = world_context.input_resource("FeatureView", "customer")
    labels_ds = world_context.input_resource("Dataset", "labels")
    assert isinstance(view, FeatureView)
    labels = snapshots.current_table(datasets.dataset_root(labels_ds, world_context))  # type: ignore[arg-type]
    direct = features.training_set(view, labels, world_context, "label_time", ["cust"])
    assert ts.table.num_rows == direct.num_rows == 600
    assert ts.table["risk"].to_pylist() == direct["risk"].to_pylist()
    assert ts.lineage["labels"]["dataset"] == "labels"
    assert ts.lineage["featureViews"][0]["offlineVersion"]
