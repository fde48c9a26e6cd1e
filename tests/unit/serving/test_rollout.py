"""Rollout policies: steps, pauses, analysis, promotion and rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from flywheel.api.modeldeployment import AnalysisDecision, Rollout
from flywheel.serving import rollout
from flywheel.serving.rollout import Metrics, State

T0 = datetime(2026, 5, 1, tzinfo=UTC)
CANARY = Rollout.model_validate(
    {
        "strategy": "canary",
        "canary": {
            "steps": [
                {"weight": 10, "pause": "5m"},
                {"weight": 50, "pause": "5m"},
                {"weight": 100},
            ],
            "analysis": {
                "minRequests": 100,
                "maxErrorRate": 0.01,
                "maxP99LatencyMs": 200,
                "failureLimit": 1,
            },
        },
    }
)
GOOD = Metrics(requests=500, errors=1, p99_latency_ms=120)
BAD = Metrics(requests=500, errors=50, p99_latency_ms=120)


def test_canary_walks_its_steps_after_each_pause_and_promotes() -> None:
    d = rollout.step(CANARY, State(), GOOD, T0)
    assert d.state.step == 0 and "pausing" in d.message
    d = rollout.step(CANARY, d.state, GOOD, T0 + timedelta(minutes=5))
    assert d.state.step == 1 and d.state.step_started == T0 + timedelta(minutes=5)
    assert rollout.traffic(CANARY, d.state, "v1", "v2") == {"v1": 50.0, "v2": 50.0}
    d = rollout.step(CANARY, d.state, GOOD, T0 + timedelta(minutes=10))
    assert d.state.step == 2
    d = rollout.step(CANARY, d.state, GOOD, T0 + timedelta(minutes=10))
    assert d.decision == AnalysisDecision.PROMOTE and d.state.finished
    assert rollout.traffic(CANARY, d.state, "v1", "v2") == {"v2": 100.0}
    assert rollout.served(CANARY, d.state, "v1", "v2") == ["v2"]


def test_no_data_is_inconclusive_and_never_promotes() -> None:
    state = State(step=2, step_started=T0)
    for metrics in (None, Metrics(requests=99)):
        d = rollout.step(CANARY, state, metrics, T0 + timedelta(days=30))
        assert d.decision == AnalysisDecision.INCONCLUSIVE and not d.state.finished


def test_failures_past_the_limit_roll_back() -> None:
    d = rollout.step(CANARY, State(step=1, step_started=T0), BAD, T0)
    assert (
        d.decision == AnalysisDecision.ROLLBACK and not d.state.finished and d.state.failures == 1
    )
    d = rollout.step(CANARY, d.state, BAD, T0)
    assert d.state.outcome == AnalysisDecision.ROLLBACK
    assert "error rate 0.1000 > 0.01" in d.message
    assert rollout.traffic(CANARY, d.state, "v1", "v2") == {"v1": 100.0}


def test_latency_breach_fails_the_analysis() -> None:
    assert CANARY.canary is not None
    verdict, message = rollout.analyse(
        CANARY.canary.analysis, Metrics(requests=500, p99_latency_ms=900)
    )
    assert verdict == AnalysisDecision.ROLLBACK and "p99" in message


def test_shadow_promotes_on_agreement_after_its_duration() -> None:
    shadow = Rollout.model_validate(
        {"strategy": "shadow", "shadow": {"duration": "1h", "agreementThreshold": 0.9}}
    )
    s = rollout.step(shadow, State(), Metrics(requests=10, agreement=0.99), T0)
    assert s.decision == AnalysisDecision.CONTINUE
    assert rollout.traffic(shadow, s.state, "v1", "v2") == {"v1": 100.0}
    assert rollout.served(shadow, s.state, "v1", "v2") == ["v1", "v2"]
    done = rollout.step(
        shadow, s.state, Metrics(requests=10, agreement=0.95), T0 + timedelta(hours=1)
    )
    assert done.decision == AnalysisDecision.PROMOTE
    low = rollout.step(
        shadow, s.state, Metrics(requests=10, agreement=0.5), T0 + timedelta(hours=1)
    )
    assert low.decision == AnalysisDecision.ROLLBACK


def test_bandit_keeps_the_floor_and_promotes_a_dominant_arm() -> None:
    bandit = Rollout.model_validate(
        {"strategy": "bandit", "bandit": {"floor": 0.1, "promoteThreshold": 0.9, "minSamples": 50}}
    )
    split = rollout.traffic(bandit, State(), "v1", "v2", candidate_share=0.99)
    assert split == {"v1": 10.0, "v2": 90.0}
    assert (
        rollout.step(bandit, State(), Metrics(requests=10, candidate_share=0.99), T0).decision
        == AnalysisDecision.INCONCLUSIVE
    )
    assert (
        rollout.step(bandit, State(), Metrics(requests=60, candidate_share=0.95), T0).decision
        == AnalysisDecision.PROMOTE
    )
    assert (
        rollout.step(bandit, State(), Metrics(requests=60, candidate_share=0.05), T0).decision
        == AnalysisDecision.ROLLBACK
    )


@given(st.integers(0, 2), st.sampled_from([None, GOOD, BAD]))
def test_canary_split_always_sums_to_100(step: int, metrics: Metrics | None) -> None:
    d = rollout.step(CANARY, State(step=step, step_started=T0), metrics, T0 + timedelta(hours=1))
    assert sum(rollout.traffic(CANARY, d.state, "v1", "v2").values()) == 100.0
