"""The local executor: order, inputs each step sees, failures and what they block."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flywheel import entrypoints, manifests, plan
from flywheel.api.common import Condition, ConditionStatus, StatusBase
from flywheel.entrypoints import Entrypoint, RunContext
from flywheel.local import executor

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"

# What the test runners saw, in call order: (key, input keys with a status, base_dir).
SEEN: list[tuple[str, list[str], Path]] = []
FAIL: dict[str, str] = {}  # key -> "phase" (a Failed status) or "raise"


def recording_runner(resource: Any, context: RunContext) -> StatusBase:
    SEEN.append((resource.key, sorted(context.statuses), context.base_dir))
    how = FAIL.get(resource.key)
    if how == "raise":
        raise RuntimeError("boom")
    failed = how == "phase"
    condition = Condition(
        type="Ready",
        status=ConditionStatus.FALSE if failed else ConditionStatus.TRUE,
        reason="Broken" if failed else "Done",
        message="",
        last_transition_time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return StatusBase(phase="Failed" if failed else "Ready", conditions=[condition])


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[plan.Step]:
    SEEN.clear()
    FAIL.clear()
    target = f"{__name__}:recording_runner"
    table = {
        kind: Entrypoint(kind, target, ("x",)) for kind in ("Dataset", "FeatureView", "TrainingJob")
    }
    monkeypatch.setattr(entrypoints, "ENTRYPOINTS", table)
    ordered, errors = plan.order(manifests.load([QUICKSTART]).resources)
    assert errors == []
    return ordered


def run(steps: list[plan.Step], tmp_path: Path) -> list[executor.Outcome]:
    return executor.execute(steps, RunContext(artifact_root=tmp_path))


def test_each_step_sees_the_statuses_of_the_steps_before_it(
    steps: list[plan.Step], tmp_path: Path
) -> None:
    outcomes = run(steps, tmp_path)
    assert [key for key, _, _ in SEEN] == [
        "Dataset/customer-events",
        "Dataset/churn-labels",
        "FeatureView/customer-features",
        "TrainingJob/churn-logistic",
        "TrainingJob/churn-mlp",
    ]
    assert SEEN[2][1] == ["Dataset/churn-labels", "Dataset/customer-events"]
    assert SEEN[4][1][-1] == "TrainingJob/churn-logistic"
    # Relative paths in a spec resolve against the directory of its manifest.
    assert {base for _, _, base in SEEN} == {QUICKSTART}
    # Kinds with no entrypoint are planned, not run, and not failed.
    planned = [o.step.key for o in outcomes if o.status is None and o.error is None]
    assert planned == ["ModelDeployment/churn", "DriftMonitor/churn-drift"]


@pytest.mark.parametrize("how", ["phase", "raise"])
def test_a_failed_step_blocks_what_depends_on_it_and_nothing_else(
    steps: list[plan.Step], tmp_path: Path, how: str
) -> None:
    FAIL["Dataset/churn-labels"] = how
    outcomes = {o.step.key: o for o in run(steps, tmp_path)}
    ran = [key for key, _, _ in SEEN]
    assert "FeatureView/customer-features" in ran  # depends only on customer-events
    assert "TrainingJob/churn-logistic" not in ran
    blocked = outcomes["TrainingJob/churn-logistic"].error
    assert blocked == "not run: Dataset/churn-labels failed"
    if how == "raise":
        assert outcomes["Dataset/churn-labels"].error == "RuntimeError: boom"
    else:
        status = outcomes["Dataset/churn-labels"].status
        assert status is not None and status.phase == "Failed"


def test_the_callers_context_is_not_changed(steps: list[plan.Step], tmp_path: Path) -> None:
    context = RunContext(artifact_root=tmp_path)
    executor.execute(steps, context)
    assert context.statuses == {}
    assert context.resources == {}
    with pytest.raises(AttributeError):
        context.namespace = "other"  # type: ignore[misc]
