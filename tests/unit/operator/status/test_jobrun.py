"""A kind run by a Job: Ready once a result exists, kept through a failed rerun."""

from __future__ import annotations

from datetime import timedelta

from flywheel.api.dataset import DatasetStatus
from flywheel_operator.status import dataset, featureview
from flywheel_operator.status.jobrun import from_run
from flywheel_operator.status.observe import Run, RunState
from tests.unit.operator.status.helpers import T0, conds


def test_dataset_lifecycle_keeps_the_good_version_on_a_failed_rerun() -> None:
    s = dataset.status(DatasetStatus(), 1, Run("j1", RunState.RUNNING), T0)
    assert s.phase == "Ingesting" and conds(s)["Ready"] == ("False", "Ingesting")
    s = dataset.status(s, 1, Run("j1", RunState.SUCCEEDED, {"version": "v1", "rows": 10}), T0)
    assert (s.phase, s.version, s.rows) == ("Ready", "v1", 10)
    assert conds(s)["Ready"] == ("True", "Published")
    s = dataset.status(s, 2, Run("j2", RunState.FAILED, None, "bad rows 40%"), T0 + timedelta(1))
    assert s.phase == "Degraded" and s.version == "v1" and s.observed_generation == 2
    assert conds(s)["Ready"] == ("True", "Published")
    assert conds(s)["Degraded"] == ("True", "IngestFailed")
    ready = next(c for c in s.conditions if c.type == "Ready")
    assert ready.last_transition_time == T0  # no flip, no new transition time


def test_a_first_run_that_fails_is_failed() -> None:
    s = dataset.status(DatasetStatus(), 1, Run("j", RunState.FAILED, None, "no source"), T0)
    assert s.phase == "Failed" and conds(s)["Ready"] == ("False", "IngestFailed")
    empty = from_run(DatasetStatus(), 1, Run("j", RunState.SUCCEEDED), T0, dataset.REASONS)
    assert empty.phase == "Failed"
    assert empty.conditions[0].message == "the run reported no result"


def test_each_kind_names_its_run() -> None:
    assert featureview.REASONS.running == "Materializing"
    assert dataset.REASONS.has_result == "version"
