"""Batch prediction: score every row of a Dataset version with a model version, to Parquet.

    flywheel predict --model <version dir URI> --dataset events [--dataset-version V] \
        --out predictions.parquet

The model is loaded by the model server's own loader (`predictor.load_predictor`), so
batch scores are exactly what the online server answers: the same preprocessing.json,
the same calibration.json. The output keeps the Dataset's non-feature columns (entity
keys, times) beside `prediction`, and says which versions made it in its metadata.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.data import snapshots
from flywheel.serving.predictor import Predictor
from flywheel.storage import publish
from flywheel.storage.uris import Location

PREDICTION = "prediction"
# The exported program takes at most this many rows per call (export.MAX_BATCH_SIZE).
CHUNK_ROWS = 1024


@dataclasses.dataclass(frozen=True)
class Snapshot:
    version: str
    table: Any  # pa.Table


def read_snapshot(root: Location, name: str, version: str | None) -> Snapshot:
    """A Dataset's published rows: `version`, or the current one."""
    if version is None:
        manifest = publish.current(root)
        if manifest is None:
            raise SystemExit(f"error: Dataset {name!r} has no snapshot under {root}; ingest it")
        version = str(manifest["version"])
    data = publish.version_location(root, version).join(snapshots.DATA_DIR)
    if not snapshots.part_files(data):
        raise SystemExit(
            f"error: Dataset {name!r} has no version {version!r} under {root}; "
            "omit --dataset-version for the current one"
        )
    return Snapshot(version, snapshots.read_parts(data))


def score_table(model: Predictor, table: Any) -> Any:
    """The table's non-feature columns and `prediction` (float32; [rows] per output)."""
    names = model.feature_names or []
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise SystemExit(
            f"error: the Dataset has no column(s) {missing} the model takes ({names}); "
            "score a Dataset that carries the model's features"
        )
    parts = []
    for start in range(0, table.num_rows, CHUNK_ROWS):
        chunk = table.slice(start, CHUNK_ROWS)
        columns = {n: _as_numpy(chunk[n]) for n in names}
        parts.append(np.asarray(model.predict_columns(columns), dtype=np.float32).reshape(-1))
    scores = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    kept = table.drop_columns([n for n in names if n in table.column_names])
    if PREDICTION in kept.column_names:
        kept = kept.drop_columns([PREDICTION])
    return kept.append_column(PREDICTION, pa.array(scores, pa.float32()))


def _as_numpy(column: Any) -> Any:
    values = column.to_pylist()
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.asarray(values, dtype=object)
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def write(table: Any, out: Location, lineage: dict[str, Any]) -> None:
    """Parquet, published whole (written beside, then renamed): a reader never sees half."""
    meta = dict(table.schema.metadata or {})
    meta[b"flywheel.lineage"] = json.dumps(lineage, sort_keys=True).encode()
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    publish.write_atomic(out, sink.getvalue().to_pybytes())
