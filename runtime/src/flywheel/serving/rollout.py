"""Rollout policies: what traffic each version gets and when to promote or roll back.

Pure functions of the spec, the previous rollout state, the router's metrics for the
current step and the clock. No data, or too little, is inconclusive: it never promotes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flywheel.api.common import duration_seconds
from flywheel.api.modeldeployment import (
    AbTestRollout,
    AbTestStatus,
    Analysis,
    AnalysisDecision,
    Rollout,
    Strategy,
)
from flywheel.serving import abtest


@dataclasses.dataclass(frozen=True)
class Counts:
    """One arm's outcomes for an A/B test: observations and successes among them."""

    n: int
    successes: int


@dataclasses.dataclass(frozen=True)
class Metrics:
    """What the router measured for the candidate since the current step began."""

    requests: int
    errors: int = 0
    p99_latency_ms: float | None = None
    agreement: float | None = None  # shadow: share of matching predictions
    candidate_share: float | None = None  # bandit: the candidate arm's posterior share
    # abtest: the outcomes of stable (control) and of the candidate (treatment).
    control: Counts | None = None
    treatment: Counts | None = None

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
    p_value: float = 1.0  # abtest: the always-valid p-value so far (it never rises)

    @property
    def finished(self) -> bool:
        return self.outcome in (AnalysisDecision.PROMOTE, AnalysisDecision.ROLLBACK)


@dataclasses.dataclass(frozen=True)
class Decision:
    state: State
    decision: AnalysisDecision
    message: str
    ab_test: AbTestStatus | None = None  # abtest: the test's counts, statistic and verdict


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
        case Strategy.ABTEST:
            return _abtest(rollout, state, metrics)
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


def planned(ab: AbTestRollout) -> int:
    """Observations per arm the A/B test plans for.

    >>> from flywheel.api.modeldeployment import AbTestRollout
    >>> planned(AbTestRollout(baseline_rate=0.10, minimum_detectable_effect=0.02))
    3841
    """
    if ab.min_sample_size is not None:
        return ab.min_sample_size
    return abtest.sample_size(ab.baseline_rate, ab.minimum_detectable_effect, ab.alpha, ab.power)


_VERDICTS = {
    abtest.Verdict.CANDIDATE_BETTER: AnalysisDecision.PROMOTE,
    abtest.Verdict.CANDIDATE_WORSE: AnalysisDecision.ROLLBACK,
    # No effect of the declared size: nothing shows the candidate better; stable stays.
    abtest.Verdict.NO_DIFFERENCE: AnalysisDecision.ROLLBACK,
    abtest.Verdict.CONTINUE: AnalysisDecision.CONTINUE,
    abtest.Verdict.INSUFFICIENT: AnalysisDecision.INCONCLUSIVE,
}


def _abtest(rollout: Rollout, state: State, metrics: Metrics | None) -> Decision:
    """The sequential test on every call; its p-value is carried in the state, so reading
    it after every step keeps the false-positive rate at alpha."""
    assert rollout.abtest is not None
    ab = rollout.abtest
    plan = planned(ab)
    control = metrics.control if metrics else None
    treatment = metrics.treatment if metrics else None
    if control is None or treatment is None:
        shown = AbTestStatus(metric=ab.metric, planned_per_arm=plan, p_value=state.p_value)
        return Decision(state, AnalysisDecision.INCONCLUSIVE, "no outcomes per arm yet", shown)
    found = abtest.decide(
        abtest.Arm(control.n, control.successes),
        abtest.Arm(treatment.n, treatment.successes),
        ab.minimum_detectable_effect,
        ab.alpha,
        plan,
        state.p_value,
    )
    decision = _VERDICTS[found.verdict]
    outcome = (
        decision if decision in (AnalysisDecision.PROMOTE, AnalysisDecision.ROLLBACK) else None
    )
    state = dataclasses.replace(state, p_value=found.p_value, outcome=outcome)
    shown = AbTestStatus(
        metric=ab.metric,
        planned_per_arm=plan,
        control_observations=control.n,
        control_successes=control.successes,
        candidate_observations=treatment.n,
        candidate_successes=treatment.successes,
        effect=found.effect,
        interval=list(found.interval) if found.interval else [],
        p_value=found.p_value,
        verdict=found.verdict.value,
    )
    return Decision(state, decision, f"{found.verdict.value}: {found.reason}", shown)


def ab_counts(
    report: Mapping[str, Any], candidate: str, metric: str
) -> tuple[Counts, Counts] | None:
    """(stable, candidate) outcomes from a router's rollout report (its `versions`
    windows): feedback and rewards above 0, or requests and those without an error.

    >>> ab_counts({"stable": "v1", "versions": {
    ...     "v1": {"requests": 9, "errors": 1, "feedback": 5, "rewarded": 2},
    ...     "v2": {"requests": 3, "errors": 0, "feedback": 3, "rewarded": 3}}}, "v2", "reward")
    (Counts(n=5, successes=2), Counts(n=3, successes=3))
    """
    windows = report.get("versions") or {}
    found = []
    for version in (report.get("stable"), candidate):
        w = windows.get(version) if isinstance(version, str) else None
        if not isinstance(w, Mapping):
            return None
        if metric == "reward":
            found.append(Counts(int(w.get("feedback") or 0), int(w.get("rewarded") or 0)))
        else:
            n = int(w.get("requests") or 0)
            found.append(Counts(n, n - int(w.get("errors") or 0)))
    return found[0], found[1]


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
    if rollout.strategy == Strategy.ABTEST:
        assert rollout.abtest is not None
        return {stable: 100.0 - rollout.abtest.split, candidate: rollout.abtest.split}
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
