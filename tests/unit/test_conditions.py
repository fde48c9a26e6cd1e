from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flywheel.api import conditions

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_transition_time_moves_only_on_a_flip() -> None:
    c = conditions.set_condition([], "Ready", False, "Ingesting", "reading", T0)
    c = conditions.set_condition(c, "Ready", False, "Validating", "checking", T0 + timedelta(1))
    assert c[0].last_transition_time == T0 and c[0].reason == "Validating"
    c = conditions.set_condition(c, "Ready", True, "Published", "v1", T0 + timedelta(2))
    assert c[0].last_transition_time == T0 + timedelta(2)
    assert conditions.is_true(c, "Ready")


def test_other_conditions_keep_their_order() -> None:
    c = conditions.set_condition([], "Ready", True, "Ok", "", T0)
    c = conditions.set_condition(c, "Degraded", False, "Ok", "", T0)
    c = conditions.set_condition(c, "Ready", False, "Failed", "boom", T0)
    assert [x.type for x in c] == ["Ready", "Degraded"]
