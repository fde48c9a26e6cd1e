"""ModelDeployment: which versions serve, the rollout step, whether it serves, its status."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from flywheel.api.common import ConditionStatus, duration_seconds, resource_key
from flywheel.api.modeldeployment import (
    ROLLOUT_ACTION_ANNOTATION,
    AnalysisDecision,
    AnalysisResult,
    Backend,
    BatchPredictionStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelRef,
    Rollout,
    RolloutAction,
)
from flywheel.serving import rollout
from flywheel.serving.versions import ServedVersion
from flywheel_operator.redaction import redact
from flywheel_operator.status import aliases, observe
from flywheel_operator.status.conditions import PROGRESSING, READY, set_status_condition
from flywheel_operator.status.observe import Run, RunState

PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"


def resolve(
    ref: ModelRef,
    upstream: dict[str, dict[str, Any]],
    artifact_root: str,
    moves: Iterable[aliases.Assignment] = (),
) -> ServedVersion | None:
    """A model reference -> the version it names, or None while its training runs (or,
    for an alias, while no version holds it).

    `upstream`: the referenced TrainingJobs, keyed "TrainingJob/<name>"; `moves`: every
    alias move seen in the namespace (`aliases.from_training_jobs`, `from_alias_jobs`).
    """
    if ref.training_job_ref is not None:
        job = upstream.get(resource_key("TrainingJob", ref.training_job_ref.name)) or {}
        status = job.get("status") or {}
        if not status.get("modelVersion") or not status.get("artifactUri"):
            return None
        # A status written before it recorded the model name: the spec names the model.
        name = status.get("modelName") or job["spec"]["output"]["modelName"]
        return ServedVersion(name, status["modelVersion"], status["artifactUri"])
    assert ref.model_name is not None
    if ref.alias is not None:
        found = aliases.resolve(ref.model_name, ref.alias, moves)
        return found.served() if found else None
    assert ref.version is not None
    # The registry layout (runtime/README.md): <root>/models/<name>/versions/<version>.
    uri = f"{artifact_root.rstrip('/')}/models/{ref.model_name}/versions/{ref.version}"
    return ServedVersion(ref.model_name, ref.version, uri)


def resolve_versions(
    spec: ModelDeploymentSpec,
    upstream: dict[str, dict[str, Any]],
    artifact_root: str,
    moves: Iterable[aliases.Assignment] = (),
) -> tuple[ServedVersion, ServedVersion | None] | None:
    """(stable, candidate), or None while a referenced training has not produced its model
    or no version holds the stable's alias yet. A candidate named by alias that no version
    holds, or that names the stable version (after a promotion moved `champion` to it),
    is no candidate: stable serves alone."""
    stable = resolve(spec.stable, upstream, artifact_root, moves)
    candidate = resolve(spec.candidate, upstream, artifact_root, moves) if spec.candidate else None
    if stable is None:
        return None
    if spec.candidate is not None and spec.candidate.alias is not None:
        if candidate is not None and candidate.version == stable.version:
            candidate = None
        return stable, candidate
    if spec.candidate is not None and candidate is None:
        return None
    return stable, candidate


def waiting_for_alias(spec: ModelDeploymentSpec) -> str:
    """What an unresolved deployment waits for, when its stable is named by alias."""
    return (
        f"no version of model {spec.stable.model_name!r} has the alias "
        f"{spec.stable.alias!r} yet (a TrainingJob of the model gives it on success)"
    )


@dataclasses.dataclass(frozen=True)
class AliasMove:
    """An alias to move in the registry, as a promotion (or the undo of one) asks."""

    model: str
    alias: str
    version: ServedVersion
    reason: str
    # Tells this move's Job from an earlier one to the same version (an undo goes back
    # to a version a Job once moved the alias to).
    tag: str = ""


def champion_move(
    spec: ModelDeploymentSpec,
    decision: rollout.Decision,
    candidate: ServedVersion | None,
    moves: Iterable[aliases.Assignment],
    name: str,
    stable: ServedVersion | None = None,
    action: str | None = None,
) -> AliasMove | None:
    """A promotion of a deployment that follows aliases moves `champion` to the promoted
    version, once; the undo of one (`action`, a rollback while champion still names the
    candidate) moves it back to `stable`. None when nothing is to move."""
    model = aliases.model_of_deployment(spec)
    if model is None or candidate is None:
        return None
    champion = aliases.resolve(model, aliases.CHAMPION, moves)
    outcome = decision.state.outcome
    if outcome == AnalysisDecision.PROMOTE:
        if champion is not None and champion.version == candidate.version:
            return None
        reason = f"promoted by md/{name}: {decision.message}"[:256]
        return AliasMove(model, aliases.CHAMPION, candidate, reason)
    # A rollback finds champion on the candidate only after a promotion moved it there.
    undoing = champion is not None and champion.version == candidate.version
    if outcome == AnalysisDecision.ROLLBACK and undoing and stable is not None:
        reason = f"undone by md/{name}: {decision.message}"[:256]
        tag = hashlib.sha256((action or "undo").encode()).hexdigest()[:6]
        return AliasMove(model, aliases.CHAMPION, stable, reason, f"undo-{tag}")
    return None


CANDIDATE_AVAILABLE = "CandidateAvailable"
# A promotion's move of `champion` in the registry (through a Job): done, under way, failed.
CHAMPION_MOVED = "ChampionMoved"


def candidate_condition(
    spec: ModelDeploymentSpec,
    stable: ServedVersion,
    candidate: ServedVersion | None,
    training_jobs: Iterable[dict[str, Any]],
    moves: Iterable[aliases.Assignment] = (),
) -> tuple[bool, str, str] | None:
    """(status, reason, message) of CandidateAvailable for a candidate named by alias:
    which version holds the alias, or why none does (a failed retrain says so, and that
    stable keeps serving). None when the candidate is not named by alias."""
    ref = spec.candidate
    if ref is None or ref.alias is None or ref.model_name is None:
        return None
    if candidate is not None:
        return True, "AliasResolved", f"{ref.describe()} is {candidate.version}"
    keeps = f"stable {stable.version} keeps serving"
    newest = aliases.newest_training(ref.model_name, training_jobs)
    status = (newest or {}).get("status") or {}
    if newest is not None and status.get("phase") == "Failed":
        why = next(
            (
                f"{c.get('reason')}: {c.get('message')}"
                for c in status.get("conditions") or []
                if c.get("type") == "Succeeded"
            ),
            "failed",
        )
        message = f"tj/{newest['metadata']['name']} failed ({why}); {keeps}"
        return False, "RetrainFailed", message[:1024]
    if newest is not None and status.get("phase") != "Succeeded":
        return False, "Training", f"tj/{newest['metadata']['name']} is training; {keeps}"
    held = aliases.resolve(ref.model_name, ref.alias, moves)
    if held is not None:  # the version that serves: a promotion made it champion
        return False, "NoCandidate", f"{ref.describe()} is {held.version}, the stable version"
    message = f"no version of model {ref.model_name!r} has the alias {ref.alias!r}; {keeps}"
    return False, "NoCandidate", message


@dataclasses.dataclass(frozen=True)
class RolloutPlan:
    """One rollout step decided: what the router does and which versions need servers."""

    decision: rollout.Decision
    split: dict[str, float]  # percent of user requests per version
    versions: list[ServedVersion]  # versions that need model servers, stable first


def plan_rollout(
    spec_rollout: Rollout,
    state: rollout.State,
    stable: ServedVersion,
    candidate: ServedVersion | None,
    metrics: rollout.Metrics | None,
    now: datetime,
    progress_deadline: timedelta | None = None,
) -> RolloutPlan:
    """`state`: where the rollout stands (`rollout_state`); `metrics`: the router's
    measurements of the current step, None when there are none (then every analysis is
    Inconclusive and nothing is promoted); `progress_deadline`: how long a step may stay
    inconclusive before the rollout aborts to stable."""
    cand = candidate.version if candidate else None
    decision = rollout.step(spec_rollout, state, metrics, now)
    decision = past_deadline(decision, progress_deadline, now)
    split = rollout.traffic(spec_rollout, decision.state, stable.version, cand)
    wanted = rollout.served(spec_rollout, decision.state, stable.version, cand)
    versions = [v for v in (stable, candidate) if v is not None and v.version in wanted]
    return RolloutPlan(decision, split, versions)


def hold_candidate(plan: RolloutPlan, stable: str, running: tuple[bool, str]) -> RolloutPlan:
    """The candidate's server is deployed but gets no weight until it runs: a Serve
    application answers only once RUNNING, and a weighted one that does not yet would
    fail its share of requests (and the analysis with them). `running`: the candidate's
    (running, why not)."""
    ready, why = running
    state = plan.decision.state
    if ready or state.finished or len(plan.versions) < 2:
        return plan
    split = {stable: 100.0, plan.versions[1].version: 0.0}
    held = rollout.Decision(state, AnalysisDecision.INCONCLUSIVE, f"waiting: {why}")
    return RolloutPlan(held, split, plan.versions)


@dataclasses.dataclass(frozen=True)
class Action:
    """A rollout action asked for through the annotation, not yet handled."""

    value: str  # the annotation's value, recorded in status.lastAction once handled
    action: RolloutAction | None  # None: not one the operator knows


def requested_action(annotations: dict[str, str], old: ModelDeploymentStatus) -> Action | None:
    """The action in the annotation ("promote@<time>"), once per value.

    >>> requested_action({"flywheel.dev/rollout-action": "abort@t1"}, ModelDeploymentStatus())
    Action(value='abort@t1', action=<RolloutAction.ABORT: 'abort'>)
    """
    value = annotations.get(ROLLOUT_ACTION_ANNOTATION)
    if not value or value == old.last_action:
        return None
    name = value.split("@", 1)[0].strip().lower()
    known = {a.value: a for a in RolloutAction}
    return Action(value, known.get(name))


def apply_action(
    plan: RolloutPlan,
    action: Action,
    spec_rollout: Rollout,
    stable: ServedVersion,
    candidate: ServedVersion | None,
) -> tuple[RolloutPlan, str, bool]:
    """The plan once the user's action is taken, what to tell them, and whether it was.
    Promote and abort end a rollout under way; undo turns a promotion back into a
    rollback (the spec's stable serves again). An action that does not apply changes
    nothing and says why."""
    state = plan.decision.state
    names = ", ".join(a.value for a in RolloutAction)
    if action.action is None:
        return plan, f"unknown rollout action {action.value!r}: use one of {names}", False
    if candidate is None:
        return plan, f"{action.action}: no candidate in spec.candidate, nothing to act on", False
    outcome, verdict, message = None, None, ""
    if action.action == RolloutAction.UNDO:
        if state.outcome != AnalysisDecision.PROMOTE:
            said = f"undo: {candidate.version} is not promoted; use abort during a rollout"
            return plan, said, False
        outcome, verdict = AnalysisDecision.ROLLBACK, AnalysisDecision.ROLLBACK
        message = f"undone by the user: {stable.version} is stable again"
    elif state.finished:
        return plan, f"{action.action}: the rollout of {candidate.version} has finished", False
    elif action.action == RolloutAction.PROMOTE:
        outcome, verdict = AnalysisDecision.PROMOTE, AnalysisDecision.PROMOTE
        message = "promoted by the user"
    else:
        outcome, verdict = AnalysisDecision.ROLLBACK, AnalysisDecision.ROLLBACK
        message = "aborted by the user"
    done = dataclasses.replace(state, outcome=outcome)
    split = rollout.traffic(spec_rollout, done, stable.version, candidate.version)
    wanted = rollout.served(spec_rollout, done, stable.version, candidate.version)
    versions = [v for v in (stable, candidate) if v.version in wanted]
    return RolloutPlan(rollout.Decision(done, verdict, message), split, versions), message, True


def previous_stable(old: ModelDeploymentStatus) -> ServedVersion | None:
    """The stable before the last promotion, as the status remembers it (None before a
    promotion, or for a status written before it kept the artifact)."""
    if not old.previous_stable_version or not old.previous_stable_artifact:
        return None
    model = old.previous_stable_model or ""
    return ServedVersion(model, old.previous_stable_version, old.previous_stable_artifact)


def remember_stable(new: ModelDeploymentStatus, stable: ServedVersion) -> ModelDeploymentStatus:
    """A promotion's status records where the stable of before it is (a later pass,
    whose stable is the promoted version, leaves the record as it is)."""
    if new.previous_stable_version != stable.version:
        return new
    if new.previous_stable_artifact == stable.artifact_uri:
        return new
    out = new.model_copy()
    out.previous_stable_model = stable.model_name or None
    out.previous_stable_artifact = stable.artifact_uri
    return out


def undo_versions(
    old: ModelDeploymentStatus,
    stable: ServedVersion,
    candidate: ServedVersion | None,
    action: Action | None,
) -> tuple[ServedVersion, ServedVersion | None]:
    """(stable, candidate) to plan with, when an undo concerns a promotion the spec no
    longer names: after a promotion by alias, `champion` names the promoted version and
    no candidate is left. The previous stable (from the status) is the stable to go back
    to and the promoted version the candidate, both when the undo is asked for and until
    the registry's `champion` is back on the previous stable."""
    previous = previous_stable(old)
    if previous is None or previous.version == stable.version:
        return stable, candidate
    asked = action is not None and action.action == RolloutAction.UNDO
    if asked and candidate is None and old.stable_version == stable.version:
        return previous, stable  # promoted, serving alone: the undo is of its promotion
    undone = (
        old.phase == ROLLED_BACK
        and old.stable_version == previous.version
        and old.candidate_version == stable.version
    )
    if undone:  # undone already; champion still names the undone version
        return previous, stable
    return stable, candidate


