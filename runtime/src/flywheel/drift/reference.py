"""The reference a DriftMonitor compares with, prepared once per reference version.

    datasetRef       the Dataset's current snapshot: its profile (column kinds, category
                     counts) and its numeric columns
    featureViewRef   the FeatureView's current offline version: its feature columns
    trainingJobRef   the FeatureViews the TrainingJob names, as above
    servingVersion   the training split of the version that answered most of the window:
                     `reference.parquet` of its registry version, found from the
                     deployment's model references (the registry layout of runtime/README.md)

Preparing sorts every numeric column and computes its decile bins; the result is kept
under `<artifact root>/drift/references/<namespace>/<Kind>-<name>/<version>/`, so that a
scheduled run reads a few arrays instead of a snapshot, and in memory for the process.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from flywheel.api.dataset import Dataset
from flywheel.api.driftmonitor import DriftMonitor
from flywheel.api.featureview import FeatureView
from flywheel.api.modeldeployment import ModelDeployment
from flywheel.api.trainingjob import TrainingJob
from flywheel.data import profile, snapshots
from flywheel.data import runner as datasets
from flywheel.drift import stats, workers
from flywheel.drift.compare import CATEGORICAL, NUMERIC, ColumnReference
from flywheel.entrypoints import RunContext
from flywheel.features import stores
from flywheel.storage import publish, uris
from flywheel.storage.uris import Location

# Bump when the prepared layout or its numbers change: old caches are then ignored.
CACHE_FORMAT = f"v1-bins{stats.DEFAULT_BINS}"
# Numeric reference values kept per column; above it, evenly spaced order statistics
# (a quantile sketch accurate to 1/limit in CDF, far below any KS alarm level).
REFERENCE_LIMIT = 2_000_000

# The registry layout's names (flywheel.training.registry writes them; a layer apart).
TRAINING_REFERENCE = "reference.parquet"

_MEMORY: dict[str, Reference] = {}


class ReferenceError(Exception):
    """The reference cannot be read; `reason` is the condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True, eq=False)
class Reference:
    version: str  # e.g. "Dataset/customer-events@3f2a..."
    columns: dict[str, ColumnReference]


def load(
    monitor: DriftMonitor, context: RunContext, serving_version: str | None = None
) -> Reference:
    """The monitor's reference, prepared (from the cache when this version was before).

    `serving_version`: the model version that answered most of the window, which a
    servingVersion reference compares with."""
    namespace = monitor.metadata.namespace or context.namespace
    target = monitor.spec.reference.target()
    if target is None:
        return _serving(monitor, context, namespace, serving_version)
    kind, name = target
    if kind == "Dataset":
        return _dataset(_input(context, Dataset, name), context, namespace)
    if kind == "FeatureView":
        return _featureview(_input(context, FeatureView, name), context, namespace)
    job = _input(context, TrainingJob, name)
    parts = [
        _featureview(_input(context, FeatureView, ref.name), context, namespace)
        for ref in job.spec.feature_view_refs
    ]
    columns: dict[str, ColumnReference] = {}
    for part in parts:
        columns.update(part.columns)
    versions = ", ".join(p.version for p in parts)
    return Reference(version=f"TrainingJob/{name} via {versions}", columns=columns)


def _serving(
    monitor: DriftMonitor, context: RunContext, namespace: str, version: str | None
) -> Reference:
    if version is None:
        raise ReferenceError(
            "NoServingVersion",
            "reference.servingVersion: no request of the window names a model version yet",
        )
    model, where = _registry_version(monitor, context, version)
    label = f"ModelVersion/{model}@{version}"
    source = where.join(TRAINING_REFERENCE)

    def build() -> dict[str, ColumnReference]:
        if source.filesystem.get_file_info(source.path).type == pafs.FileType.NotFound:
            raise ReferenceError(
                "ReferenceNotRecorded",
                f"{label} was registered without {TRAINING_REFERENCE} (before versions kept "
                "their training reference): retrain it, or name the reference by "
                "trainingJobRef",
            )
        return prepare(pq.read_table(source.path, filesystem=source.filesystem))

    return _cached(context, namespace, f"ModelVersion-{model}", version, label, build)


