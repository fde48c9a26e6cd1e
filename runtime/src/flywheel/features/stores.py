"""Where a FeatureView's data lives, and opening its stores.

<artifact root>/featureviews/<namespace>/<name>/
    offline/            versioned Parquet (storage.publish layout), or spec.offlineStore.uri
    online.sqlite       the embedded online store, or spec.onlineStore.path
    state.json          the materialization watermark, committed after a verified write
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from flywheel.api.dataset import Dataset, DatasetStatus
from flywheel.api.featureview import FeatureView, OnlineStoreType
from flywheel.data import snapshots
from flywheel.entrypoints import REDIS_URL_ENV, RunContext
from flywheel.features import online
from flywheel.storage import credentials, publish, uris
from flywheel.storage.uris import Location

OFFLINE_FILE = "features.parquet"
STATE_FILE = "state.json"


def namespace(view: FeatureView, context: RunContext) -> str:
    return view.metadata.namespace or context.namespace


def view_root(view: FeatureView, context: RunContext) -> Location:
    path = context.artifact_root / "featureviews" / namespace(view, context) / view.name
    return uris.resolve(str(path))


def offline_root(view: FeatureView, context: RunContext) -> Location:
    if view.spec.offline_store.uri:
        return uris.resolve(view.spec.offline_store.uri, context.base_dir)
    return view_root(view, context).join("offline")


def source_root(view: FeatureView, context: RunContext) -> Location:
    name = view.spec.source.dataset_ref.name
    resource = context.input_resource("Dataset", name)
    if isinstance(resource, Dataset):
        from flywheel.data import runner as datasets  # ingest's modules: only to find a root

        return datasets.dataset_root(resource, context)
    path = context.artifact_root / "datasets" / namespace(view, context) / name
    return uris.resolve(str(path))


def read_source(view: FeatureView, context: RunContext) -> tuple[str, Any] | None:
    """(version, table) of the source Dataset's snapshot, or None.

    The version its status names when known (the run that just ingested it, or the
    operator's inputs), else the current one under its root.
    """
    status = context.input_status("Dataset", view.spec.source.dataset_ref.name)
    if isinstance(status, DatasetStatus) and status.snapshot_uri and status.version:
        data = uris.resolve(status.snapshot_uri, context.base_dir)
        return status.version, snapshots.read_parts(data)
    root = source_root(view, context)
    manifest = publish.current(root)
    if manifest is None:
        return None
    return manifest["version"], snapshots.current_table(root)


def read_offline(view: FeatureView, context: RunContext) -> tuple[str, Any] | None:
    """(version, feature table sorted by entity and time) of the current offline version."""
    root = offline_root(view, context)
    manifest = publish.current(root)
    if manifest is None:
        return None
    data = publish.version_location(root, manifest["version"]).join(OFFLINE_FILE)
    return manifest["version"], read_table(data)


def read_table(location: Location) -> Any:
    """A Parquet file as a table. A local file is memory-mapped: Arrow reads the page
    cache in place instead of copying it through read buffers, several times less CPU
    for the offline table a training set reads whole. A local file is read through its
    own reader, which skips the dataset layer (and its import) a single file needs not."""
    if isinstance(location.filesystem, pafs.LocalFileSystem):
        if os.path.isfile(location.path):
            return pq.ParquetFile(location.path, memory_map=True).read()
        return pq.read_table(location.path, memory_map=True)
    return pq.read_table(location.path, filesystem=location.filesystem)


class ParquetColumns:
    """A local Parquet file whose columns are decoded one at a time, when asked for.

    Has the part of a table's interface a training set uses (`column`, `[name]`,
    `schema`, `num_rows`, `column_names`). A training set keeps a few values of each
    feature column: decoded one by one, each column's memory is reused by the next
    instead of the whole table being held at once, which halves the peak memory and
    the kernel's work of handing out fresh pages. Safe to use from several threads.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._metadata = pq.ParquetFile(path, memory_map=True).metadata
        self.schema = self._metadata.schema.to_arrow_schema()
        self.num_rows = self._metadata.num_rows
        self.column_names = self.schema.names

    def column(self, name: str) -> Any:
        if name not in self.column_names:
            raise KeyError(f"the table has no column {name!r}")
        reader = pq.ParquetFile(self.path, memory_map=True, metadata=self._metadata)
        return reader.read(columns=[name], use_threads=False).column(0)

    def __getitem__(self, name: str) -> Any:
        return self.column(name)


def read_columns(location: Location) -> Any:
    """A Parquet file whose columns are read as they are used: a `ParquetColumns` for a
    local file, the whole table elsewhere (both answer `column(name)` alike)."""
    if isinstance(location.filesystem, pafs.LocalFileSystem) and os.path.isfile(location.path):
        return ParquetColumns(location.path)
    return read_table(location)


def write_table(table: Any, path: str | Path) -> None:
    """A training set (or any feature table) as one Parquet file. Floating-point columns
    are written without a dictionary: measured values are nearly all distinct, so Arrow
    would build one only to give it up, at twice the cost of the write."""
    dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
    pq.write_table(table, str(path), use_dictionary=dictionary)


def open_offline(view: FeatureView, context: RunContext) -> tuple[str, Any] | None:
    """(version, feature columns sorted by entity and time) of the current offline
    version, read as they are used (`read_columns`): what a training set reads."""
    root = offline_root(view, context)
    manifest = publish.current(root)
    if manifest is None:
        return None
    data = publish.version_location(root, manifest["version"]).join(OFFLINE_FILE)
    return manifest["version"], read_columns(data)


def offline_schema(view: FeatureView, context: RunContext) -> Any:
    """The Arrow schema of the current offline version (its footer only), or None."""
    root = offline_root(view, context)
    manifest = publish.current(root)
    if manifest is None:
        return None
    data = publish.version_location(root, manifest["version"]).join(OFFLINE_FILE)
    return pq.read_schema(data.path, filesystem=data.filesystem)


def open_online(view: FeatureView, context: RunContext) -> online.OnlineStore:
    store = view.spec.online_store
    ns = namespace(view, context)
    if store.type == OnlineStoreType.REDIS:
        return online.RedisStore(redis_url(view), f"{ns}/{view.name}")
    if store.path:
        path = uris.resolve(store.path, context.base_dir).path
    else:
        path = view_root(view, context).join("online.sqlite").path
    return online.SQLiteStore(Path(path), f"fv_{ns}_{view.name}")


def redis_url(view: FeatureView) -> str:
    """$FLYWHEEL_REDIS_URL, else the mounted connection secret."""
    if os.environ.get(REDIS_URL_ENV):
        return os.environ[REDIS_URL_ENV]
    ref = view.spec.online_store.connection_secret_ref
    assert ref is not None  # the model requires it for redis
    path = credentials.secret_path(ref.name, ref.key)
    try:
        return path.read_text().strip()
    except OSError:
        raise online.StoreError(
            f"the redis URL secret {ref.name}/{ref.key} is not at {path}; mount it, or set "
            f"${REDIS_URL_ENV}"
        ) from None
