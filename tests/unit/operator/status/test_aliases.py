"""Registry aliases resolved from what the cluster recorded of their moves."""

from __future__ import annotations

from typing import Any

from flywheel.api.modeldeployment import AnalysisDecision, ModelDeploymentSpec
from flywheel.serving import rollout
from flywheel.serving.versions import ServedVersion
from flywheel_operator import labels
from flywheel_operator.status import aliases, modeldeployment

ROOT = "pvc://a/models/churn/versions"


def training(
    name: str,
    version: str | None,
    held: list[str],
    phase: str = "Succeeded",
    done: str = "2026-05-01T00:00:00Z",
    created: str = "2026-05-01T00:00:00Z",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "aliases": held, "completionTime": done}
    if version:
        status |= {"modelVersion": version, "artifactUri": f"{ROOT}/{version}"}
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"output": {"modelName": "churn"}},
        "status": status,
    }


def alias_job(
    version: str, complete: bool = True, done: str = "2026-05-03T00:00:00Z"
) -> dict[str, Any]:
    conditions = [{"type": "Complete", "status": "True"}] if complete else []
    return {
        "metadata": {
            "name": f"churn-champion-{version}",
            "annotations": {
                "flywheel.dev/model": "churn",
                "flywheel.dev/alias": "champion",
                "flywheel.dev/version": version,
                "flywheel.dev/artifact-uri": f"{ROOT}/{version}",
            },
        },
        "status": {"conditions": conditions, "completionTime": done},
    }


FIRST = training("churn-logistic", "v1", ["champion"])
RETRAIN = training("churn-drift-retrain-1", "v2", ["candidate"], done="2026-05-02T00:00:00Z")
SPEC = ModelDeploymentSpec.model_validate(
    {
        "stable": {"modelName": "churn", "alias": "champion"},
        "candidate": {"modelName": "churn", "alias": "candidate"},
        "rollout": {"strategy": "canary", "canary": {"steps": [{"weight": 10}]}},
    }
)


def test_an_alias_names_the_version_of_its_newest_move() -> None:
    moves = aliases.from_training_jobs([FIRST, RETRAIN])
    assert aliases.resolve("churn", "champion", moves).version == "v1"  # type: ignore[union-attr]
    candidate = aliases.resolve("churn", "candidate", moves)
    assert candidate is not None and candidate.source == "tj/churn-drift-retrain-1"
    assert candidate.served() == ServedVersion("churn", "v2", f"{ROOT}/v2")
    # A completed alias Job moved champion later than the first training set it.
    moves += aliases.from_alias_jobs([alias_job("v2")])
    assert aliases.resolve("churn", "champion", moves).version == "v2"  # type: ignore[union-attr]
    assert aliases.resolve("other", "champion", moves) is None


def test_only_finished_records_move_an_alias() -> None:
    running = training("churn-drift-retrain-2", None, [], phase="Running")
    failed = training("churn-drift-retrain-3", "v9", ["candidate"], phase="Failed")
    assert aliases.from_training_jobs([running, failed]) == []
    assert aliases.from_alias_jobs([alias_job("v2", complete=False)]) == []


def test_a_deployment_resolves_stable_and_candidate_by_alias() -> None:
    moves = aliases.from_training_jobs([FIRST, RETRAIN])
    stable, candidate = modeldeployment.resolve_versions(SPEC, {}, "/x", moves)  # type: ignore[misc]
    assert (stable.version, candidate.version if candidate else None) == ("v1", "v2")
    # Before any retrain: no candidate, stable serves alone (it does not wait).
    assert modeldeployment.resolve_versions(SPEC, {}, "/x", moves[:1]) == (
        ServedVersion("churn", "v1", f"{ROOT}/v1"),
        None,
    )
    # No champion yet: the deployment waits, and says for what.
    assert modeldeployment.resolve_versions(SPEC, {}, "/x", []) is None
    assert "no version of model 'churn' has the alias 'champion'" in (
        modeldeployment.waiting_for_alias(SPEC)
    )
    # After the promotion moved champion to the candidate, it is no candidate any more.
    moved = moves + aliases.from_alias_jobs([alias_job("v2")])
    stable, candidate = modeldeployment.resolve_versions(SPEC, {}, "/x", moved)  # type: ignore[misc]
    assert (stable.version, candidate) == ("v2", None)


