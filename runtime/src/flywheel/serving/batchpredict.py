"""Scheduled batch prediction: a FeatureView's entities scored by a model version, stored
where an application looks features up.

    flywheel batch-predict -f manifests/ --name churn --model <version dir URI>

One run of a ModelDeployment's `spec.batchPrediction`:

1. the entities: every entity the FeatureView's online store holds (or those of
   `entities.datasetRef`), with the features a lookup answers for them now (their latest
   row, windows as of now, nothing past the ttl: exactly what the router feeds the
   model online); entities without fresh features are not scored;
2. the model version's own loader (`predictor.load_predictor`) scores them, so its saved
   preprocessing and calibration apply as in the model server;
3. the predictions view (`api.modeldeployment.predictions_view`, named
   `<deployment>-predictions`, one feature `<deployment>_score`):
   - its offline store gets a content-addressed Parquet version (join keys, the time of
     the features scored, the score), staged first and committed last;
   - its online store gets one document per entity, stored at the time of the features
     scored, so a prediction expires with them (the FeatureView's ttl). Entities of an
     earlier run that this one did not score are removed.

The Parquet version is committed only after the online write is read back, so a failed
run publishes no version and reports nothing; the next run writes everything again.
The same features and model give the same version and the same documents: a run is
idempotent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.api import conditions
from flywheel.api.dataset import Dataset
from flywheel.api.featureview import FeatureView
from flywheel.api.modeldeployment import (
    BatchPredictionStatus,
    ModelDeployment,
    ModelDeploymentStatus,
    predictions_view,
    score_name,
)
from flywheel.data import runner as datasets
from flywheel.data import snapshots
from flywheel.entrypoints import RunContext
from flywheel.features import materialize, online, runner, stores
from flywheel.serving import batch, predictor
from flywheel.serving.versions import ServedVersion
from flywheel.storage import publish

BATCH_PREDICTED = "BatchPredicted"


class BatchError(Exception):
    """A run that cannot publish; `reason` is the condition's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def run(
    md: ModelDeployment, model: ServedVersion, context: RunContext, now: datetime | None = None
) -> BatchPredictionStatus:
    """One batch run; BatchError says why nothing was published."""
    spec = md.spec.batch_prediction
    if spec is None:
        raise BatchError(
            "NoBatchPrediction", f"ModelDeployment {md.name!r} has no spec.batchPrediction"
        )
    now = now or datetime.now(UTC)
    view = _feature_view(md, context)
    try:
        model_ = predictor.load_predictor(model.artifact_uri)
    except (OSError, ValueError) as exc:
        raise BatchError(
            "ModelNotFound", f"no model version {model.version} at {model.artifact_uri}: {exc}"
        ) from None
    names = model_.feature_names or [f.name for f in view.spec.features]
    missing = [n for n in names if n not in {f.name for f in view.spec.features}]
    if missing:
        raise BatchError(
            "FeaturesMissing",
            f"model {model.model_name} {model.version} takes feature(s) {missing} that "
            f"FeatureView {view.name!r} does not define; score it with a model trained on "
            "this FeatureView",
        )
    entities, rows, times, asked = _latest_features(md, view, context, now)
    if not entities:
        why = (
            "its online store holds no entity: materialize it first"
            if not asked
            else f"none of its {asked} entities has features fresher than its ttl "
            f"({view.spec.ttl}) at {now.isoformat()}: materialize newer data, or give the "
            "FeatureView a longer ttl"
        )
        raise BatchError("NoEntities", f"FeatureView {view.name!r}: nothing to score; {why}")
    table = _feature_table(view, entities, rows, names)
    scores = batch.score_table(model_, table)[batch.PREDICTION]
    score = score_name(md.name)
    out_view = predictions_view(md, view)
    keys = view.spec.join_keys
    predictions = pa.table(
        {
            **{k: table[k] for k in keys},
            view.spec.timestamp_column: pa.array(
                [materialize.from_micros(t) for t in times], pa.timestamp("us", tz="UTC")
            ),
            score: scores,
        }
    )
    lineage = {
        "deployment": md.name,
        "model": model.model_name,
        "modelVersion": model.version,
        "featureView": view.name,
    }
    version, uri = _publish(md, out_view, context, predictions, lineage, spec.output)
    return BatchPredictionStatus(
        last_run_time=now,
        model_version=model.version,
        rows=predictions.num_rows,
        output_version=version,
        output_uri=uri,
        view=out_view.name,
        score_name=score,
    )


