"""Materialization: source snapshot -> feature rows -> offline version and online store.

offline   every feature row, sorted by entity and time, published as a content
          version (the same source and spec give the same version)
online    each entity's document as of `now`: its latest row's values and its window
          tiles. A new source version rebuilds every document (late rows, older
          than the watermark, can change any entity's windows) and removes entities
          the source no longer has; the same version writes the entities with rows
          newer than the watermark and not after `now`, upserted (newer wins). The
          writes are read back, and only then do the watermark and the source
          version advance (state.json, written atomically). A failed or interrupted
          run leaves them, so the next run writes the same documents again.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.api.common import duration_seconds
from flywheel.api.expressions import ExpressionError
from flywheel.api.featureview import FeatureView
from flywheel.entrypoints import RunContext
from flywheel.features import expressions, online, stores, tiles, transform
from flywheel.storage import publish


class MaterializeError(Exception):
    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Materialized:
    source_version: str
    offline_version: str
    offline_uri: str
    online_rows: int | None
    written: int
    watermark: datetime | None


def materialize(
    view: FeatureView,
    context: RunContext,
    now: datetime | None = None,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> Materialized:
    now = now or datetime.now(UTC)
    check_spec(view)
    source = stores.read_source(view, context)
    if source is None:
        name = view.spec.source.dataset_ref.name
        raise MaterializeError(
            f"Dataset {name!r} has no published snapshot yet; ingest it first", "SourceNotReady"
        )
    source_version, source_table = source
    try:
        features = transform.feature_table(source_table, view.spec)
    except transform.FeatureError as exc:
        raise MaterializeError(str(exc), "FeatureError") from None
    check_features(features, view)  # publish only what the online side can also read
    offline_version, offline_uri = publish_offline(
        view, context, features, source_version, checkpoint
    )
    checkpoint("offline")
    written, online_rows, watermark = 0, None, None
    if view.spec.online_store.enabled:
        try:
            written, online_rows, watermark = update_online(
                view, context, features, now, checkpoint, source_version
            )
        except online.StoreError as exc:
            raise MaterializeError(str(exc), "OnlineStoreUnavailable") from None
    return Materialized(
        source_version, offline_version, offline_uri, online_rows, written, watermark
    )


# Window lengths in microseconds are subtracted from int64 times: keep far from overflow.
MAX_WINDOW_MICROS = 2**62


def check_spec(view: FeatureView) -> None:
    """Expressions compile and windows fit the time arithmetic, before any row is read."""
    for feature in view.spec.features:
        if feature.expression is not None:
            try:
                expressions.compile_expression(feature.expression)
            except ExpressionError as exc:
                raise MaterializeError(f"feature {feature.name!r}: {exc}", "FeatureError") from None
        if feature.aggregation is not None:
            window = feature.aggregation.window
            if duration_seconds(window) * 1_000_000 >= MAX_WINDOW_MICROS:
                raise MaterializeError(
                    f"feature {feature.name!r}: window {window!r} is longer than timestamps "
                    "can span; use a window of at most a few thousand years",
                    "FeatureError",
                )


def check_features(features: Any, view: FeatureView) -> None:
    """The feature rows keep their join keys and a timestamp time column: a feature named
    like either, or a source time column held as text, fails before anything is published."""
    spec = view.spec
    reserved = {spec.timestamp_column, *spec.join_keys}
    clashing = sorted(f.name for f in spec.features if f.name in reserved)
    if clashing:
        raise MaterializeError(
            f"feature(s) {', '.join(clashing)} are named like the timestamp column or a join "
            "key and would replace it; rename them",
            "InvalidFeatures",
        )
    time_type = features.schema.field(spec.timestamp_column).type
    if not pa.types.is_timestamp(time_type):
        raise MaterializeError(
            f"the timestamp column {spec.timestamp_column!r} is {time_type}, not a timestamp; "
            "declare it as type timestamp in the source Dataset's schema",
            "InvalidFeatures",
        )


def publish_offline(
    view: FeatureView,
    context: RunContext,
    features: Any,
    source_version: str,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> tuple[str, str]:
    root = stores.offline_root(view, context)
    staging = publish.new_staging(root)
    try:
        target = staging.join(stores.OFFLINE_FILE)
        pq.write_table(features, target.path, filesystem=target.filesystem)
        checkpoint("offline-written")  # what the store holds now is checked against what was sent
        rows = pq.read_metadata(target.path, filesystem=target.filesystem).num_rows
        if rows != features.num_rows:
            raise MaterializeError(
                f"offline write has {rows} rows, expected {features.num_rows}", "VerifyFailed"
            )
        manifest = publish.commit(
            root,
            staging,
            salt=view.spec.model_dump_json(),
            metadata={"rows": rows, "sourceVersion": source_version},
            owner=publish.Owner("FeatureView", stores.namespace(view, context), view.name),
        )
    except BaseException:
        publish.discard(staging)
        raise
    version = str(manifest["version"])
    return version, publish.version_location(root, version).join(stores.OFFLINE_FILE).uri


def online_items(view: FeatureView, features: Any, until: int, since: int | None) -> list[Item]:
    return [
        (online.entity_key_json(key), t, online.encode(t, values, stored))
        for key, t, values, stored in tiles.documents(view.spec, features, until, since)
    ]


Item = tuple[str, int, str]


def update_online(
    view: FeatureView,
    context: RunContext,
    features: Any,
    now: datetime,
    checkpoint: publish.Checkpoint,
    source_version: str | None = None,
) -> tuple[int, int, datetime | None]:
    """Bring the online store to `now`; `source_version` None always rebuilds."""
    state_location = stores.view_root(view, context).join(stores.STATE_FILE)
    store = stores.open_online(view, context)
    state = publish.read_json(state_location) or {}
    if state.get("store") != store.identity:  # a new store starts from nothing
        state = {"store": store.identity}
    rebuild = source_version is None or state.get("source") != source_version
    watermark: int | None = None if rebuild else state.get("watermark")
    items = online_items(view, features, to_micros(now), watermark)
    try:
        store.write(items, replace=rebuild)
        if rebuild:
            kept = {k for k, _, _ in items}
            store.delete([k for k in store.entity_keys() if k not in kept])
        checkpoint("online-written")
        _verify(store, items)
        count = store.count()
    finally:
        store.close()
    if items or rebuild:
        newest = max((t for _, t, _ in items), default=None)
        if newest is not None:
            watermark = newest if watermark is None else max(watermark, newest)
        state["watermark"] = watermark
        state["source"] = source_version
        state_location.filesystem.create_dir(state_location.path.rsplit("/", 1)[0], recursive=True)
        publish.write_atomic(state_location, publish.dumps(state))
    return len(items), count, from_micros(watermark) if watermark is not None else None


def _verify(store: online.OnlineStore, items: list[tuple[str, int, str]]) -> None:
    """Every written entity now holds this event or a newer one."""
    for i in range(0, len(items), 5000):
        chunk = items[i : i + 5000]
        stored = store.event_times([k for k, _, _ in chunk])
        short = [k for (k, t, _), s in zip(chunk, stored, strict=True) if s is None or s < t]
        if short:
            raise MaterializeError(
                f"online store is missing {len(short)} written entities (e.g. {short[0]}); "
                "the watermark was not advanced",
                "OnlineWriteNotVerified",
            )


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + np.timedelta64(value, "us").item()