def keep_previous(
    plan: RolloutPlan,
    old: ModelDeploymentStatus,
    previous_stable_window: timedelta,
    now: datetime,
) -> RolloutPlan:
    """After a promotion that left no candidate in the spec (a promotion by alias), the
    stable of before keeps its servers for `previous_stable_window`, as `keep_warm`
    keeps it when the spec still names it."""
    previous = previous_stable(old)
    if previous is None or old.finished_at is None or old.phase not in ("Promoted", "Ready"):
        return plan
    if previous in plan.versions or now >= old.finished_at + previous_stable_window:
        return plan
    if any(v.version == previous.version for v in plan.versions):
        return plan
    return dataclasses.replace(plan, versions=[*plan.versions, previous])


def keep_warm(
    plan: RolloutPlan,
    stable: ServedVersion,
    candidate: ServedVersion | None,
    finished_at: datetime,
    scale_down_delay: timedelta,
    previous_stable_window: timedelta,
    now: datetime,
) -> RolloutPlan:
    """A finished rollout keeps the version that lost its traffic serving for a while,
    with no weight: a rolled-back candidate for `scale_down_delay` (scaling it down at
    once would lose what an investigation needs), the stable of before a promotion for
    `previous_stable_window` (so an undo is instant, no cold start)."""
    outcome = plan.decision.state.outcome
    if candidate is None or outcome is None:
        return plan
    if outcome == AnalysisDecision.ROLLBACK:
        kept, window = candidate, scale_down_delay
    elif outcome == AnalysisDecision.PROMOTE:
        kept, window = stable, previous_stable_window
    else:
        return plan
    if kept in plan.versions or now >= finished_at + window:
        return plan
    return dataclasses.replace(plan, versions=[*plan.versions, kept])


