from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.serving import state
from flywheel.serving.policies import bandit, ejection, shadow, split

# --- canary split --------------------------------------------------------------------


def test_split_follows_the_weights() -> None:
    rng = random.Random(1)
    chosen = [split.WeightedSplit({"v1": 80, "v2": 20}).choose(rng.random()) for _ in range(20_000)]
    assert abs(chosen.count("v2") / len(chosen) - 0.2) < 0.02


def test_sticky_keys_stay_on_the_candidate_as_its_weight_grows() -> None:
    keys = [f"customer-{i}" for i in range(2000)]
    steps = [5, 20, 50, 100]
    on_candidate = [
        {k for k in keys if split.WeightedSplit({"v1": 100 - w, "v2": w}).choose_key(k) == "v2"}
        for w in steps
    ]
    for before, after in itertools.pairwise(on_candidate):
        assert before <= after
    assert len(on_candidate[0]) < len(on_candidate[1]) < len(on_candidate[-1]) == len(keys)


def test_split_refuses_no_traffic_and_drops_ejected() -> None:
    with pytest.raises(ValueError, match="above zero"):
        split.WeightedSplit({"v1": 0})
    rest = split.WeightedSplit({"v1": 50, "v2": 50}).without({"v2"})
    assert rest is not None and rest.choose(0.99) == "v1"


# --- shadow --------------------------------------------------------------------------


def test_shadow_agreement_and_delta() -> None:
    agree, delta = shadow.compare(np.array([0.9, 0.1]), np.array([0.8, 0.3]))
    assert agree is True and delta == pytest.approx(0.15)
    assert shadow.compare(np.array([0.9]), np.array([0.4]))[0] is False
    agree, _ = shadow.compare(np.array([[0.1, 0.9]]), np.array([[0.6, 0.4]]))
    assert agree is False
    assert shadow.compare(np.array([1.0, 2.0]), np.array([1.0]))[0] is False
    stats = shadow.ShadowStats()
    stats.record(True, 0.1)
    stats.record(False, 0.3)
    assert stats.agreement == 0.5 and stats.mean_delta == pytest.approx(0.2)


def test_shadow_mirrors_its_share() -> None:
    policy = shadow.ShadowPolicy("v2", percent=10)
    rng = random.Random(3)
    share = sum(policy.mirror(rng.random()) for _ in range(20_000)) / 20_000
    assert abs(share - 0.1) < 0.01


# --- ejection ------------------------------------------------------------------------


def test_consecutive_errors_eject_until_the_cooldown_ends() -> None:
    e = ejection.Ejector(threshold=3, cooldown=10)
    assert not e.record("v2", False, 0) and not e.record("v2", False, 1)
    assert e.record("v2", False, 2)
    assert e.ejected("v2", 5) and not e.ejected("v2", 12)
    assert e.record("v2", False, 12)  # one more failure after the cooldown
    e.record("v2", True, 30)
    assert not e.ejected("v2", 30) and not e.record("v2", False, 31)
    assert e.ejections("v2") == 2


# --- bandits -------------------------------------------------------------------------


def run(b: bandit.Bandit, rates: dict[str, float], steps: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    for _ in range(steps):
        arm = b.choose(rng)
        b.update(arm, float(rng.random() < rates[arm]))
    return {a: arm.pulls for a, arm in b.arms.items()}


@pytest.mark.parametrize("algorithm", ["thompson", "epsilon-greedy", "ucb"])
def test_bandits_converge_to_the_better_arm(algorithm: str) -> None:
    b = bandit.make(algorithm, ["v1", "v2"], "v1", floor=0.05)
    pulls = run(b, {"v1": 0.10, "v2": 0.30}, 4000, seed=7)
    assert pulls["v2"] > 0.7 * sum(pulls.values())
    assert b.weights()["v2"] > 0.6
    assert b.weights()["v1"] >= 0.05


def test_gaussian_thompson_prefers_the_larger_mean() -> None:
    b = bandit.make("thompson", ["v1", "v2"], "v1", floor=0.0, rewards="continuous")
    rng = random.Random(5)
    means = {"v1": 1.0, "v2": 1.5}
    for _ in range(3000):
        arm = b.choose(rng)
        b.update(arm, rng.gauss(means[arm], 1.0))
    assert b.arms["v2"].pulls > 2 * b.arms["v1"].pulls
    assert b.shares()["v2"] > 0.9


def test_the_floor_keeps_stable_alive_when_it_loses() -> None:
    b = bandit.make("thompson", ["v1", "v2"], "v1", floor=0.1)
    pulls = run(b, {"v1": 0.0, "v2": 1.0}, 5000, seed=2)
    assert pulls["v1"] >= 0.08 * 5000


arm_counts = st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.floats(0, 1)).map(
    lambda t: {"pulls": t[0], "n": t[1], "total": t[1] * t[2], "total_sq": t[1] * t[2]}
)


@settings(max_examples=150, deadline=None)
@given(
    algorithm=st.sampled_from(["thompson", "epsilon-greedy", "ucb", "thompson-gaussian"]),
    floor=st.floats(0, 0.5),
    arms=st.lists(arm_counts, min_size=1, max_size=4),
    epsilon=st.floats(0, 1),
)
def test_weights_are_a_distribution_above_the_floor(
    algorithm: str, floor: float, arms: list[dict[str, float]], epsilon: float
) -> None:
    names = [f"v{i}" for i in range(len(arms))]
    b = bandit.make(algorithm, names, "v0", floor=floor, epsilon=epsilon)
    b.restore(dict(zip(names, arms, strict=True)))
    weights = b.weights(np.random.default_rng(0))
    assert set(weights) == set(names)
    assert all(w >= 0 for w in weights.values())
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["v0"] >= min(floor, 1.0) - 1e-12


def test_bandit_state_survives_a_restart(tmp_path: Path) -> None:
    store = state.StateStore(tmp_path / "state.db")
    b = bandit.make("thompson", ["v1", "v2"], "v1")
    run(b, {"v1": 0.1, "v2": 0.3}, 1000, seed=3)
    store.save("churn", "bandit", b.state())
    store.close()
    reopened = state.StateStore(tmp_path / "state.db")
    again = bandit.make("thompson", ["v1", "v2"], "v1")
    saved = reopened.load("churn", "bandit")
    assert saved is not None
    again.restore(saved)
    assert again.state() == b.state()
    assert reopened.load("other", "bandit") is None


def test_promotion_needs_the_share_held_and_enough_samples() -> None:
    p = bandit.Promotion(threshold=0.9, hold=60, min_samples=100)
    assert p.observe({"v1": 0.05, "v2": 0.95}, 500, now=0) is None
    assert p.observe({"v1": 0.05, "v2": 0.95}, 500, now=30) is None
    assert p.observe({"v1": 0.05, "v2": 0.95}, 500, now=61) == "v2"
    assert p.observe({"v1": 0.2, "v2": 0.8}, 500, now=62) is None  # fell back: start over
    assert p.observe({"v1": 0.05, "v2": 0.95}, 500, now=63) is None
    assert p.observe({"v1": 0.05, "v2": 0.95}, 50, now=200) is None  # too few samples


def test_rewards_must_be_finite_and_for_known_arms() -> None:
    b = bandit.make("ucb", ["v1", "v2"], "v1")
    with pytest.raises(KeyError):
        b.update("v3", 1.0)
    with pytest.raises(ValueError):
        b.update("v1", float("nan"))