def run_status(
    md: ModelDeployment, model: ServedVersion, context: RunContext, now: datetime | None = None
) -> ModelDeploymentStatus:
    """`run` as a status: `batchPrediction` and a BatchPredicted condition (Failed and
    the reason when nothing was published), what the command reports to the operator."""
    now = now or datetime.now(UTC)
    status = ModelDeploymentStatus(observed_generation=md.metadata.generation)
    try:
        done = run(md, model, context, now)
    except BatchError as exc:
        status.phase = "Failed"
        status.conditions = conditions.set_condition(
            [], BATCH_PREDICTED, False, exc.reason, str(exc), now
        )
        return status
    status.batch_prediction = done
    status.conditions = conditions.set_condition(
        [], BATCH_PREDICTED, True, "Published", describe(done), now
    )
    return status


def describe(done: BatchPredictionStatus) -> str:
    return (
        f"{done.rows} entities scored by version {done.model_version}: "
        f"{done.view}/{done.score_name}, Parquet version {done.output_version}"
    )


def _feature_view(md: ModelDeployment, context: RunContext) -> FeatureView:
    name = md.spec.batch_feature_view
    assert name is not None  # the spec requires one
    view = context.input_resource("FeatureView", name)
    if not isinstance(view, FeatureView):
        raise BatchError(
            "FeatureViewNotFound",
            f"spec.batchPrediction: FeatureView {name!r} is not among the inputs; give its "
            "manifest with the deployment's",
        )
    if not view.spec.online_store.enabled:
        raise BatchError(
            "OnlineStoreDisabled",
            f"FeatureView {name!r} has its online store disabled; batch prediction reads "
            "each entity's latest features from it: enable spec.onlineStore",
        )
    return view


def _latest_features(
    md: ModelDeployment, view: FeatureView, context: RunContext, now: datetime
) -> tuple[list[online.Entity], list[online.Row], list[int], int]:
    """The entities with fresh features at `now`, in key order, their features, the
    event time of the row those features come from, and how many entities were asked."""
    try:
        opened = runner.open_online_view(view, context)
    except online.StoreError as exc:
        raise BatchError("OnlineStoreUnavailable", str(exc)) from None
    try:
        wanted = _wanted_entities(md, view, context, opened.store)
        entities = [dict(zip(view.spec.join_keys, json.loads(k), strict=True)) for k in wanted]
        rows = opened.get(entities, now)
        times = opened.store.event_times(opened.keys_of(entities))
    except online.StoreError as exc:
        raise BatchError("OnlineStoreUnavailable", str(exc)) from None
    finally:
        opened.store.close()
    kept = [
        (e, r, t)
        for e, r, t in zip(entities, rows, times, strict=True)
        if r is not None and t is not None
    ]
    return [e for e, _, _ in kept], [r for _, r, _ in kept], [t for _, _, t in kept], len(wanted)


