"""A store that does not hold what was written: the run fails with its reason and
publishes nothing, and the next run publishes as if it never happened.

The loss is real: between the write and its check (the runtime's checkpoints) the test
changes what the store holds, through the store itself (a file rewritten shorter, an
entity deleted from SQLite or Redis).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flywheel.api.common import Condition
from flywheel.data import runner as datasets
from flywheel.data import snapshots
from flywheel.entrypoints import RunContext
from flywheel.features import runner, stores
from flywheel.storage import publish
from tests.components.helpers import context, dataset, write
from tests.components.test_featureview import (  # the events Dataset, ingested; Redis
    DAYS,
    START,
    ctx,  # noqa: F401
    feature_view,
    redis_secret,  # noqa: F401
)

pytestmark = pytest.mark.runtime


def ready(conditions: list[Condition]) -> Condition:
    [c] = [c for c in conditions if c.type == "Ready"]
    return c


def at(phase: str, act: Callable[[], None]) -> publish.Checkpoint:
    def checkpoint(reached: str) -> None:
        if reached == phase:
            act()

    return checkpoint


def drop_last_row(path: Path) -> None:
    """The file as a short write leaves it: readable, one row fewer."""
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)


# --- Dataset: the staged snapshot is read back before it is published -------------------


def test_a_short_staged_write_is_verify_failed_and_nothing_is_published(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x\n" + "".join(f"{i}\n" for i in range(50)))
    columns = [{"name": "x", "type": "int64"}]
    ds = dataset(
        "a", {"source": {"uri": "./a.csv", "format": "csv"}, "schema": {"columns": columns}}
    )
    run_ctx = context(tmp_path)
    root = datasets.dataset_root(ds, run_ctx)
    data_dir = Path(root.path) / publish.STAGING

    def shorten() -> None:
        [part] = [p for p in data_dir.rglob("*.parquet") if snapshots.DATA_DIR in p.parts]
        drop_last_row(part)

    failed = datasets.run_dataset(ds, run_ctx, checkpoint=at("written", shorten))
    condition = ready(failed.conditions)
    assert (failed.phase, condition.status, condition.reason) == ("Failed", "False", "VerifyFailed")
    assert "49 rows" in condition.message and "expected 50" in condition.message
    assert publish.current(root) is None
    assert failed.version is None

    again = datasets.run_dataset(ds, run_ctx)
    assert again.phase == "Ready" and again.rows == 50
    assert snapshots.current_table(root).num_rows == 50


# --- FeatureView: the offline file and the online store are read back -------------------


def test_a_short_offline_write_is_verify_failed_and_nothing_is_published(
    ctx: RunContext,  # noqa: F811
) -> None:
    view = feature_view()
    now = START + timedelta(days=DAYS + 1)
    root = stores.offline_root(view, ctx)

    def shorten() -> None:
        [part] = list((Path(root.path) / publish.STAGING).rglob(stores.OFFLINE_FILE))
        drop_last_row(part)

    failed = runner.run_featureview(view, ctx, now=now, checkpoint=at("offline-written", shorten))
    condition = ready(failed.conditions)
    assert (failed.phase, condition.reason) == ("Failed", "VerifyFailed"), condition
    assert "expected" in condition.message
    assert publish.current(root) is None
    assert runner.run_featureview(view, ctx, now=now).phase == "Ready"
    assert publish.current(root) is not None


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_an_entity_the_online_store_lost_is_not_verified_and_the_watermark_stays(
    request: pytest.FixtureRequest,
    ctx: RunContext,  # noqa: F811
    store: str,
) -> None:
    if store == "redis":
        request.getfixturevalue("redis_secret")
    view = feature_view(store=store)
    now = START + timedelta(days=DAYS + 1)
    state = Path(stores.view_root(view, ctx).join(stores.STATE_FILE).path)
    lost: list[str] = []

    def lose_one() -> None:
        other = stores.open_online(view, ctx)  # a second client of the same store
        try:
            lost.append(other.entity_keys()[0])
            other.delete(lost)
        finally:
            other.close()

    failed = runner.run_featureview(view, ctx, now=now, checkpoint=at("online-written", lose_one))
    condition = ready(failed.conditions)
    assert (failed.phase, condition.reason) == ("Failed", "OnlineWriteNotVerified"), condition
    assert "missing 1 written entities" in condition.message and lost[0] in condition.message
    assert not state.exists()  # the watermark did not move past what the store holds

    done = runner.run_featureview(view, ctx, now=now)
    assert done.phase == "Ready" and done.watermark is not None
    check = stores.open_online(view, ctx)
    try:
        assert check.read(lost) != [None]
    finally:
        check.close()