def _registry_version(
    monitor: DriftMonitor, context: RunContext, version: str
) -> tuple[str, Location]:
    """(model name, directory) of `version` among the registries the deployment's model
    references point at; the artifact root's registry when they name no other."""
    roots = _model_roots(monitor, context)
    for model, root in roots.items():
        where = publish.version_location(root, version)
        if where.filesystem.get_file_info(where.join(publish.MANIFEST).path).type != (
            pafs.FileType.NotFound
        ):
            return model, where
    searched = ", ".join(r.uri for r in roots.values()) or "no registry"
    raise ReferenceError(
        "ServingVersionNotFound",
        f"reference.servingVersion: model version {version!r}, which serves the window, is "
        f"not a registered version under {searched}",
    )


def _model_roots(monitor: DriftMonitor, context: RunContext) -> dict[str, Location]:
    deployment = context.input_resource("ModelDeployment", monitor.spec.deployment_ref.name)
    roots: dict[str, Location] = {}
    if not isinstance(deployment, ModelDeployment):
        return roots
    for ref in (deployment.spec.stable, deployment.spec.candidate):
        if ref is None:
            continue
        if ref.model_name is not None:
            roots.setdefault(ref.model_name, _default_root(context, ref.model_name))
        elif ref.training_job_ref is not None:
            job = context.input_resource("TrainingJob", ref.training_job_ref.name)
            if isinstance(job, TrainingJob):
                name, registry = job.spec.output.model_name, job.spec.output.registry_uri
                root = (
                    uris.resolve(registry, context.base_dir).join("models", name)
                    if registry
                    else _default_root(context, name)
                )
                roots.setdefault(name, root)
    return roots


def _default_root(context: RunContext, model: str) -> Location:
    return uris.resolve(str(context.artifact_root / "models" / model))


def _input(context: RunContext, model: type[Any], name: str) -> Any:
    found = context.input_resource(model.kind_name, name)
    if not isinstance(found, model):
        raise ReferenceError(
            "ReferenceNotFound", f"{model.kind_name} {name!r} is not among the monitor's inputs"
        )
    return found


def _dataset(dataset: Dataset, context: RunContext, namespace: str) -> Reference:
    root = datasets.dataset_root(dataset, context)
    manifest = publish.current(root)
    if manifest is None:
        raise ReferenceError(
            "ReferenceNotReady", f"Dataset {dataset.name!r} has no snapshot; ingest it first"
        )
    version = manifest["version"]
    label = f"Dataset/{dataset.name}@{version}"

    def build() -> dict[str, ColumnReference]:
        location = publish.version_location(root, version)
        profiled = publish.read_json(location.join(snapshots.PROFILE_FILE)) or {}
        kinds = profiled.get("columns", {})
        numeric = [c for c, p in kinds.items() if p.get("kind") == "numeric"]
        out: dict[str, ColumnReference] = {}
        if numeric:
            out = prepare(snapshots.read_parts(location.join(snapshots.DATA_DIR), numeric))
        for name, p in kinds.items():
            if p.get("kind") == "categorical" and "top" in p:
                counts = {str(t["value"]): int(t["count"]) for t in p["top"]}
                counts[stats.OTHER] = int(p.get("other", 0))
                out[name] = ColumnReference(
                    name, CATEGORICAL, categorical=stats.categorical_reference(counts)
                )
        return out

    return _cached(context, namespace, f"Dataset-{dataset.name}", version, label, build)


def _featureview(view: FeatureView, context: RunContext, namespace: str) -> Reference:
    root = stores.offline_root(view, context)
    manifest = publish.current(root)
    if manifest is None:
        raise ReferenceError(
            "ReferenceNotReady", f"FeatureView {view.name!r} has no offline version; materialize it"
        )
    version = manifest["version"]
    label = f"FeatureView/{view.name}@{version}"

    def build() -> dict[str, ColumnReference]:
        offline = stores.read_offline(view, context)
        if offline is None:  # replaced between the two reads: prepare the next run
            raise ReferenceError("ReferenceNotReady", f"{label} went away while being read")
        names = [f.name for f in view.spec.features]
        table = offline[1]
        return prepare(table.select([n for n in names if n in table.column_names]))

    return _cached(context, namespace, f"FeatureView-{view.name}", version, label, build)