def _wanted_entities(
    md: ModelDeployment, view: FeatureView, context: RunContext, store: online.OnlineStore
) -> list[str]:
    """Entity keys (sorted): the store's, or those of `entities.datasetRef`."""
    assert md.spec.batch_prediction is not None
    ref = md.spec.batch_prediction.entities.dataset_ref
    if ref is None:
        return sorted(store.entity_keys())
    dataset = context.input_resource("Dataset", ref.name)
    if not isinstance(dataset, Dataset):
        raise BatchError(
            "EntitiesNotFound",
            f"spec.batchPrediction.entities.datasetRef: Dataset {ref.name!r} is not among "
            "the inputs; give its manifest with the deployment's",
        )
    table = snapshots.current_table(datasets.dataset_root(dataset, context))
    if table is None:
        raise BatchError(
            "EntitiesNotFound", f"Dataset {ref.name!r} has no snapshot yet; ingest it first"
        )
    keys = view.spec.join_keys
    absent = [k for k in keys if k not in table.column_names]
    if absent:
        raise BatchError(
            "EntitiesNotFound",
            f"Dataset {ref.name!r} has no column(s) {absent}; the entities to score are "
            f"read from columns named like the join keys {keys}",
        )
    columns = [table[k].to_pylist() for k in keys]
    return sorted({online.entity_key_json(v) for v in zip(*columns, strict=True)})


def _feature_table(
    view: FeatureView, entities: list[online.Entity], rows: list[online.Row], names: list[str]
) -> Any:
    columns: dict[str, Any] = {k: [e[k] for e in entities] for k in view.spec.join_keys}
    for name in names:
        columns[name] = [r.get(name) for r in rows]
    return pa.table(columns)


def _publish(
    md: ModelDeployment,
    out_view: FeatureView,
    context: RunContext,
    predictions: Any,
    lineage: dict[str, Any],
    output: Any,
) -> tuple[str | None, str | None]:
    """Parquet staged, the online store written and read back, then the version committed."""
    root = stores.offline_root(out_view, context)
    staging = publish.new_staging(root) if output.parquet else None
    try:
        if staging is not None:
            target = staging.join(stores.OFFLINE_FILE)
            meta = {b"flywheel.lineage": json.dumps(lineage, sort_keys=True).encode()}
            table = predictions.replace_schema_metadata(meta)
            pq.write_table(table, target.path, filesystem=target.filesystem)
        if output.online:
            _write_online(out_view, context, predictions)
        if staging is None:
            return None, None
        manifest = publish.commit(
            root,
            staging,
            metadata={"rows": predictions.num_rows, **lineage},
            owner=publish.Owner("ModelDeployment", stores.namespace(out_view, context), md.name),
        )
    except publish.OwnershipError as exc:
        if staging is not None:
            publish.discard(staging)
        raise BatchError("OutputOwned", str(exc)) from None
    except BaseException:
        if staging is not None:
            publish.discard(staging)
        raise
    version = str(manifest["version"])
    return version, publish.version_location(root, version).join(stores.OFFLINE_FILE).uri


def _write_online(out_view: FeatureView, context: RunContext, predictions: Any) -> None:
    spec = out_view.spec
    score = spec.features[0].name
    columns = [predictions[k].to_pylist() for k in spec.join_keys]
    times = predictions[spec.timestamp_column].to_pylist()
    scores = predictions[score].to_pylist()
    items = [
        (online.entity_key_json(key), t, online.encode(t, {score: s}))
        for key, t, s in zip(
            zip(*columns, strict=True),
            (materialize.to_micros(t) for t in times),
            scores,
            strict=True,
        )
    ]
    try:
        store = stores.open_online(out_view, context)
    except online.StoreError as exc:
        raise BatchError("OnlineStoreUnavailable", str(exc)) from None
    try:
        store.write(items, replace=True)
        kept = {k for k, _, _ in items}
        store.delete([k for k in store.entity_keys() if k not in kept])
        stored = store.event_times([k for k, _, _ in items])
        short = [k for (k, t, _), s in zip(items, stored, strict=True) if s != t]
        if short:
            raise BatchError(
                "OnlineWriteNotVerified",
                f"the online store is missing {len(short)} predictions (e.g. {short[0]})",
            )
    except online.StoreError as exc:
        raise BatchError("OnlineStoreUnavailable", str(exc)) from None
    finally:
        store.close()
