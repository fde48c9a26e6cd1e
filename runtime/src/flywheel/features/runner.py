"""The FeatureView entrypoints: materialize, training sets, online lookups.

`run_featureview` is what `flywheel run` and `flywheel features materialize` (a Job in
a cluster) call; `training_set` and `get_online_features` are the Python API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flywheel import redaction
from flywheel.api import conditions
from flywheel.api.featureview import FeatureView, FeatureViewStatus
from flywheel.api.trainingjob import LabelSource
from flywheel.entrypoints import RunContext
from flywheel.features import asof, materialize, online, serving, stores
from flywheel.storage import publish


def run_featureview(
    view: FeatureView,
    context: RunContext,
    now: datetime | None = None,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> FeatureViewStatus:
    now = now or datetime.now(UTC)
    previous = view.status or FeatureViewStatus()
    generation = view.metadata.generation
    try:
        done = materialize.materialize(view, context, now, checkpoint)
    except (materialize.MaterializeError, publish.OwnershipError) as exc:
        status = previous.model_copy()
        status.phase = "Failed"
        status.conditions = conditions.set_condition(
            previous.conditions,
            "Ready",
            False,
            exc.reason,
            redaction.condition_message(str(exc)),
            now,
            generation,
        )
        return status
    online_note = (
        f"; online: {done.written} entities updated, {done.online_rows} stored"
        if done.online_rows is not None
        else "; online store disabled"
    )
    return FeatureViewStatus(
        observed_generation=generation,
        phase="Ready",
        offline_version=done.offline_version,
        offline_uri=done.offline_uri,
        source_version=done.source_version,
        online_rows=done.online_rows,
        watermark=done.watermark,
        last_materialized=now,
        conditions=conditions.set_condition(
            previous.conditions,
            "Ready",
            True,
            "Materialized",
            f"offline version {done.offline_version} from source {done.source_version}"
            + online_note,
            now,
            generation,
        ),
    )


def training_set(
    view: FeatureView,
    labels: Any,
    context: RunContext,
    label_time_column: str,
    label_entity_columns: list[str] | None = None,
) -> Any:
    """`labels` plus the point-in-time correct features of the current offline version.

    The labels hold a time column and the entity: in columns named like the view's join
    keys, or in `label_entity_columns` (in join-key order), as a TrainingJob's
    `label.entityColumns` names them.
    """
    offline = stores.open_offline(view, context)
    if offline is None:
        raise LookupError(f"FeatureView {view.name!r} has no offline version; materialize it")
    _, features = offline
    return asof.training_set(labels, features, view.spec, label_time_column, label_entity_columns)


def training_set_for_label(
    view: FeatureView, labels: Any, context: RunContext, label: LabelSource
) -> Any:
    """The training set of a TrainingJob's `label`: its entity and timestamp columns."""
    return training_set(view, labels, context, label.timestamp_column, label.entity_columns)


def open_online_view(view: FeatureView, context: RunContext) -> serving.OnlineView:
    schema = stores.offline_schema(view, context)
    kinds = (
        {k: serving.key_kind(schema.field(k).type) for k in view.spec.join_keys}
        if schema is not None
        else {}
    )
    return serving.OnlineView(view, stores.open_online(view, context), kinds)


def get_online_features(
    view: FeatureView,
    entities: Sequence[online.Entity],
    context: RunContext,
    now: datetime | None = None,
) -> list[online.Row | None]:
    """Per entity: the features the point-in-time join gives for a label at `now`."""
    opened = open_online_view(view, context)
    try:
        return opened.get(entities, now)
    finally:
        opened.store.close()
