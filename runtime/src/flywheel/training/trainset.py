"""The training set of a TrainingJob and its split.

Labels (one row per entity and time) come from the label Dataset's snapshot; each
FeatureView adds its point-in-time correct features through the same join as
`flywheel features training-set`. `split.window` keeps only the newest labels (a retrain
after a change in the world learns from what came after it). The split is by time (the
newest rows are the test set, so nothing is learnt from the future) or random with a seed.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.api.common import duration_seconds
from flywheel.api.dataset import Dataset, DatasetStatus
from flywheel.api.featureview import FeatureView, FeatureViewStatus
from flywheel.api.trainingjob import SplitStrategy, TrainingJob
from flywheel.data import runner as datasets
from flywheel.data import snapshots
from flywheel.entrypoints import RunContext
from flywheel.features import pit, stores
from flywheel.features import runner as features
from flywheel.storage import publish, uris
from flywheel.training.errors import TrainingError

# Of the training split, the newest (or a random) share held out for early stopping.
VALIDATION_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    table: Any  # pa.Table: labels, entity and time columns, then the features
    features: list[str]
    label: str
    time_column: str
    lineage: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Split:
    train: Any  # np.ndarray of row indices
    validation: Any
    test: Any


def load(job: TrainingJob, context: RunContext) -> TrainingSet:
    spec = job.spec
    label = spec.label
    labels, label_lineage = _labels(job, context)
    missing = [
        c
        for c in [label.column, label.timestamp_column, *label.entity_columns]
        if c not in labels.column_names
    ]
    if missing:
        raise TrainingError(
            "LabelColumnMissing",
            f"the label Dataset {label.dataset_ref.name!r} has no column(s) {missing}; "
            f"it has {labels.column_names}",
        )
    if labels.num_rows == 0:
        raise TrainingError(
            "EmptyTrainingWindow", f"the label Dataset {label.dataset_ref.name!r} has no rows"
        )
    keep = [label.column, label.timestamp_column, *label.entity_columns]
    table = labels.select(list(dict.fromkeys(keep)))
    table = table.filter(pc.is_valid(table[label.column]))
    if table.num_rows == 0:
        raise TrainingError(
            "LabelColumnMissing", f"every value of the label column {label.column!r} is null"
        )
    if spec.split.window is not None:
        table = newest(table, label.timestamp_column, spec.split.window)
    names: list[str] = []
    lineage: dict[str, Any] = {"labels": label_lineage, "featureViews": []}
    for ref in spec.feature_view_refs:
        view = context.input_resource("FeatureView", ref.name)
        if not isinstance(view, FeatureView):
            raise TrainingError(
                "FeatureViewNotFound", f"FeatureView {ref.name!r} is not among the inputs"
            )
        columns = [f.name for f in view.spec.features]
        clash = sorted(set(columns) & (set(names) | set(table.column_names)))
        if clash:
            raise TrainingError(
                "FeatureNameClash",
                f"FeatureView {ref.name!r} repeats column(s) {clash} of the labels or an "
                "earlier FeatureView",
            )
        try:
            table = features.training_set_for_label(view, table, context, label)
        except LookupError as exc:
            raise TrainingError("FeatureViewNotMaterialized", str(exc)) from None
        names += columns
        lineage["featureViews"].append(_view_lineage(view, context))
    joined = _rows_with_any_feature(table, names)
    if int(pc.sum(joined).as_py() or 0) == 0:
        raise TrainingError(
            "NoJoinableRows",
            f"none of the {table.num_rows} label rows has a feature row of its entity at or "
            f"before its time (within the ttl): check {label.entity_columns} and "
            f"{label.timestamp_column!r} against the FeatureView(s)",
        )
    table = table.filter(joined)
    times = table[label.timestamp_column]
    lineage["labelWindow"] = {
        "from": pc.min(times).as_py().isoformat(),
        "to": pc.max(times).as_py().isoformat(),
        "rows": table.num_rows,
    }
    return TrainingSet(table, names, label.column, label.timestamp_column, lineage)


def newest(table: Any, time_column: str, window: str) -> Any:
    """The rows of the last `window` up to the newest row's time (`split.window`)."""
    times = table[time_column]
    latest = pc.max(times)
    cutoff = pa.scalar(latest.as_py() - timedelta(seconds=duration_seconds(window)), latest.type)
    return table.filter(pc.greater(times, cutoff))


