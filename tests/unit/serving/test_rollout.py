"""Rollout policies: steps, pauses, analysis, promotion and rollback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
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


# --- properties over generated rollouts -------------------------------------------------

durations = st.one_of(
    st.none(), st.integers(1, 120).map(lambda n: f"{n}m"), st.integers(1, 48).map(lambda n: f"{n}h")
)
canaries = st.builds(
    lambda weights, pauses, analysis: {
        "strategy": "canary",
        "canary": {
            "steps": [
                {"weight": w, **({"pause": p} if p else {})}
                for w, p in zip(weights, pauses, strict=False)
            ],
            "analysis": analysis,
        },
    },
    st.sets(st.integers(1, 100), min_size=1, max_size=6).map(sorted),
    st.lists(durations, min_size=6, max_size=6),
    st.fixed_dictionaries(
        {
            "minRequests": st.integers(1, 1000),
            "maxErrorRate": st.floats(0, 1),
            "maxP99LatencyMs": st.floats(1, 5000),
            "failureLimit": st.integers(0, 5),
        },
        optional={"minAgreement": st.floats(0, 1)},
    ),
)
shadows = st.builds(
    lambda duration, threshold: {
        "strategy": "shadow",
        "shadow": {"duration": duration, "agreementThreshold": threshold},
    },
    durations.filter(lambda d: d is not None),
    st.floats(0, 1),
)
bandits = st.builds(
    lambda floor, threshold, samples: {
        "strategy": "bandit",
        "bandit": {"floor": floor, "promoteThreshold": threshold, "minSamples": samples},
    },
    st.floats(0, 0.5),
    st.floats(0.51, 1),
    st.integers(1, 1000),
)
rollouts = st.one_of(canaries, shadows, bandits, st.just({"strategy": "none"})).map(
    Rollout.model_validate
)
measurements = st.one_of(
    st.none(),
    st.builds(
        lambda requests, error_share, p99, agreement, share: Metrics(
            requests=requests,
            errors=int(requests * error_share),
            p99_latency_ms=p99,
            agreement=agreement,
            candidate_share=share,
        ),
        st.integers(0, 5000),
        st.floats(0, 1),
        st.one_of(st.none(), st.floats(0, 10_000)),
        st.one_of(st.none(), st.floats(0, 1)),
        st.one_of(st.none(), st.floats(0, 1)),
    ),
)
# Each reconcile: how far the clock moved since the last one, and what the router measured.
reconciles = st.lists(
    st.tuples(st.integers(0, 3 * 24 * 3600).map(lambda s: timedelta(seconds=s)), measurements),
    min_size=1,
    max_size=12,
)


@given(rollouts, reconciles)
def test_every_rollout_keeps_its_invariants(spec: Rollout, seen: list[Any]) -> None:
    state, now = State(), T0
    for moved, metrics in seen:
        now += moved
        before = state
        d = rollout.step(spec, state, metrics, now)
        state = d.state
        share = metrics.candidate_share if metrics else None
        split = rollout.traffic(spec, state, "v1", "v2", candidate_share=share)
        assert sum(split.values()) == pytest.approx(100.0)
        assert all(0 <= w <= 100 for w in split.values()), split
        servers = rollout.served(spec, state, "v1", "v2")
        assert {v for v, w in split.items() if w > 0} <= set(servers), (split, servers)
        # A finished rollout stays finished with the same outcome.
        if before.finished:
            assert state.outcome == before.outcome and d.decision == before.outcome
            continue
        if d.decision == AnalysisDecision.PROMOTE:
            assert metrics is not None and metrics.requests > 0, "promoted without data"
            assert split == {"v2": 100.0} and servers == ["v2"]
        if d.decision == AnalysisDecision.INCONCLUSIVE or metrics is None:
            assert d.decision != AnalysisDecision.PROMOTE and state.outcome != "Promote"
        if state.outcome == AnalysisDecision.ROLLBACK:
            assert split == {"v1": 100.0} and servers == ["v1"]
        match spec.strategy:
            case "shadow" if not state.finished:
                # Shadow copies are not user traffic; the candidate still needs its servers.
                assert split == {"v1": 100.0} and servers == ["v1", "v2"]
            case "bandit" if not state.finished:
                assert spec.bandit is not None
                assert split["v1"] >= spec.bandit.floor * 100 - 1e-9
            case "canary" if not state.finished:
                assert spec.canary is not None
                assert before.step <= state.step <= before.step + 1
                assert split["v2"] == spec.canary.steps[state.step].weight
                if state.step > before.step:
                    assert d.decision == AnalysisDecision.CONTINUE
            case "none":
                assert split == {"v1": 100.0} and d.decision == AnalysisDecision.CONTINUE


@given(rollouts, st.integers(0, 3 * 24 * 3600).map(lambda s: timedelta(seconds=s)))
def test_no_data_never_promotes_or_rolls_back(spec: Rollout, moved: timedelta) -> None:
    for metrics in (None, Metrics(requests=0)):
        d = rollout.step(spec, State(step_started=T0), metrics, T0 + moved)
        assert d.decision not in (AnalysisDecision.PROMOTE, AnalysisDecision.ROLLBACK)
        assert not d.state.finished
