"""Dataset status: Ready once an ingest published a version."""

from __future__ import annotations

from datetime import datetime

from flywheel.api.dataset import DatasetStatus
from flywheel_operator.status import jobrun
from flywheel_operator.status.observe import Run

REASONS = jobrun.RunReasons(
    done="Published", running="Ingesting", failed="IngestFailed", has_result="version"
)


def status(old: DatasetStatus, generation: int, run: Run, now: datetime) -> DatasetStatus:
    return jobrun.from_run(old, generation, run, now, REASONS)
