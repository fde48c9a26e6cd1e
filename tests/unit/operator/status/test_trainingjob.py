"""TrainingJob status: terminal once Succeeded or Failed."""

from __future__ import annotations

from datetime import timedelta

from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.status import trainingjob
from flywheel_operator.status.observe import Run, RunState
from tests.unit.operator.status.helpers import T0, conds


def test_trainingjob_is_terminal() -> None:
    s = trainingjob.status(TrainingJobStatus(), 1, Run("r", RunState.RUNNING), T0)
    assert s.phase == "Running" and conds(s)["Succeeded"][0] == "Unknown"
    s = trainingjob.status(
        s,
        1,
        Run(
            "r",
            RunState.SUCCEEDED,
            {
                "modelName": "churn",
                "modelVersion": "v3",
                "metrics": {"auc": 0.8},
                "primaryMetric": "auc=0.800",
            },
        ),
        T0,
    )
    assert (s.phase, s.model_version, s.metrics) == ("Succeeded", "v3", {"auc": 0.8})
    assert s.model_name == "churn"
    assert conds(s)["Succeeded"] == ("True", "Trained")
    again = trainingjob.status(s, 2, Run("", RunState.MISSING), T0 + timedelta(1))
    assert again.phase == "Succeeded" and trainingjob.terminal(again)


def test_trainingjob_failure_says_why() -> None:
    s = trainingjob.status(
        TrainingJobStatus(), 1, Run("r", RunState.FAILED, None, "gate auc 0.55 < 0.6"), T0
    )
    assert s.phase == "Failed" and conds(s)["Succeeded"] == ("False", "TrainingFailed")
    assert s.conditions[0].message == "gate auc 0.55 < 0.6"


def test_a_failed_gate_fails_the_job_with_its_own_reason() -> None:
    """The Ray job succeeded (no retry); the submitter's result carries the verdict."""
    result = {"phase": "Failed", "modelVersion": "v9", "error": "GateFailed: auc 0.55 < 0.60"}
    s = trainingjob.status(TrainingJobStatus(), 1, Run("r", RunState.SUCCEEDED, result), T0)
    assert s.phase == "Failed" and conds(s)["Succeeded"] == ("False", "GateFailed")
    assert s.conditions[0].message == "auc 0.55 < 0.60" and s.model_version == "v9"


def test_progress_shows_while_running_and_retries_say_so() -> None:
    s = trainingjob.status(TrainingJobStatus(), 1, Run("r", RunState.RUNNING), T0, "epoch 7/20")
    assert (s.phase, s.progress) == ("Running", "epoch 7/20")
    retry = Run("r", RunState.PENDING, None, "retrying after 1 failed attempt(s)")
    s = trainingjob.status(s, 1, retry, T0)
    assert s.phase == "Pending" and "retrying" in s.conditions[0].message
