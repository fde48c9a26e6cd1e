"""Rollout policies: what traffic each version gets and when to promote or roll back.

Pure functions of the spec, the previous rollout state, the router's metrics for the
current step and the clock. No data, or too little, is inconclusive: it never promotes.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from flywheel.api.common import duration_seconds
from flywheel.api.modeldeployment import (
    Analysis,
    AnalysisDecision,
    Rollout,
    Strategy,
)


@dataclasses.dataclass(frozen=True)
class Metrics:
    """What the router measured for the candidate since the current step began."""

    requests: int
    errors: int = 0
    p99_latency_ms: float | None = None
    agreement: float | None = None  # shadow: share of matching predictions
    candidate_share: float | None = None  # bandit: the candidate arm's posterior share

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclasses.dataclass(frozen=True)
class State:
    """Where a rollout stands; kept in the ModelDeployment status between reconciles."""

    step: int = 0
    step_started: datetime | None = None
    failures: int = 0
    outcome: AnalysisDecision | None = None  # Promote or Rollback once finished

    @property
    def finished(self) -> bool:
        return self.outcome in (AnalysisDecision.PROMOTE, AnalysisDecision.ROLLBACK)


@dataclasses.dataclass(frozen=True)
class Decision:
    state: State
    decision: AnalysisDecision
    message: str


def analyse(analysis: Analysis, metrics: Metrics | None) -> tuple[AnalysisDecision, str]:
    """One canary analysis: pass (Continue), fail (Rollback) or Inconclusive."""
    if metrics is None or metrics.requests < analysis.min_requests:
        seen = 0 if metrics is None else metrics.requests
        return AnalysisDecision.INCONCLUSIVE, f"{seen}/{analysis.min_requests} requests"
    problems = []
    if metrics.error_rate > analysis.max_error_rate:
        problems.append(f"error rate {metrics.error_rate:.4f} > {analysis.max_error_rate}")
    if metrics.p99_latency_ms is not None and metrics.p99_latency_ms > analysis.max_p99_latency_ms:
        problems.append(f"p99 {metrics.p99_latency_ms:.1f}ms > {analysis.max_p99_latency_ms}ms")
    if analysis.min_agreement is not None:
        if metrics.agreement is None:
            return AnalysisDecision.INCONCLUSIVE, "no agreement measured yet"
        if metrics.agreement < analysis.min_agreement:
            problems.append(f"agreement {metrics.agreement:.3f} < {analysis.min_agreement}")
    if problems:
        return AnalysisDecision.ROLLBACK, "; ".join(problems)
    return AnalysisDecision.CONTINUE, f"{metrics.requests} requests within limits"


def step(rollout: Rollout, state: State, metrics: Metrics | None, now: datetime) -> Decision:
    """The next rollout state."""
    if state.finished:
        return Decision(state, state.outcome or AnalysisDecision.CONTINUE, "rollout finished")
    started = state.step_started or now
    state = dataclasses.replace(state, step_started=started)
    match rollout.strategy:
        case Strategy.NONE:
            return Decision(state, AnalysisDecision.CONTINUE, "no rollout strategy")
        case Strategy.CANARY:
            return _canary(rollout, state, metrics, now)
        case Strategy.SHADOW:
            return _shadow(rollout, state, metrics, now)
        case Strategy.BANDIT:
            return _bandit(rollout, state, metrics)
    raise AssertionError(rollout.strategy)


def _canary(rollout: Rollout, state: State, metrics: Metrics | None, now: datetime) -> Decision:
    assert rollout.canary is not None
    canary = rollout.canary
    verdict, message = analyse(canary.analysis, metrics)
    if verdict == AnalysisDecision.ROLLBACK:
        failures = state.failures + 1
        if failures > canary.analysis.failure_limit:
            done = dataclasses.replace(state, failures=failures, outcome=AnalysisDecision.ROLLBACK)
            return Decision(done, AnalysisDecision.ROLLBACK, message)
        return Decision(dataclasses.replace(state, failures=failures), verdict, message)
    if verdict == AnalysisDecision.INCONCLUSIVE:
        return Decision(state, verdict, message)
    current = canary.steps[state.step]
    pause = timedelta(seconds=duration_seconds(current.pause)) if current.pause else timedelta()
    assert state.step_started is not None
    if now < state.step_started + pause:
        return Decision(
            state,
            AnalysisDecision.CONTINUE,
            f"{message}; pausing at step {state.step + 1}/{len(canary.steps)}",
        )
    if state.step + 1 >= len(canary.steps):
        done = dataclasses.replace(state, outcome=AnalysisDecision.PROMOTE)
        return Decision(done, AnalysisDecision.PROMOTE, f"{message}; last step passed")
    advanced = State(step=state.step + 1, step_started=now, failures=state.failures)
    # Steps are counted from 1 in messages, as in the status's step summary ("2/3").
    to = f"{message}; to step {state.step + 2}/{len(canary.steps)}"
    return Decision(advanced, AnalysisDecision.CONTINUE, to)


def _shadow(rollout: Rollout, state: State, metrics: Metrics | None, now: datetime) -> Decision:
    assert rollout.shadow is not None
    shadow = rollout.shadow
    assert state.step_started is not None
    if now < state.step_started + timedelta(seconds=duration_seconds(shadow.duration)):
        return Decision(state, AnalysisDecision.CONTINUE, "shadowing")
    if metrics is None or metrics.agreement is None or metrics.requests == 0:
        return Decision(state, AnalysisDecision.INCONCLUSIVE, "no shadow comparisons yet")
    if metrics.agreement >= shadow.agreement_threshold:
        done = dataclasses.replace(state, outcome=AnalysisDecision.PROMOTE)
        return Decision(done, AnalysisDecision.PROMOTE, f"agreement {metrics.agreement:.3f}")
    done = dataclasses.replace(state, outcome=AnalysisDecision.ROLLBACK)
    return Decision(
        done,
        AnalysisDecision.ROLLBACK,
        f"agreement {metrics.agreement:.3f} < {shadow.agreement_threshold}",
    )


def _bandit(rollout: Rollout, state: State, metrics: Metrics | None) -> Decision:
    assert rollout.bandit is not None
    bandit = rollout.bandit
    if metrics is None or metrics.candidate_share is None or metrics.requests < bandit.min_samples:
        seen = 0 if metrics is None else metrics.requests
        return Decision(
            state, AnalysisDecision.INCONCLUSIVE, f"{seen}/{bandit.min_samples} samples"
        )
    if metrics.candidate_share >= bandit.promote_threshold:
        done = dataclasses.replace(state, outcome=AnalysisDecision.PROMOTE)
        return Decision(
            done, AnalysisDecision.PROMOTE, f"candidate share {metrics.candidate_share:.3f}"
        )
    if 1 - metrics.candidate_share >= bandit.promote_threshold:
        done = dataclasses.replace(state, outcome=AnalysisDecision.ROLLBACK)
        return Decision(
            done, AnalysisDecision.ROLLBACK, f"stable share {1 - metrics.candidate_share:.3f}"
        )
    return Decision(
        state, AnalysisDecision.CONTINUE, f"candidate share {metrics.candidate_share:.3f}"
    )


def traffic(
    rollout: Rollout,
    state: State,
    stable: str,
    candidate: str | None,
    candidate_share: float | None = None,
) -> dict[str, float]:
    """Percent of user requests per version. Shadow copies are not user traffic."""
    if candidate is None or rollout.strategy == Strategy.NONE:
        return {stable: 100.0}
    if state.outcome == AnalysisDecision.PROMOTE:
        return {candidate: 100.0}
    if state.outcome == AnalysisDecision.ROLLBACK or rollout.strategy == Strategy.SHADOW:
        return {stable: 100.0}
    if rollout.strategy == Strategy.CANARY:
        assert rollout.canary is not None
        weight = float(rollout.canary.steps[state.step].weight)
        return {stable: 100.0 - weight, candidate: weight}
    assert rollout.bandit is not None
    # Bandit: the router samples arms itself; this is the starting split and the floor.
    share = 50.0 if candidate_share is None else candidate_share * 100
    share = min(share, 100.0 - rollout.bandit.floor * 100)
    return {stable: 100.0 - share, candidate: share}


def served(rollout: Rollout, state: State, stable: str, candidate: str | None) -> list[str]:
    """Versions that need model servers: those with traffic, plus a shadowed candidate."""
    if candidate is None or rollout.strategy == Strategy.NONE:
        return [stable]
    if state.outcome == AnalysisDecision.PROMOTE:
        return [candidate]
    if state.outcome == AnalysisDecision.ROLLBACK:
        return [stable]
    return [stable, candidate]


def summary(split: dict[str, float]) -> str:
    """`v1=90 v2=10`, for the printer column."""
    return " ".join(f"{v}={w:g}" for v, w in split.items())
