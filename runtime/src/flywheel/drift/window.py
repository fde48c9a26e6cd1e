"""The live side: the deployment's sampled request log, cut to a window.

The router writes sampled requests as Parquet files anywhere under the deployment's log
location (`spec.requestLogging.uri`, or `<artifact root>/request-logs/<namespace>/<name>/`);
file names and subdirectories do not matter. Each row is one request:

    request_id      string
    time            timestamp (UTC), when the request was served
    model_version   string, the version that answered
    prediction      number or string, what it answered
    <feature>       every other column: a feature as the model received it

A window is the latest `size` requests, those of the last `duration`, or the latest
`size` among those of the last `duration`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.api.common import duration_seconds
from flywheel.api.driftmonitor import Window
from flywheel.api.modeldeployment import ModelDeployment
from flywheel.entrypoints import RunContext
from flywheel.storage import publish, uris
from flywheel.storage.uris import Location

REQUEST_ID = "request_id"
TIME = "time"
MODEL_VERSION = "model_version"
PREDICTION = "prediction"
RESERVED = (REQUEST_ID, TIME, MODEL_VERSION, PREDICTION)


@dataclasses.dataclass(frozen=True)
class Live:
    """The requests of one window, sorted by time."""

    table: Any  # pyarrow.Table
    start: datetime | None
    end: datetime | None

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)

    @property
    def features(self) -> list[str]:
        return [c for c in self.table.column_names if c not in RESERVED]

    def main_version(self) -> str | None:
        """The model version that answered most requests of the window."""
        if MODEL_VERSION not in self.table.column_names or self.rows == 0:
            return None
        counts = Counter(self.table.column(MODEL_VERSION).to_pylist())
        counts.pop(None, None)
        return counts.most_common(1)[0][0] if counts else None


def log_location(deployment_name: str, context: RunContext, namespace: str) -> Location:
    """Where the deployment's router logs sampled requests."""
    deployment = context.input_resource("ModelDeployment", deployment_name)
    if isinstance(deployment, ModelDeployment) and deployment.spec.request_logging.uri:
        return uris.resolve(deployment.spec.request_logging.uri, context.base_dir)
    path = context.artifact_root / "request-logs" / namespace / deployment_name
    return uris.resolve(str(path))


class LogError(Exception):
    """The request log cannot be read as requests; `reason` is the condition reason."""

    reason = "RequestLogUnreadable"


def read_window(
    location: Location,
    window: Window,
    now: datetime,
    columns: list[str] | None = None,
    model_version: str | None = None,
    first: bool = False,
) -> Live:
    """The window's requests up to `now` (of one model version if given).

    `first` takes the earliest window instead of the latest: where a model version's
    predictions began, the baseline its later predictions are compared with.
    """
    try:
        return _read_window(location, window, now, columns, model_version, first)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OSError) as exc:
        raise LogError(f"request log {location.uri}: {exc}") from exc


def _read_window(
    location: Location,
    window: Window,
    now: datetime,
    columns: list[str] | None,
    model_version: str | None,
    first: bool,
) -> Live:
    # Two passes: the times (and versions) of every part decide the rows; then only the
    # parts holding some of them are read, only the wanted columns. Times are compared
    # as UTC microseconds whatever unit or zone a part was written with.
    fs = location.filesystem
    parts = [location.join(f).path for f in _parquet_files(location)]
    keys = [TIME] + ([MODEL_VERSION] if model_version is not None else [])
    micros, masks = [], []
    for path in parts:
        names = pq.ParquetFile(path, filesystem=fs).schema_arrow.names
        if TIME not in names:
            raise LogError(f"request log {location.uri}: part {path} has no {TIME!r} column")
        head = pq.read_table(path, columns=[k for k in keys if k in names], filesystem=fs)
        t = _micros(head.column(TIME))
        mask = t <= _to_micros(now)
        if model_version is not None and MODEL_VERSION in names:
            same = pc.fill_null(pc.equal(head.column(MODEL_VERSION), model_version), False)
            mask &= np.asarray(same.to_numpy(), dtype=bool)
        elif model_version is not None:
            mask[:] = False
        if window.duration and not first:
            mask &= t > _to_micros(now - timedelta(seconds=duration_seconds(window.duration)))
        micros.append(t)
        masks.append(mask)
    selected = [t[m] for t, m in zip(micros, masks, strict=True)]
    chosen = np.concatenate(selected) if selected else np.empty(0, dtype=np.int64)
    low, high = -(2**63), 2**63 - 1
    if window.size and chosen.size > window.size:
        k = window.size - 1 if first else chosen.size - window.size
        cut = int(np.partition(chosen, k)[k])
        low, high = (low, cut) if first else (cut, high)
    if first and window.duration and chosen.size:
        high = min(high, int(chosen.min()) + int(duration_seconds(window.duration) * 1e6) - 1)
    tables = []
    for path, t, mask in zip(parts, micros, masks, strict=True):
        rows = mask & (t >= low) & (t <= high)
        if not rows.any():
            continue
        names = pq.ParquetFile(path, filesystem=fs).schema_arrow.names
        wanted = names if columns is None else [c for c in names if c in columns]
        part = pq.read_table(path, columns=wanted, filesystem=fs).filter(pa.array(rows))
        if TIME in part.column_names:
            index = part.column_names.index(TIME)
            part = part.set_column(index, TIME, part.column(TIME).cast(UTC_MICROS))
        tables.append(part)
    if not tables:
        return Live(pa.table({TIME: pa.array([], UTC_MICROS)}), None, None)
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.sort_by(TIME) if TIME in table.column_names else table
    if window.size and table.num_rows > window.size:  # ties at the cut-off time
        table = table.slice(0, window.size) if first else table.slice(table.num_rows - window.size)
    if table.num_rows == 0 or TIME not in table.column_names:
        return Live(table, None, None)
    bounds = pc.min_max(table.column(TIME)).as_py()
    return Live(table, bounds["min"], bounds["max"])


UTC_MICROS = pa.timestamp("us", "UTC")


def _to_micros(moment: datetime) -> int:
    return int(pa.scalar(moment, UTC_MICROS).cast(pa.int64()).as_py())


def _parquet_files(location: Location) -> list[str]:
    """Every Parquet file below, except hidden ones (`.x`, `_x`: a writer's work in progress)."""
    return [
        f
        for f in publish.list_files(location)
        if f.endswith(".parquet") and not any(p[:1] in "._" for p in f.split("/"))
    ]


def _micros(column: Any) -> np.ndarray:
    ints = pc.cast(column.cast(UTC_MICROS), pa.int64())
    return np.asarray(ints.to_numpy(zero_copy_only=False), dtype=np.int64)


def column_counts(column: Any) -> dict[str, int]:
    """A category column's value -> count (nulls left out), as text."""
    counts = pc.value_counts(column.drop_null())
    values = counts.field("values").to_pylist()
    return {str(v): int(n) for v, n in zip(values, counts.field("counts").to_pylist(), strict=True)}
