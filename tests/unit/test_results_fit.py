"""The largest realistic result of each runtime command fits a termination message.

The kubelet keeps 4096 bytes of it; a result that does not fit makes the run fail with no
result at all. Each case is what a large but ordinary run reports: long URIs, many
metrics, many features, a long failure message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flywheel import entrypoints
from flywheel.api.common import Condition, StatusBase
from flywheel.api.dataset import DatasetStatus
from flywheel.api.driftmonitor import DriftMonitorStatus
from flywheel.api.featureview import FeatureViewStatus
from flywheel.api.trainingjob import TrainingJobStatus

KUBELET_LIMIT_BYTES = 4096
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
URI = "s3://ml-artifacts-production-eu-west-1/" + "/".join(["team-churn-prediction"] * 8) + "/"
VERSION = "sha256-" + "0123456789abcdef" * 4
FEATURES = [f"customer_{kind}_{window}" for kind in (
    "avg_monthly_charges", "support_calls_count", "tenure_days_bucket", "plan_changes",
    "late_payments", "logins_per_week", "contract_remaining_days", "discount_share",
) for window in ("1d", "7d", "30d", "90d", "365d")]  # fmt: skip


def failed(status: StatusBase) -> StatusBase:
    status.phase = "Failed"
    status.conditions = [
        Condition.model_validate(
            {
                "type": "Ready",
                "status": "False",
                "reason": "IngestFailed",
                "message": "check failed: " + "plan:allowed;charges:min " * 150,
                "lastTransitionTime": NOW,
            }
        )
    ]
    return status


CASES: dict[str, Any] = {
    "dataset": lambda: DatasetStatus(
        version=VERSION, rows=10**12, bytes=10**15, bad_rows=10**9, snapshot_uri=URI + "snap",
        profile_uri=URI + "profile.json", quarantine_uri=URI + "quarantine", last_ingested=NOW,
    ),
    "dataset-failed": lambda: failed(DatasetStatus(rows=10**12, bad_rows=10**9)),
    "featureview": lambda: FeatureViewStatus(
        offline_version=VERSION, offline_uri=URI + "offline", source_version=VERSION,
        online_rows=10**10, watermark=NOW, last_materialized=NOW,
    ),
    "trainingjob": lambda: TrainingJobStatus(
        start_time=NOW, completion_time=NOW, progress="epoch 1000/1000, step 123456789",
        metrics={f"val_{name}_at_k_class_{i:02d}": 0.123456789012345 for i, name in
                 enumerate(["precision", "recall", "f1", "auc"] * 16)},
        primary_metric="auc=0.871", model_name="churn-mlp-with-a-long-descriptive-name",
        model_version=VERSION, artifact_uri=URI + "model", model_card_uri=URI + "card.md",
    ),
    "driftmonitor": lambda: DriftMonitorStatus.model_validate({
        "lastRun": NOW, "samples": 10**9, "maxScore": 0.987654321,
        "scores": [
            {"feature": f, "method": "wasserstein", "score": 0.123456789012345,
             "threshold": 0.1, "drifted": True}
            for f in FEATURES
        ],
        "driftedFeatures": FEATURES,
    }),
}  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, marks=pytest.mark.xfail(
            strict=True, raises=ValueError,
            reason="a DriftMonitor run over 40 features writes ~7 KB: no result at all",
        )) if name == "driftmonitor" else name
        for name in CASES
    ],
)  # fmt: skip
def test_largest_result_fits_a_termination_message(case: str, tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    entrypoints.write_result(path, CASES[case]())
    assert len(path.read_bytes()) <= KUBELET_LIMIT_BYTES