def prepare(table: Any) -> dict[str, ColumnReference]:
    """Every numeric and categorical column of an Arrow table, prepared.

    Identifier-like text columns (most values distinct) and other types are left out.
    """

    def column(name: str) -> ColumnReference | None:
        values = table.column(name)
        kind = profile.column_kind(values.type)
        if kind == NUMERIC:
            return ColumnReference(
                name, NUMERIC, numeric=stats.numeric_reference(_limited(numbers(values)))
            )
        if kind == CATEGORICAL:
            p = profile.categorical_profile(values)
            if "top" not in p:
                return None
            counts = {str(t["value"]): int(t["count"]) for t in p["top"]}
            counts[stats.OTHER] = int(p["other"])
            return ColumnReference(
                name, CATEGORICAL, categorical=stats.categorical_reference(counts)
            )
        return None

    # Columns are prepared side by side: sorting one releases the GIL for the others.
    prepared = workers.map_features(column, table.column_names)
    return {c.name: c for c in prepared if c is not None}


def numbers(column: Any) -> np.ndarray:
    """An Arrow numeric column as float64, nulls as NaN (which every test leaves out)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values: np.ndarray = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return values


def _limited(values: np.ndarray) -> np.ndarray:
    finite: np.ndarray = values[np.isfinite(values)]
    if finite.size <= REFERENCE_LIMIT:
        return finite
    finite.sort()
    return finite[np.linspace(0, finite.size - 1, REFERENCE_LIMIT).round().astype(np.int64)]


# --- the cache -----------------------------------------------------------------------


def cache_directory(context: RunContext, namespace: str, owner: str, version: str) -> Path:
    return context.artifact_root / "drift" / "references" / namespace / owner / version


def _cached(
    context: RunContext,
    namespace: str,
    owner: str,
    version: str,
    label: str,
    build: Any,
) -> Reference:
    directory = cache_directory(context, namespace, owner, version) / CACHE_FORMAT
    key = str(directory)
    if key in _MEMORY:
        return _MEMORY[key]
    columns = _read(directory)
    if columns is None:
        columns = build()
        _write(directory, columns)
    reference = Reference(version=label, columns=columns)
    _MEMORY[key] = reference
    return reference


def _write(directory: Path, columns: dict[str, ColumnReference]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for i, (name, column) in enumerate(columns.items()):
        if column.numeric is not None:
            index[name] = {"kind": NUMERIC, "slot": i}
            arrays.update({f"{i}.{k}": v for k, v in column.numeric.arrays().items()})
        elif column.categorical is not None:
            counts = column.categorical.counts.tolist()
            index[name] = {
                "kind": CATEGORICAL,
                "counts": dict(zip(column.categorical.categories, counts, strict=True)),
            }
    # The arrays first, the index last: a reader that finds the index finds the arrays.
    tmp = directory / f".numeric.{os.getpid()}.npz"
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, directory / "numeric.npz")
    publish.write_atomic(uris.resolve(str(directory / "columns.json")), json.dumps(index).encode())


def _read(directory: Path) -> dict[str, ColumnReference] | None:
    index_file = directory / "columns.json"
    if not index_file.exists():
        return None
    index = json.loads(index_file.read_text())
    out: dict[str, ColumnReference] = {}
    with np.load(directory / "numeric.npz") as npz:
        for name, entry in index.items():
            if entry["kind"] == NUMERIC:
                prefix = f"{entry['slot']}."
                arrays = {k[len(prefix) :]: npz[k] for k in npz.files if k.startswith(prefix)}
                out[name] = ColumnReference(
                    name, NUMERIC, numeric=stats.NumericReference.from_arrays(arrays)
                )
            else:
                out[name] = ColumnReference(
                    name,
                    CATEGORICAL,
                    categorical=stats.categorical_reference(entry["counts"]),
                )
    return out
