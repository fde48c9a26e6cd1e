"""ModelDeployment decisions: versions, the rollout step, serving, status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flywheel.api.modeldeployment import (
    ROLLOUT_ACTION_ANNOTATION,
    AnalysisDecision,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelRef,
    Rollout,
    RolloutAction,
)
from flywheel.serving.rollout import Metrics, State
from flywheel.serving.versions import ServedVersion
from flywheel_operator.status import aliases, modeldeployment
from tests.unit.operator.status.helpers import T0, conds

CANARY = Rollout.model_validate(
    {"strategy": "canary", "canary": {"steps": [{"weight": 10}, {"weight": 100}]}}
)
V1 = ServedVersion("churn", "v1", "s3://m/models/churn/v1")
V2 = ServedVersion("churn", "v2", "s3://m/models/churn/v2")


def trained(status: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"output": {"modelName": "churn"}}, "status": status}


def test_a_trained_version_is_named_by_the_status_of_its_training() -> None:
    ref = ModelRef.model_validate({"trainingJobRef": {"name": "tj"}})
    status = {"modelName": "churn-v2", "modelVersion": "7", "artifactUri": "s3://r/x/7"}
    found = modeldeployment.resolve(ref, {"TrainingJob/tj": trained(status)}, "s3://root")
    assert found == ServedVersion("churn-v2", "7", "s3://r/x/7")
    running = trained({"phase": "Running"})
    assert modeldeployment.resolve(ref, {"TrainingJob/tj": running}, "s3://root") is None
    assert modeldeployment.resolve(ref, {}, "s3://root") is None


def test_a_status_without_the_model_name_falls_back_to_the_spec() -> None:
    ref = ModelRef.model_validate({"trainingJobRef": {"name": "tj"}})
    status = {"modelVersion": "7", "artifactUri": "s3://r/elsewhere/7"}
    found = modeldeployment.resolve(ref, {"TrainingJob/tj": trained(status)}, "s3://root")
    assert found == ServedVersion("churn", "7", "s3://r/elsewhere/7")


def test_a_registry_version_lives_under_the_artifact_root() -> None:
    ref = ModelRef.model_validate({"modelName": "churn", "version": "v1"})
    found = modeldeployment.resolve(ref, {}, "s3://root/")
    assert found == ServedVersion("churn", "v1", "s3://root/models/churn/versions/v1")


def test_versions_wait_for_every_referenced_training() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "stable": {"modelName": "churn", "version": "v1"},
            "candidate": {"trainingJobRef": {"name": "tj"}},
        }
    )
    assert modeldeployment.resolve_versions(spec, {}, "s3://m") is None
    jobs = {"TrainingJob/tj": trained({"modelVersion": "v2", "artifactUri": V2.artifact_uri})}
    # modelName + version: the registry layout, <root>/models/<name>/versions/<version>.
    registered = ServedVersion("churn", "v1", "s3://m/models/churn/versions/v1")
    assert modeldeployment.resolve_versions(spec, jobs, "s3://m") == (registered, V2)


def test_the_plan_serves_both_versions_during_a_canary_and_one_after() -> None:
    plan = modeldeployment.plan_rollout(CANARY, State(), V1, V2, None, T0)
    assert plan.decision.decision == AnalysisDecision.INCONCLUSIVE  # no data never promotes
    assert plan.split == {"v1": 90.0, "v2": 10.0} and plan.versions == [V1, V2]
    good = Metrics(requests=1000)
    plan = modeldeployment.plan_rollout(CANARY, State(step=1, step_started=T0), V1, V2, good, T0)
    assert plan.decision.decision == AnalysisDecision.PROMOTE
    assert plan.split == {"v2": 100.0} and plan.versions == [V2]
    alone = modeldeployment.plan_rollout(CANARY, State(), V1, None, None, T0)
    assert alone.split == {"v1": 100.0} and alone.versions == [V1]


def test_a_candidate_gets_weight_only_once_its_serve_application_runs() -> None:
    plan = modeldeployment.plan_rollout(CANARY, State(), V1, V2, None, T0)
    held = modeldeployment.hold_candidate(plan, "v1", (False, "Serve application is DEPLOYING"))
    assert held.split == {"v1": 100.0, "v2": 0.0} and held.versions == [V1, V2]
    assert held.decision.decision == AnalysisDecision.INCONCLUSIVE
    assert "DEPLOYING" in held.decision.message
    assert modeldeployment.hold_candidate(plan, "v1", (True, "")) == plan
    # A finished rollout has nothing to hold.
    done = State(step=1, step_started=T0, outcome=AnalysisDecision.PROMOTE)
    promoted = modeldeployment.plan_rollout(CANARY, done, V1, V2, None, T0)
    assert modeldeployment.hold_candidate(promoted, "v1", (False, "gone")) == promoted


def test_serving_needs_every_deployment_available() -> None:
    applied = [
        {"kind": "ConfigMap", "metadata": {"name": "c"}},
        {"kind": "Deployment", "metadata": {"name": "churn-v1"}, "spec": {"replicas": 1},
         "status": {"availableReplicas": 1}},
        {"kind": "Deployment", "metadata": {"name": "churn-router"}, "spec": {"replicas": 1},
         "status": {}},
    ]  # fmt: skip
    assert modeldeployment.is_serving("triton", applied) == (
        False,
        "churn-router: 0/1 replicas available",
    )
    applied[2]["status"] = {"availableReplicas": 1}
    assert modeldeployment.is_serving("triton", applied)[0] is True
    rayservice = {"kind": "RayService", "status": {"serviceStatus": "Running"}}
    assert modeldeployment.is_serving("rayserve", [rayservice]) == (True, "")


def test_a_promotion_makes_the_candidate_stable() -> None:
    plan = modeldeployment.plan_rollout(
        CANARY, State(step=1, step_started=T0), V1, V2, Metrics(requests=1000), T0
    )
    s = modeldeployment.status(
        ModelDeploymentStatus(), 1, CANARY, "v1", "v2", plan.decision, plan.split,
        (True, "ok"), T0, "http://churn.ml.svc",
    )  # fmt: skip
    assert (s.phase, s.stable_version, s.candidate_version) == ("Promoted", "v2", None)
    assert conds(s)["Promoted"] == ("True", "AnalysisPassed")
    assert s.traffic_summary == "v2=100" and s.step_summary == "2/2"


def test_rollout_state_survives_in_status_and_restarts_for_a_new_candidate() -> None:
    status = ModelDeploymentStatus(
        candidate_version="v2", step=1, step_started=T0, failed_analyses=1
    )
    assert modeldeployment.rollout_state(status, "v2") == State(step=1, step_started=T0, failures=1)
    assert modeldeployment.rollout_state(status, "v3") == State()
    promoted = ModelDeploymentStatus(stable_version="v2")
    assert modeldeployment.rollout_state(promoted, "v2").outcome == AnalysisDecision.PROMOTE
    rolled = ModelDeploymentStatus(candidate_version="v2", phase="RolledBack")
    assert modeldeployment.rollout_state(rolled, "v2").outcome == AnalysisDecision.ROLLBACK


def test_a_step_inconclusive_past_the_progress_deadline_rolls_back() -> None:
    state = State(step=0, step_started=T0)
    late = T0 + timedelta(minutes=11)
    plan = modeldeployment.plan_rollout(CANARY, state, V1, V2, None, late, timedelta(minutes=10))
    assert plan.decision.decision == AnalysisDecision.ROLLBACK
    assert "progressDeadline" in plan.decision.message
    assert plan.split == {"v1": 100.0} and plan.versions == [V1]
    soon = T0 + timedelta(minutes=9)
    plan = modeldeployment.plan_rollout(CANARY, state, V1, V2, None, soon, timedelta(minutes=10))
    assert plan.decision.decision == AnalysisDecision.INCONCLUSIVE


def _status(state: State, metrics: Metrics | None, now: Any, old: Any = None) -> Any:
    plan = modeldeployment.plan_rollout(CANARY, state, V1, V2, metrics, now)
    return modeldeployment.status(
        old or ModelDeploymentStatus(), 1, CANARY, "v1", "v2", plan.decision, plan.split,
        (True, ""), now, "http://churn", metrics,
    )  # fmt: skip


def test_events_tell_the_rollout_story() -> None:
    started = _status(State(), None, T0)
    events = modeldeployment.rollout_events(ModelDeploymentStatus(), started)
    assert [e.reason for e in events] == ["RolloutStarted", "AnalysisInconclusive"]
    assert events[0].message == "v1 -> v2: v1=90 v2=10"
    # The analysis passes: to step 2, with the measurements recorded.
    good = Metrics(requests=500, errors=0, p99_latency_ms=8.0)
    stepped = _status(State(step=0, step_started=T0), good, T0, started)
    assert stepped.last_analysis is not None and stepped.last_analysis.requests == 500
    assert stepped.last_analysis.error_rate == 0.0 and stepped.last_analysis.p99_latency_ms == 8.0
    events = modeldeployment.rollout_events(started, stepped)
    assert [e.reason for e in events] == ["RolloutStep", "AnalysisContinue"]
    assert events[0].message.startswith("step 2/2: v1=0 v2=100")
    # Errors: a failed analysis is a Warning.
    bad = Metrics(requests=500, errors=100)
    failed = _status(State(step=1, step_started=T0), bad, T0, stepped)
    events = modeldeployment.rollout_events(stepped, failed)
    assert [(e.type, e.reason) for e in events] == [
        ("Warning", "AnalysisFailed"), ("Normal", "AnalysisRollback"),
    ]  # fmt: skip
    # Nothing new: no Event.
    assert modeldeployment.rollout_events(failed, failed) == []


def _action(value: str, old: ModelDeploymentStatus | None = None) -> modeldeployment.Action:
    found = modeldeployment.requested_action(
        {ROLLOUT_ACTION_ANNOTATION: value}, old or ModelDeploymentStatus()
    )
    assert found is not None
    return found


def test_an_action_is_taken_once_per_annotation_value() -> None:
    assert _action("promote@t1").action == RolloutAction.PROMOTE
    handled = ModelDeploymentStatus(last_action="promote@t1")
    assert (
        modeldeployment.requested_action({ROLLOUT_ACTION_ANNOTATION: "promote@t1"}, handled) is None
    )
    assert modeldeployment.requested_action({}, handled) is None


def test_promote_and_abort_end_a_rollout_under_way() -> None:
    plan = modeldeployment.plan_rollout(CANARY, State(), V1, V2, None, T0)
    promoted, said, _ = modeldeployment.apply_action(plan, _action("promote@t"), CANARY, V1, V2)
    assert promoted.decision.state.outcome == AnalysisDecision.PROMOTE
    assert promoted.split == {"v2": 100.0} and said == "promoted by the user"
    aborted, _, _ = modeldeployment.apply_action(plan, _action("abort@t"), CANARY, V1, V2)
    assert aborted.split == {"v1": 100.0} and aborted.versions == [V1]


def test_undo_turns_a_promotion_into_a_rollback_and_needs_one() -> None:
    done = State(step=1, step_started=T0, outcome=AnalysisDecision.PROMOTE)
    promoted = modeldeployment.plan_rollout(CANARY, done, V1, V2, None, T0)
    undone, said, acted = modeldeployment.apply_action(promoted, _action("undo@t"), CANARY, V1, V2)
    assert undone.decision.decision == AnalysisDecision.ROLLBACK and undone.split == {"v1": 100.0}
    assert "v1 is stable again" in said and acted
    running = modeldeployment.plan_rollout(CANARY, State(), V1, V2, None, T0)
    same, said, acted = modeldeployment.apply_action(running, _action("undo@t"), CANARY, V1, V2)
    assert same == running and "use abort" in said and not acted
    same, said, acted = modeldeployment.apply_action(running, _action("resume@t"), CANARY, V1, V2)
    assert same == running and said == (
        "unknown rollout action 'resume@t': use one of promote, abort, undo"
    )


def test_the_version_that_lost_its_traffic_stays_warm_for_its_window() -> None:
    minute, ten = timedelta(minutes=1), timedelta(minutes=10)
    rolled_back = State(step=0, step_started=T0, outcome=AnalysisDecision.ROLLBACK)
    plan = modeldeployment.plan_rollout(CANARY, rolled_back, V1, V2, None, T0)
    warm = modeldeployment.keep_warm(plan, V1, V2, T0, minute, ten, T0 + timedelta(seconds=59))
    assert warm.versions == [V1, V2] and warm.split == {"v1": 100.0}
    cold = modeldeployment.keep_warm(plan, V1, V2, T0, minute, ten, T0 + minute)
    assert cold.versions == [V1]
    promoted = State(step=1, step_started=T0, outcome=AnalysisDecision.PROMOTE)
    plan = modeldeployment.plan_rollout(CANARY, promoted, V1, V2, None, T0)
    warm = modeldeployment.keep_warm(plan, V1, V2, T0, minute, ten, T0 + minute)
    assert warm.versions == [V2, V1] and warm.split == {"v2": 100.0}
    assert modeldeployment.keep_warm(plan, V1, V2, T0, minute, ten, T0 + ten).versions == [V2]


def test_a_rollout_finishes_once() -> None:
    old = ModelDeploymentStatus(phase="Promoted", finished_at=T0)
    later = T0 + timedelta(hours=1)
    assert modeldeployment.finished_at(old, AnalysisDecision.PROMOTE, later) == T0
    assert modeldeployment.finished_at(old, AnalysisDecision.ROLLBACK, later) == later


def test_a_finished_rollout_keeps_its_loser_warm_until_a_known_time() -> None:
    delay, window = timedelta(seconds=30), timedelta(minutes=10)
    until = modeldeployment.warm_until
    assert until(AnalysisDecision.ROLLBACK, T0, delay, window) == T0 + delay
    assert until(AnalysisDecision.PROMOTE, T0, delay, window) == T0 + window
    assert until(None, T0, delay, window) is None


# After a promotion by alias (`candidate: {modelName, alias: candidate}`), `champion`
# names the promoted version: the spec resolves to (v2, no candidate).
ALIASED = ModelDeploymentSpec.model_validate(
    {
        "stable": {"modelName": "churn", "alias": "champion"},
        "candidate": {"modelName": "churn", "alias": "candidate"},
        "rollout": CANARY.model_dump(by_alias=True, exclude_none=True),
    }
)


def _promoted_by_alias() -> ModelDeploymentStatus:
    """The status a few passes after a promotion whose champion move has completed."""
    promoted = ModelDeploymentStatus(stable_version="v2", previous_stable_version="v1")
    promoted = modeldeployment.remember_stable(promoted, V1)
    return promoted.model_copy(update={"phase": "Ready", "finished_at": T0})


def test_a_promotion_remembers_where_the_stable_of_before_is() -> None:
    kept = _promoted_by_alias()
    assert modeldeployment.previous_stable(kept) == V1
    # Once recorded it stays, whatever the spec's stable resolves to later.
    assert modeldeployment.remember_stable(kept, V2) == kept
    assert modeldeployment.previous_stable(ModelDeploymentStatus()) is None
    # The next promotion (v2 -> v3) records v2, not what was kept of v1.
    v3_promoted = kept.model_copy(update={"stable_version": "v3", "previous_stable_version": "v2"})
    assert modeldeployment.previous_stable(modeldeployment.remember_stable(v3_promoted, V2)) == V2


def test_after_a_promotion_by_alias_the_stable_of_before_stays_warm_for_its_window() -> None:
    old, window = _promoted_by_alias(), timedelta(minutes=10)
    plan = modeldeployment.plan_rollout(CANARY, State(), V2, None, None, T0)
    assert plan.versions == [V2] and plan.split == {"v2": 100.0}
    warm = modeldeployment.keep_previous(plan, old, window, T0 + timedelta(minutes=9))
    assert warm.versions == [V2, V1] and warm.split == {"v2": 100.0}
    assert modeldeployment.keep_previous(plan, old, window, T0 + window).versions == [V2]


def test_undo_after_a_promotion_by_alias_returns_to_the_stable_of_before() -> None:
    old = _promoted_by_alias()
    undo = _action("undo@t1")
    stable, candidate = modeldeployment.undo_versions(old, V2, None, undo)
    assert (stable, candidate) == (V1, V2)
    state = modeldeployment.rollout_state(old, candidate.version if candidate else None)
    assert state.outcome == AnalysisDecision.PROMOTE  # what the undo undoes
    plan = modeldeployment.plan_rollout(ALIASED.rollout, state, stable, candidate, None, T0)
    undone, said, acted = modeldeployment.apply_action(plan, undo, ALIASED.rollout, V1, V2)
    assert acted and undone.split == {"v1": 100.0} and undone.versions == [V1]
    assert said == "undone by the user: v1 is stable again"
    # champion goes back to v1 in the registry, through a Job of its own (a Job once
    # moved champion to v1 already, when v1 was promoted).
    moves = [aliases.Assignment("churn", "champion", "v2", V2.artifact_uri, T0, "job/a")]
    move = modeldeployment.champion_move(
        ALIASED, undone.decision, V2, moves, "churn", V1, "undo@t1"
    )
    assert move is not None and move.version == V1 and move.alias == "champion"
    assert move.reason.startswith("undone by md/churn") and move.tag.startswith("undo-")
    # The same undo asks for the same Job on every pass until it has moved champion.
    again = modeldeployment.champion_move(
        ALIASED, undone.decision, V2, moves, "churn", V1, "undo@t1"
    )
    assert again == move


def test_an_undone_promotion_by_alias_serves_the_stable_of_before_until_champion_is_back() -> None:
    undone = _promoted_by_alias().model_copy(
        update={"phase": "RolledBack", "stable_version": "v1", "candidate_version": "v2"}
    )
    # champion still names v2: the status says v1 serves, v2 is the rolled-back one.
    assert modeldeployment.undo_versions(undone, V2, None, None) == (V1, V2)
    assert modeldeployment.rollout_state(undone, "v2").outcome == AnalysisDecision.ROLLBACK
    # champion back on v1 (and `candidate` still on v2): the spec says the same.
    assert modeldeployment.undo_versions(undone, V1, V2, None) == (V1, V2)


def test_undo_with_the_versions_named_in_the_spec_is_left_as_it_was() -> None:
    promoted = ModelDeploymentStatus(
        phase="Promoted", stable_version="v2", previous_stable_version="v1", finished_at=T0
    )
    promoted = modeldeployment.remember_stable(promoted, V1)
    # stable v1, candidate v2 in the spec: apply_action undoes it with those.
    assert modeldeployment.undo_versions(promoted, V1, V2, _action("undo@t")) == (V1, V2)
    # Nothing asked, nothing undone: the spec's versions.
    assert modeldeployment.undo_versions(_promoted_by_alias(), V2, None, None) == (V2, None)
