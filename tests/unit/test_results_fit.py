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
from flywheel.api.driftmonitor import DriftMonitorStatus, Verdict
from flywheel.api.featureview import FeatureViewStatus
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel.drift import runner as drift_runner
from flywheel.drift.commands import fits_result

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
             "threshold": 0.1, "verdict": "Drift", "drifted": True}
            for f in FEATURES
        ],
        "driftedFeatures": FEATURES,
    }),
}  # fmt: skip


# What each command writes: `flywheel drift run` drops the least telling scores first (the
# full list is in its report), since a scored feature costs ~100 bytes.
WRITTEN: dict[str, Any] = {"driftmonitor": lambda s: drift_runner.fit_result(s, fits_result)}


@pytest.mark.parametrize("case", list(CASES))
def test_largest_result_fits_a_termination_message(case: str, tmp_path: Path) -> None:
    path = tmp_path / "termination-log"
    status = CASES[case]()
    entrypoints.write_result(path, WRITTEN.get(case, lambda s: s)(status))
    assert len(path.read_bytes()) <= KUBELET_LIMIT_BYTES


def test_a_drift_result_too_large_keeps_the_drifted_scores_first() -> None:
    status = CASES["driftmonitor"]()
    for score in status.scores[::2]:
        score.verdict, score.drifted = Verdict.NO_DRIFT, False
    with pytest.raises(ValueError):  # as the run computed it, it would not fit
        entrypoints.write_result(None, status)
    written = drift_runner.fit_result(status, fits_result)
    assert written.scores_omitted and written.scores
    assert len(written.scores) + written.scores_omitted == len(FEATURES)
    kept_drifted = [s for s in written.scores if s.verdict == Verdict.DRIFT]
    assert len(kept_drifted) == min(len(written.scores), len(FEATURES) - len(FEATURES) // 2)
