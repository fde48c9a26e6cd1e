"""The RayJob submitter's side that needs no cluster: what it submits, what it reads back."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel import entrypoints
from flywheel.training import submit


def test_it_submits_the_entrypoint_the_table_names() -> None:
    assert entrypoints.ENTRYPOINTS["TrainingJob"].command == ("train", "run")
    assert submit.entrypoint("pvc://models/root") == (
        "flywheel train run --artifact-root pvc://models/root --progress-lines "
        "--verdict-exit-code 0"
    )


def test_the_result_is_the_last_json_line_of_the_log() -> None:
    log = "\n".join(
        [
            "starting",
            '{"epoch": 1}',
            "(RayTrainWorker pid=1) {not json}",
            '{"phase":"Succeeded","modelVersion":"abc","metrics":{"auc":0.9}}',
            "TrainingJob/churn: Trained: model churn version abc",
        ]
    )
    assert submit.result_line(log) == {
        "phase": "Succeeded",
        "modelVersion": "abc",
        "metrics": {"auc": 0.9},
    }
    assert submit.result_line("no result here\n{broken") is None


class _StartingHead:
    """A job submission client whose head's agent registers after `failures` tries."""

    def __init__(self, failures: int, message: str = submit.NO_AGENT) -> None:
        self.failures, self.message, self.calls = failures, message, 0

    def submit_job(self, **kw: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"Request failed with status code 500: {self.message}.")
        return str(kw["submission_id"])


def test_submission_waits_for_the_heads_job_agent_and_nothing_else() -> None:
    head = _StartingHead(failures=2)
    assert submit._submit(head, "flywheel train run", "id-1", {}, pause=0.0) == "id-1"
    assert head.calls == 3
    other = _StartingHead(failures=1, message="runtime_env is invalid")
    with pytest.raises(RuntimeError, match="runtime_env is invalid"):
        submit._submit(other, "flywheel train run", "id-1", {}, pause=0.0)
    assert other.calls == 1
    never = _StartingHead(failures=10**6)
    with pytest.raises(RuntimeError, match="No available agent"):
        submit._submit(never, "x", "id-1", {}, deadline_seconds=0.0, pause=0.0)
