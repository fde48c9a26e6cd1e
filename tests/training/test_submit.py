"""The RayJob submitter's side that needs no cluster: what it submits, what it reads back."""

from __future__ import annotations

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
