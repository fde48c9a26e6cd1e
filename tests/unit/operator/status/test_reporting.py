"""Status patches and the Events of phase changes."""

from __future__ import annotations

from flywheel.api.dataset import DatasetStatus
from flywheel.api.modeldeployment import ModelDeploymentStatus
from flywheel_operator.status import conditions, reporting
from tests.unit.operator.status.helpers import T0


def test_no_change_no_patch_and_vanished_fields_are_nulled() -> None:
    old = DatasetStatus(phase="Ready", version="v1")
    assert reporting.status_patch(old, old.model_copy()) is None
    patch = reporting.status_patch(old, DatasetStatus(phase="Ready"))
    assert patch is not None and patch["version"] is None and patch["phase"] == "Ready"


def test_a_version_that_leaves_a_map_is_nulled_inside_it() -> None:
    old = ModelDeploymentStatus(traffic={"v1": 0.0, "v2": 100.0})
    new = ModelDeploymentStatus(traffic={"v2": 100.0})
    patch = reporting.status_patch(old, new)
    assert patch is not None and patch["traffic"] == {"v1": None, "v2": 100.0}


def test_a_phase_change_is_an_event_warning_for_failures() -> None:
    old = DatasetStatus(phase="Ingesting")
    assert reporting.phase_event(old, old) is None
    failed = conditions.blocked(old, 1, "InvalidSpec", "spec.source: required", T0)
    event = reporting.phase_event(old, failed)
    assert event == reporting.PhaseEvent("Warning", "InvalidSpec", "spec.source: required")
    ready = DatasetStatus(phase="Ready")
    assert reporting.phase_event(old, ready) == reporting.PhaseEvent("Normal", "Ready", "Ready")


def test_an_event_is_named_by_the_change_it_reports() -> None:
    owner = {"metadata": {"name": "churn", "uid": "u-1"}}
    ingesting, ready = DatasetStatus(phase="Ingesting"), DatasetStatus(phase="Ready")
    name = reporting.event_name(owner, "Ready", ingesting)
    # Told again from the same status (a reconcile killed before its status write): the
    # same name, which the API refuses as existing.
    assert reporting.event_name(owner, "Ready", DatasetStatus(phase="Ingesting")) == name
    assert name.startswith("churn.")
    others = {
        reporting.event_name(owner, "Failed", ingesting),
        reporting.event_name(owner, "Ready", ready),
        reporting.event_name({"metadata": {"name": "churn", "uid": "u-2"}}, "Ready", ingesting),
    }
    assert name not in others and len(others) == 3
    long = {"metadata": {"name": "x" * 253, "uid": "u-1"}}
    assert len(reporting.event_name(long, "Ready", ingesting)) <= 253  # a valid object name