def split(
    ts: TrainingSet,
    strategy: SplitStrategy,
    test_fraction: float,
    seed: int,
    stratify: bool = False,
) -> Split:
    """Row indices of train, validation and test; raises if any part would be empty.

    `stratify` (random only) splits each class on its own, so each part keeps the class
    shares of the whole: a rare class is never missing from the test set by chance.
    """
    n = ts.table.num_rows
    if stratify:
        y = label_values(ts, np.arange(n))
        if not np.isin(y, (0.0, 1.0)).all():
            raise TrainingError(
                "StratifyNeedsClasses",
                f"split.stratify needs a 0/1 label; {ts.label!r} has other values: set "
                "split.stratify to false",
            )
        groups = [np.flatnonzero(y == c) for c in (0.0, 1.0)]
    else:
        groups = [np.arange(n)]
    rng = np.random.default_rng(seed)
    pieces = [_cut(_order(ts, rows, strategy, rng), test_fraction) for rows in groups]
    parts = Split(*(np.concatenate([p[i] for p in pieces]) for i in range(3)))
    if min(len(parts.train), len(parts.validation), len(parts.test)) == 0:
        raise TrainingError(
            "EmptyTrainingWindow",
            f"{n} joinable label rows are too few to split into train, validation and a "
            f"test fraction of {test_fraction}",
        )
    return parts


def _order(ts: TrainingSet, rows: Any, strategy: SplitStrategy, rng: Any) -> Any:
    if strategy == SplitStrategy.TIME:
        times = pit.micros(ts.table[ts.time_column])[rows]
        return rows[np.argsort(times, kind="stable")]
    return rows[rng.permutation(len(rows))]


def _cut(order: Any, test_fraction: float) -> tuple[Any, Any, Any]:
    n_test = round(len(order) * test_fraction)
    n_fit = len(order) - n_test
    n_val = round(n_fit * VALIDATION_FRACTION)
    return order[: n_fit - n_val], order[n_fit - n_val : n_fit], order[n_fit:]


def label_values(ts: TrainingSet, rows: Any) -> Any:
    column = ts.table[ts.label].combine_chunks().take(pa.array(rows))
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _labels(job: TrainingJob, context: RunContext) -> tuple[Any, dict[str, Any]]:
    name = job.spec.label.dataset_ref.name
    status = context.input_status("Dataset", name)
    if isinstance(status, DatasetStatus) and status.snapshot_uri and status.version:
        data = uris.resolve(status.snapshot_uri, context.base_dir)
        return snapshots.read_parts(data), {"dataset": name, "version": status.version}
    resource = context.input_resource("Dataset", name)
    if isinstance(resource, Dataset):
        root = datasets.dataset_root(resource, context)
    else:
        namespace = job.metadata.namespace or context.namespace
        root = uris.resolve(str(context.artifact_root / "datasets" / namespace / name))
    manifest = publish.current(root)
    table = snapshots.current_table(root)
    if manifest is None or table is None:
        raise TrainingError(
            "LabelsNotIngested", f"the label Dataset {name!r} has no snapshot; ingest it first"
        )
    return table, {"dataset": name, "version": manifest["version"]}


def _view_lineage(view: FeatureView, context: RunContext) -> dict[str, Any]:
    status = context.input_status("FeatureView", view.name)
    offline = publish.current(stores.offline_root(view, context))
    out: dict[str, Any] = {
        "featureView": view.name,
        "offlineVersion": offline["version"] if offline else None,
        "source": view.spec.source.dataset_ref.name,
    }
    if isinstance(status, FeatureViewStatus):
        out["sourceVersion"] = status.source_version
    elif offline:
        out["sourceVersion"] = offline.get("sourceVersion")
    return out


def _rows_with_any_feature(table: Any, names: list[str]) -> Any:
    valid = pc.is_valid(table[names[0]])
    for name in names[1:]:
        valid = pc.or_(valid, pc.is_valid(table[name]))
    return valid
