"""Parsing an object as the API server returns it: problems read as `flywheel validate`
reports them, field path first."""

from __future__ import annotations

from pathlib import Path

import yaml

from flywheel import api
from flywheel.api.dataset import DatasetStatus
from flywheel_operator.handlers.reconciliation import generation, old_status, parse
from tests.unit.operator.conftest import owners

INVALID = Path(__file__).resolve().parents[3] / "manifests" / "invalid"


def served(path: Path) -> dict[str, object]:
    body = yaml.safe_load(path.read_text())
    # What the API server adds is not the user's to validate.
    body["metadata"].update(namespace="ml", uid="u", generation=2, managedFields=[{}])
    return dict(body)


def test_a_valid_object_parses_despite_server_fields() -> None:
    body = owners()["Dataset/customer-events"]
    body["metadata"].update(generation=2, managedFields=[{}], resourceVersion="7")
    resource, problem = parse(body)
    assert isinstance(resource, api.Dataset) and problem == ""
    assert generation(body) == 2


def test_problems_name_their_field_as_validate_does() -> None:
    body = served(INVALID / "12-bad-cron-field.yaml")
    assert parse(body) == (None, "spec.schedule: cron minute '61' is outside 0-59")
    body["spec"]["typo"] = 1  # type: ignore[index]
    _, problem = parse(body)
    assert problem.endswith("spec.typo: unknown field; allowed here: deploymentRef, reference, "
                            "features, tests, window, schedule, minSamples, prediction, "
                            "action, skew")  # fmt: skip


def test_a_status_of_an_older_shape_starts_afresh() -> None:
    body = {"status": {"phase": "Ready", "unknownField": 1}}
    assert old_status(body, DatasetStatus).phase is None
    assert old_status({"status": {"phase": "Ready"}}, DatasetStatus).phase == "Ready"
