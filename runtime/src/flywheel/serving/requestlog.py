"""Sampled request logging to Parquet, for drift and training/serving skew checks.

    <uri>/<deployment>/date=2026-11-29/part-<unix micros>-<random>.parquet
      request_id: string, time: timestamp[us, UTC], model_version: string,
      prediction: double (list<double> for a model with several outputs),
      <feature>: one column per feature, as the request gave it
      <join key>: the entity's keys, when the request asked by entity (for skew checks)

This is the schema the DriftMonitor reads (`flywheel.drift.window`). A feature named like
one of the four reserved columns is logged as `feature_<name>`.

Rows are buffered and written by a thread a file at a time, each file written beside
its final name and renamed (`storage.publish.write_atomic`), so a reader never sees a
partial file. Logging never fails a request: a write error is counted and dropped.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

RESERVED = ("request_id", "time", "model_version", "prediction")


class RequestLog:
    def __init__(
        self, uri: str, deployment: str, sample_rate: float, max_rows: int = 10_000
    ) -> None:
        self.uri = uri
        self.deployment = deployment
        self.sample_rate = sample_rate
        self.max_rows = max_rows
        self.rows: list[dict[str, Any]] = []
        self.dropped = 0
        self.failed = 0
        self.written = 0
        self._lock = threading.Lock()

    def sampled(self, u: float) -> bool:
        return u < self.sample_rate

    def add(
        self,
        request_id: str,
        version: str,
        features: Sequence[Mapping[str, Any]],
        predictions: Sequence[Sequence[float]],
    ) -> None:
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            for row, prediction in zip(features, predictions, strict=False):
                if len(self.rows) >= self.max_rows:
                    self.dropped += 1
                    continue
                scores = [float(p) for p in prediction]
                logged = {f"feature_{k}" if k in RESERVED else k: v for k, v in row.items()}
                logged.update(
                    request_id=request_id,
                    time=now,
                    model_version=version,
                    prediction=scores[0] if len(scores) == 1 else scores,
                )
                self.rows.append(logged)

    def flush(self) -> str | None:
        """Write the buffered rows as one Parquet file; its URI, or None if none."""
        with self._lock:
            rows, self.rows = self.rows, []
        if not rows:
            return None
        try:
            return self._write(rows)
        except Exception:
            self.failed += len(rows)
            return None

    def _write(self, rows: list[dict[str, Any]]) -> str:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from flywheel.storage import publish, uris

        table = pa.Table.from_pylist(rows)
        sink = io.BytesIO()
        pq.write_table(table, sink)
        day = rows[0]["time"].strftime("%Y-%m-%d")
        name = f"part-{int(rows[0]['time'].timestamp() * 1e6)}-{uuid.uuid4().hex[:8]}.parquet"
        location = uris.resolve(self.uri).join(self.deployment, f"date={day}", name)
        parent = location.path.rsplit("/", 1)[0]
        location.filesystem.create_dir(parent, recursive=True)
        publish.write_atomic(location, sink.getvalue())
        self.written += len(rows)
        return location.uri
