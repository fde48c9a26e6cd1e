"""Results merged into status; upstream statuses passed on as inputs."""

from __future__ import annotations

from typing import Any

from flywheel.api.dataset import DatasetStatus
from flywheel_operator.status import results


def test_a_result_cannot_overwrite_operator_fields() -> None:
    s = results.merge_result(
        DatasetStatus(phase="Ready", observed_generation=3),
        {"version": "v", "phase": "Hacked", "observedGeneration": 99, "error": "x"},
    )
    assert (s.phase, s.observed_generation, s.version) == ("Ready", 3, "v")


def test_credentials_in_results_are_redacted() -> None:
    result = {"version": "v", "snapshotUri": "s3://AKIA123:s3cr3t@bucket/ds/v/"}
    s = results.merge_result(DatasetStatus(), result)
    assert s.snapshot_uri == "s3://***@bucket/ds/v/"


def test_inputs_are_statuses_without_the_operator_fields() -> None:
    objects: dict[str, dict[str, Any]] = {
        "Dataset/a": {"spec": {"x": 1}, "status": {"version": "v1", "conditions": []}},
        "Dataset/b": {"spec": {}},
    }
    assert results.as_inputs(objects) == {"Dataset/a": {"version": "v1"}, "Dataset/b": {}}