def warm_until(
    outcome: AnalysisDecision | None,
    finished_at: datetime,
    scale_down_delay: timedelta,
    previous_stable_window: timedelta,
) -> datetime | None:
    """When `keep_warm` stops keeping the version a finished rollout left without traffic;
    None when the rollout keeps nothing warm."""
    if outcome == AnalysisDecision.ROLLBACK:
        return finished_at + scale_down_delay
    if outcome == AnalysisDecision.PROMOTE:
        return finished_at + previous_stable_window
    return None


def finished_at(
    old: ModelDeploymentStatus, outcome: AnalysisDecision | None, now: datetime
) -> datetime:
    """When the rollout reached `outcome`: kept in status, else now (this pass)."""
    phase = {AnalysisDecision.PROMOTE: "Promoted", AnalysisDecision.ROLLBACK: "RolledBack"}
    if outcome in phase and old.phase == phase[outcome] and old.finished_at is not None:
        return old.finished_at
    return now


def windows(spec: ModelDeploymentSpec) -> tuple[timedelta, timedelta]:
    """(scaleDownDelay, previousStableWindow)."""
    return (
        timedelta(seconds=duration_seconds(spec.scale_down_delay)),
        timedelta(seconds=duration_seconds(spec.previous_stable_window)),
    )


def past_deadline(
    decision: rollout.Decision, deadline: timedelta | None, now: datetime
) -> rollout.Decision:
    """An inconclusive step older than the deadline rolls back: a candidate that never
    gets measured (no traffic, a router that cannot reach it) must not hold forever."""
    state = decision.state
    if (
        deadline is None
        or decision.decision != AnalysisDecision.INCONCLUSIVE
        or state.step_started is None
        or now - state.step_started <= deadline
    ):
        return decision
    done = dataclasses.replace(state, outcome=AnalysisDecision.ROLLBACK)
    message = f"no conclusive analysis within progressDeadline ({decision.message})"
    return rollout.Decision(done, AnalysisDecision.ROLLBACK, message)


