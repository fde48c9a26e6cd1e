"""Waiting for dependencies, and specs that cannot be acted on."""

from __future__ import annotations

from datetime import timedelta

from flywheel.api.dataset import DatasetStatus
from flywheel_operator.status import conditions
from tests.unit.operator.status.helpers import T0, conds


def test_waiting_keeps_what_was_published() -> None:
    s = conditions.waiting(DatasetStatus(), 1, "Dataset/a does not exist", T0)
    assert s.phase == "Waiting" and conds(s)["Ready"] == ("False", "WaitingForDependencies")
    published = DatasetStatus(phase="Ready")
    conditions.set_status_condition(published, conditions.READY, True, "Published", "", T0)
    s = conditions.waiting(published, 2, "Dataset/a is Ingesting", T0 + timedelta(1))
    assert s.phase == "Ready" and conds(s)["Ready"] == ("True", "Published")
    assert conds(s)["Progressing"] == ("False", "WaitingForDependencies")


def test_blocked_says_why_on_the_top_condition() -> None:
    s = conditions.blocked(DatasetStatus(), 4, "KubeRayNotInstalled", "install", T0, "Succeeded")
    assert s.phase == "KubeRayNotInstalled" and s.observed_generation == 4
    assert conds(s) == {"Succeeded": ("False", "KubeRayNotInstalled")}
    assert s.conditions[0].observed_generation == 4
