"""FeatureView status: Ready once a materialization finished."""

from __future__ import annotations

from datetime import datetime

from flywheel.api.featureview import FeatureViewStatus
from flywheel_operator.status import jobrun
from flywheel_operator.status.observe import Run

REASONS = jobrun.RunReasons(
    done="Materialized",
    running="Materializing",
    failed="MaterializationFailed",
    has_result="last_materialized",
)


def status(old: FeatureViewStatus, generation: int, run: Run, now: datetime) -> FeatureViewStatus:
    return jobrun.from_run(old, generation, run, now, REASONS)