def rollout_state(status: ModelDeploymentStatus, candidate: str | None) -> rollout.State:
    """The rollout state kept in status; a different candidate starts a new rollout."""
    if candidate is None:
        return rollout.State()
    if status.stable_version == candidate:
        return rollout.State(outcome=AnalysisDecision.PROMOTE)
    if status.candidate_version != candidate:
        return rollout.State()
    if status.phase == "RolledBack":
        return rollout.State(outcome=AnalysisDecision.ROLLBACK)
    return rollout.State(
        step=status.step or 0,
        step_started=status.step_started,
        failures=status.failed_analyses,
        p_value=status.ab_test.p_value if status.ab_test else 1.0,
    )


def is_serving(backend: Backend | str, applied: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether the applied children (with their current status) serve, and why not."""
    if backend == Backend.RAYSERVE:
        return observe.rayservice_ready(applied[0])
    problems = []
    for child in applied:
        if child["kind"] == "Deployment":
            ready, why = observe.deployment_ready(child)
            if not ready:
                problems.append(f"{child['metadata']['name']}: {why}")
    return not problems, "; ".join(problems) or "all versions and the router are available"


def status(
    old: ModelDeploymentStatus,
    generation: int,
    spec_rollout: Rollout,
    stable: str,
    candidate: str | None,
    decision: rollout.Decision,
    split: dict[str, float],
    serving: tuple[bool, str],
    now: datetime,
    url: str,
    measured: rollout.Metrics | None = None,
    action: str | None = None,
) -> ModelDeploymentStatus:
    """`action`: the annotation value handled in this pass, if any."""
    status = old.model_copy(deep=True)
    if action is not None:
        status.last_action = action
    status.observed_generation = generation
    state = decision.state
    status.traffic = split
    status.traffic_summary = rollout.summary(split)
    status.url = url
    status.last_analysis = AnalysisResult(
        time=now,
        decision=decision.decision,
        message=decision.message,
        requests=measured.requests if measured else 0,
        error_rate=measured.error_rate if measured and measured.requests else None,
        p99_latency_ms=measured.p99_latency_ms if measured else None,
        agreement=measured.agreement if measured else None,
    )
    status.failed_analyses = state.failures
    status.ab_test = decision.ab_test or status.ab_test
    status.step = state.step
    status.step_started = state.step_started
    steps = spec_rollout.canary.steps if spec_rollout.canary else []
    status.step_summary = f"{state.step + 1}/{len(steps)}" if steps and candidate else None
    status.stable_version = stable
    status.candidate_version = candidate
    ready, why = serving
    set_status_condition(status, READY, ready, "Serving" if ready else "NotServing", why, now)
    if state.outcome == AnalysisDecision.PROMOTE and candidate:
        status.stable_version, status.candidate_version = candidate, None
        status.previous_stable_version = stable
        if old.phase != "Promoted":
            status.finished_at = now
        set_status_condition(
            status, PROMOTED, True, "AnalysisPassed", f"{candidate}: {decision.message}", now
        )
        set_status_condition(status, ROLLED_BACK, False, "Promoted", "", now)
        set_status_condition(status, PROGRESSING, False, "RolloutFinished", "", now)
        status.phase = "Promoted"
    elif state.outcome == AnalysisDecision.ROLLBACK and candidate:
        set_status_condition(
            status,
            ROLLED_BACK,
            True,
            "AnalysisFailed",
            f"{candidate}: {decision.message}; stable {stable} keeps serving",
            now,
        )
        set_status_condition(status, PROMOTED, False, "RolledBack", "", now)
        set_status_condition(status, PROGRESSING, False, "RolloutFinished", "", now)
        if old.phase != "RolledBack":
            status.finished_at = now
        status.phase = "RolledBack"
    elif candidate:
        set_status_condition(
            status, PROGRESSING, True, decision.decision.value, decision.message, now
        )
        set_status_condition(status, PROMOTED, False, "RolloutInProgress", "", now)
        status.phase = "Progressing" if ready else "Deploying"
    else:
        set_status_condition(status, PROGRESSING, False, "NoCandidate", "", now)
        status.phase = "Ready" if ready else "Deploying"
    return status


@dataclasses.dataclass(frozen=True)
class RolloutEvent:
    type: str  # Normal or Warning
    reason: str
    message: str


def rollout_events(old: ModelDeploymentStatus, new: ModelDeploymentStatus) -> list[RolloutEvent]:
    """What `kubectl describe md` should tell of this pass: a new rollout, a new step, a
    failed analysis, a change of verdict. (Promoted and RolledBack are phase Events.)"""
    if new.candidate_version is None:
        return []
    events = []
    analysis = new.last_analysis
    said = analysis.message if analysis else ""
    if new.candidate_version != old.candidate_version:
        events.append(
            RolloutEvent(
                "Normal",
                "RolloutStarted",
                f"{new.stable_version} -> {new.candidate_version}: {new.traffic_summary}",
            )
        )
    elif new.step != old.step:
        events.append(
            RolloutEvent(
                "Normal", "RolloutStep", f"step {new.step_summary}: {new.traffic_summary}; {said}"
            )
        )
    if new.failed_analyses > old.failed_analyses:
        events.append(RolloutEvent("Warning", "AnalysisFailed", said))
    old_verdict = old.last_analysis.decision if old.last_analysis else None
    if analysis and analysis.decision != old_verdict:
        events.append(RolloutEvent("Normal", f"Analysis{analysis.decision}", said))
    return events


BATCH_PREDICTED = "BatchPredicted"


def batch_model(
    spec: ModelDeploymentSpec,
    served: Iterable[ServedVersion | None],
    stable_version: str | None,
    upstream: dict[str, dict[str, Any]],
    artifact_root: str,
    moves: Iterable[aliases.Assignment] = (),
) -> ServedVersion | None:
    """The version batch prediction scores with: `batchPrediction.model`, else the
    version the deployment serves as stable now (after a promotion, the promoted one);
    None while it is not known yet."""
    batch = spec.batch_prediction
    assert batch is not None
    if batch.model is not None:
        return resolve(batch.model, upstream, artifact_root, moves)
    return next((v for v in served if v is not None and v.version == stable_version), None)


def had_batch(status: ModelDeploymentStatus) -> bool:
    return status.batch_prediction is not None or any(
        c.type == BATCH_PREDICTED for c in status.conditions
    )


def without_batch(status: ModelDeploymentStatus) -> ModelDeploymentStatus:
    """The status once spec.batchPrediction is removed: no batch field, no condition."""
    out = status.model_copy(deep=True)
    out.batch_prediction = None
    out.conditions = [c for c in out.conditions if c.type != BATCH_PREDICTED]
    return out


def batch_status(
    new: ModelDeploymentStatus, old: ModelDeploymentStatus, run: Run, now: datetime
) -> ModelDeploymentStatus:
    """`status.batchPrediction` from the CronJob's latest run, and the BatchPredicted
    condition: True once a run published (it stays so while the next one runs), False
    with the runtime's error when the latest failed (the last published run stays)."""
    out = new.model_copy(deep=True)
    out.batch_prediction = old.batch_prediction
    result = (run.result or {}).get("batchPrediction")
    if run.state == RunState.SUCCEEDED and isinstance(result, dict):
        out.batch_prediction = BatchPredictionStatus.model_validate(redact(result))
        done = out.batch_prediction
        message = (
            f"{done.rows} entities scored by version {done.model_version}: "
            f"{done.view}/{done.score_name}, Parquet version {done.output_version}"
        )
        set_status_condition(out, BATCH_PREDICTED, True, "Published", message, now)
    elif run.state == RunState.FAILED or run.state == RunState.SUCCEEDED:
        failure = run.message or "the run reported no result"
        set_status_condition(out, BATCH_PREDICTED, False, "BatchFailed", failure, now)
    elif out.batch_prediction is None:
        waiting = "waiting for the first run" if run.state == RunState.MISSING else "running"
        set_status_condition(
            out, BATCH_PREDICTED, ConditionStatus.UNKNOWN, "Scheduled", waiting, now
        )
    else:
        kept = [c for c in old.conditions if c.type == BATCH_PREDICTED]
        out.conditions = [c for c in out.conditions if c.type != BATCH_PREDICTED] + kept
    return out