def test_a_promotion_moves_champion_once() -> None:
    moves = aliases.from_training_jobs([FIRST, RETRAIN])
    v2 = ServedVersion("churn", "v2", f"{ROOT}/v2")
    promoted = rollout.Decision(rollout.State(outcome=AnalysisDecision.PROMOTE),
                                AnalysisDecision.PROMOTE, "error rate 0.001 <= 0.01")  # fmt: skip
    move = modeldeployment.champion_move(SPEC, promoted, v2, moves, "churn")
    assert move == modeldeployment.AliasMove(
        "churn", "champion", v2, "promoted by md/churn: error rate 0.001 <= 0.01"
    )
    done = moves + aliases.from_alias_jobs([alias_job("v2")])
    assert modeldeployment.champion_move(SPEC, promoted, v2, done, "churn") is None
    going = rollout.Decision(rollout.State(step=0), AnalysisDecision.CONTINUE, "")
    assert modeldeployment.champion_move(SPEC, going, v2, moves, "churn") is None
    pinned = ModelDeploymentSpec.model_validate(
        {"stable": {"modelName": "churn", "version": "v1"},
         "candidate": {"modelName": "churn", "version": "v2"}}
    )  # fmt: skip
    assert modeldeployment.champion_move(pinned, promoted, v2, moves, "churn") is None


def test_a_failed_retrain_leaves_stable_serving_and_the_deployment_says_so() -> None:
    v1 = ServedVersion("churn", "v1", f"{ROOT}/v1")
    failed = training(
        "churn-drift-retrain-1", None, [], phase="Failed", created="2026-05-02T00:00:00Z"
    )
    failed["status"]["conditions"] = [
        {"type": "Succeeded", "status": "False", "reason": "GateFailed", "message": "auc 0.5 < 0.6"}
    ]
    found = modeldeployment.candidate_condition(SPEC, v1, None, [FIRST, failed])
    assert found == (
        False,
        "RetrainFailed",
        "tj/churn-drift-retrain-1 failed (GateFailed: auc 0.5 < 0.6); stable v1 keeps serving",
    )
    v2 = ServedVersion("churn", "v2", f"{ROOT}/v2")
    assert modeldeployment.candidate_condition(SPEC, v1, v2, [FIRST, RETRAIN]) == (
        True, "AliasResolved", "churn@candidate is v2",
    )  # fmt: skip
    assert modeldeployment.candidate_condition(SPEC, v1, None, [FIRST]) == (
        False,
        "NoCandidate",
        "no version of model 'churn' has the alias 'candidate'; stable v1 keeps serving",
    )
    # After the promotion: the candidate is the version that serves.
    moved = aliases.from_training_jobs([FIRST, RETRAIN]) + aliases.from_alias_jobs(
        [alias_job("v2")]
    )
    assert modeldeployment.candidate_condition(SPEC, v2, None, [FIRST, RETRAIN], moved) == (
        False, "NoCandidate", "churn@candidate is v2, the stable version",
    )  # fmt: skip


def _mover(name: str, created: str, state: str | None, owner: str = "md-uid") -> dict[str, Any]:
    conditions = []
    if state == "Complete":
        conditions = [{"type": "Complete", "status": "True"}]
    elif state == "Failed":
        conditions = [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"}
        ]  # fmt: skip
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": created,
            "ownerReferences": [{"uid": owner}],
            "annotations": {
                labels.MODEL_ANNOTATION: "churn",
                labels.ALIAS_ANNOTATION: "champion",
                labels.VERSION_ANNOTATION: name.rsplit("-", 1)[-1],
            },
        },
        "status": {"conditions": conditions},
    }


def test_the_newest_champion_move_of_this_deployment_is_its_condition() -> None:
    assert aliases.last_move_outcome([], "md-uid") is None
    done = _mover("churn-champion-v2", "2026-05-01T00:00:00Z", "Complete")
    others = _mover("other-champion-v9", "2026-05-03T00:00:00Z", "Failed", owner="x")
    assert aliases.last_move_outcome([done, others], "md-uid") == (
        True,
        "AliasMoved",
        "churn@champion -> v2 (job/churn-champion-v2)",
    )
    running = _mover("churn-champion-v3", "2026-05-02T00:00:00Z", None)
    assert (aliases.last_move_outcome([done, running], "md-uid") or ())[:2] == (
        False,
        "AliasMoving",
    )
    failed = _mover("churn-champion-v3", "2026-05-02T00:00:00Z", "Failed")
    moved, reason, message = aliases.last_move_outcome([done, failed], "md-uid") or (0, "", "")
    assert (moved, reason) == (False, "AliasMoveFailed")
    assert "backoff limit" in message and "kubectl logs job/churn-champion-v3" in message
    assert "still gives champion to the version before" in message
