"""The A/B test strategy: a fixed split through the router, outcomes per arm from its
rollout report, and the sequential test read after every interval by the rollout step
(the same step `flywheel run` and the operator take)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.api.modeldeployment import (
    AbTestMetric,
    AbTestStatus,
    AnalysisDecision,
    ModelDeploymentStatus,
    Rollout,
)
from flywheel.serving import config, rollout, router
from flywheel.serving.rollout import Counts, Metrics, State
from flywheel_operator.kube import router_metrics
from flywheel_operator.status import modeldeployment as md_status
from tests.unit.serving.test_router import Fake, request

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def abtest(**settings: Any) -> Rollout:
    body = {"split": 50, "baselineRate": 0.5, "minimumDetectableEffect": 0.1, **settings}
    return Rollout.model_validate({"strategy": "abtest", "abtest": body})


def routed(rates: dict[str, float], requests: int, seed: int = 7) -> router.Router:
    """A 50/50 router whose versions earn a reward with the given rates (seeded)."""
    doc = {
        "deployment": "churn",
        "stable": "v1",
        "candidate": "v2",
        "strategy": "abtest",
        "traffic": {"v1": 50, "v2": 50},
        "endpoints": {"v1": "x", "v2": "y"},
    }
    r = router.Router(config.parse(doc), backend_factory=lambda c, v: Fake(v), seed=1)
    rng = random.Random(seed)

    async def go() -> None:
        for _ in range(requests):
            answer = await r.infer(request())
            r.feedback(answer.request_id, reward=float(rng.random() < rates[answer.version]))

    asyncio.run(go())
    return r


def read_until_decided(
    spec: Rollout, rates: dict[str, float], batches: int, per_batch: int
) -> tuple[rollout.Decision, list[float], int]:
    """Route a batch, read the report, take a rollout step; again until a verdict."""
    state = State()
    p_values: list[float] = []
    r = None
    for i in range(batches):
        r = routed(rates, per_batch * (i + 1))
        counts = rollout.ab_counts(r.rollout_report(), "v2", "reward")
        assert counts is not None
        metrics = Metrics(requests=counts[1].n, control=counts[0], treatment=counts[1])
        decision = rollout.step(spec, state, metrics, T0 + timedelta(minutes=i))
        assert decision.ab_test is not None
        p_values.append(decision.ab_test.p_value)
        state = decision.state
        if state.finished:
            return decision, p_values, i + 1
    assert r is not None
    return decision, p_values, batches


def test_a_better_candidate_is_promoted_before_the_planned_sample() -> None:
    spec = abtest()
    planned = rollout.planned(spec.abtest)  # type: ignore[arg-type]
    decision, p_values, reads = read_until_decided(spec, {"v1": 0.4, "v2": 0.6}, 12, 100)
    shown = decision.ab_test
    assert shown is not None
    print(f"planned {planned}/arm; promoted after {reads} reads: {shown.model_dump()}")
    assert decision.decision == AnalysisDecision.PROMOTE
    assert shown.verdict == "CandidateBetter" and shown.p_value <= 0.05
    assert shown.candidate_observations < planned  # it stopped early, validly
    assert shown.effect is not None and shown.effect > 0
    assert shown.interval[0] < shown.effect < shown.interval[1]
    assert p_values == sorted(p_values, reverse=True)  # the always-valid p never rises
    assert rollout.traffic(spec, decision.state, "v1", "v2") == {"v2": 100.0}


def test_a_worse_candidate_is_rolled_back_and_an_even_one_stays_out() -> None:
    spec = abtest()
    worse, _, _ = read_until_decided(spec, {"v1": 0.6, "v2": 0.4}, 12, 100)
    assert worse.decision == AnalysisDecision.ROLLBACK
    assert worse.ab_test is not None and worse.ab_test.verdict == "CandidateWorse"
    small = abtest(minSampleSize=150)
    even, _, _ = read_until_decided(small, {"v1": 0.5, "v2": 0.5}, 12, 100)
    assert even.decision == AnalysisDecision.ROLLBACK
    assert even.ab_test is not None and even.ab_test.verdict == "NoDifference"
    assert even.ab_test.candidate_observations >= 150


def test_the_split_is_fixed_and_no_outcomes_never_decide() -> None:
    spec = abtest(split=20)
    assert rollout.traffic(spec, State(), "v1", "v2") == {"v1": 80.0, "v2": 20.0}
    d = rollout.step(spec, State(), None, T0)
    assert d.decision == AnalysisDecision.INCONCLUSIVE and not d.state.finished
    few = Metrics(requests=50, control=Counts(50, 10), treatment=Counts(50, 40))
    d = rollout.step(spec, State(), few, T0)
    assert d.decision == AnalysisDecision.INCONCLUSIVE  # under the minimum per arm
    assert d.ab_test is not None and d.ab_test.verdict == "Insufficient"


def test_the_operator_reads_counts_and_carries_the_p_value_between_passes() -> None:
    r = routed({"v1": 0.4, "v2": 0.6}, 400)
    report = r.rollout_report()
    found = router_metrics.from_report(report, "v2", {"v1": 50, "v2": 50}, "reward")
    assert found is not None and found.control is not None and found.treatment is not None
    assert found.control.n + found.treatment.n == 400
    success = router_metrics.from_report(report, "v2", {"v1": 50, "v2": 50}, "success")
    assert success is not None and success.treatment is not None
    assert success.treatment.successes == success.treatment.n  # no errors
    old = ModelDeploymentStatus(
        stable_version="v1",
        candidate_version="v2",
        ab_test=AbTestStatus(metric=AbTestMetric.REWARD, planned_per_arm=400, p_value=0.2),
    )
    assert md_status.rollout_state(old, "v2").p_value == 0.2
    assert md_status.rollout_state(old, "v3").p_value == 1.0  # a new test


def test_flywheel_run_reads_the_same_counts_from_its_router() -> None:
    from flywheel.local import deployment

    report = routed({"v1": 0.4, "v2": 0.6}, 400).rollout_report()
    found = deployment.metrics_of(report, abtest())
    assert found is not None and found.control is not None and found.treatment is not None
    assert (found.control, found.treatment) == rollout.ab_counts(report, "v2", "reward")
    assert deployment.metrics_of(report) is not None
    assert deployment.metrics_of(report).control is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"strategy": "abtest"}, "strategy abtest needs rollout.abtest"),
        (
            {"strategy": "canary", "canary": {"steps": [{"weight": 10}]}, "abtest": {}},
            "baselineRate",
        ),
        (
            {
                "strategy": "abtest",
                "abtest": {"baselineRate": 0.95, "minimumDetectableEffect": 0.1},
            },
            "must stay below 1",
        ),
    ],
)
def test_bad_abtest_settings_are_refused(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rollout.model_validate(body)


def test_the_crd_carries_the_abtest_rules() -> None:
    from flywheel.api import crdgen
    from flywheel.api.modeldeployment import ModelDeployment

    crd = crdgen.crd(ModelDeployment)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    spec_rollout = schema["spec"]["properties"]["rollout"]
    rules = [v["message"] for v in spec_rollout["x-kubernetes-validations"]]
    assert any("strategy abtest needs" in m for m in rules)
    assert "abtest" in spec_rollout["properties"]["strategy"]["enum"]
    assert "pValue" in schema["status"]["properties"]["abTest"]["properties"]
