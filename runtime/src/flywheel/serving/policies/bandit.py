"""Multi-armed bandits over model versions, rewarded through the feedback endpoint.

Every bandit routes with a floor: with probability `floor` a request goes to the stable
arm whatever the algorithm says, so stable keeps at least that share of traffic and its
estimate stays fresh. The remaining traffic follows the algorithm:

- `ThompsonBeta`: binary rewards (conversions). Each arm's success rate has a
  Beta(1 + successes, 1 + failures) posterior; draw one sample per arm, route to the
  largest (Thompson sampling).
- `ThompsonGaussian`: continuous rewards. Each arm's mean reward has a Normal posterior
  with the sample variance (one pseudo-observation of variance 1 as the prior); draw and
  take the largest. Arms never rewarded are tried first.
- `EpsilonGreedy`: with probability epsilon a uniformly random arm, else the arm with the
  best mean reward (unrewarded arms count as best, so each is tried).
- `UCB1`: the arm with the largest mean + sqrt(2 ln N / n) (Auer et al. 2002); rewards
  are assumed in [0, 1]. Deterministic: it tries every arm once first.

Rewards may arrive late and only for some requests: `pulls` counts routed requests,
`n` the rewards seen. The algorithms learn from rewards only.

`shares()` is the algorithm's own preference (for Thompson: the posterior probability
that each arm is best, by Monte Carlo); `weights()` adds the floor, i.e. the expected
routing share. A `Promotion` watches the shares and reports an arm that stayed past the
threshold long enough.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


@dataclasses.dataclass
class Arm:
    pulls: int = 0  # requests routed to this arm
    n: int = 0  # rewards received
    total: float = 0.0  # sum of rewards
    total_sq: float = 0.0  # sum of squared rewards

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class Bandit:
    """The arms, the floor and the bookkeeping every algorithm shares."""

    name = "bandit"

    def __init__(self, arms: Iterable[str], stable: str, floor: float = 0.05) -> None:
        names = list(dict.fromkeys(arms))
        if stable not in names:
            names.insert(0, stable)
        if not 0 <= floor <= 1:
            raise ValueError(f"floor must be in [0, 1], not {floor}")
        self.stable = stable
        self.floor = floor
        self.arms: dict[str, Arm] = {a: Arm() for a in names}
        # The shared totals as last synced: arms minus these is what this router saw since.
        self._synced: dict[str, Arm] = {a: Arm() for a in names}

    # --- routing ---------------------------------------------------------------------

    def choose(self, rng: random.Random) -> str:
        arm = self.stable if len(self.arms) == 1 or rng.random() < self.floor else self._pick(rng)
        self.arms[arm].pulls += 1
        return arm

    def _pick(self, rng: random.Random) -> str:
        raise NotImplementedError

    def update(self, arm: str, reward: float) -> None:
        a = self.arms.get(arm)
        if a is None:
            raise KeyError(f"no arm {arm!r}; arms are {', '.join(self.arms)}")
        if not math.isfinite(reward):
            raise ValueError(f"reward must be a finite number, not {reward}")
        a.n += 1
        a.total += reward
        a.total_sq += reward * reward

    # --- what it prefers -------------------------------------------------------------

    def shares(self, rng: np.random.Generator | None = None) -> dict[str, float]:
        """The algorithm's share per arm, without the floor (sums to 1)."""
        raise NotImplementedError

    def weights(self, rng: np.random.Generator | None = None) -> dict[str, float]:
        """Expected routing share per arm: the floor for stable plus the algorithm's."""
        shares = self.shares(rng)
        floor = self.floor if len(self.arms) > 1 else 1.0
        return {
            a: (1 - floor) * s + (floor if a == self.stable else 0.0) for a, s in shares.items()
        }

    # --- state -----------------------------------------------------------------------

    def state(self) -> dict[str, dict[str, float]]:
        return {a: arm.to_dict() for a, arm in self.arms.items()}

    def restore(self, state: Mapping[str, Mapping[str, Any]]) -> None:
        """Take saved counts for the arms this bandit has; others are ignored."""
        for name, saved in state.items():
            if name in self.arms:
                self.arms[name] = Arm(
                    pulls=int(saved.get("pulls", 0)),
                    n=int(saved.get("n", 0)),
                    total=float(saved.get("total", 0.0)),
                    total_sq=float(saved.get("total_sq", 0.0)),
                )

    def unsynced(self) -> dict[str, dict[str, float]]:
        """What this router counted since the last `synced`, per arm (the deltas to add to
        the totals its replicas share)."""
        out: dict[str, dict[str, float]] = {}
        for name, arm in self.arms.items():
            base = self._synced.get(name, Arm())
            delta = {
                "pulls": arm.pulls - base.pulls,
                "n": arm.n - base.n,
                "total": arm.total - base.total,
                "total_sq": arm.total_sq - base.total_sq,
            }
            if any(delta.values()):
                out[name] = delta
        return out

    def synced(self, totals: Mapping[str, Mapping[str, Any]]) -> None:
        """Take the shared totals (which include this router's deltas) as the arms' counts."""
        self.restore(totals)
        self._synced = {a: dataclasses.replace(arm) for a, arm in self.arms.items()}

    def _best_mean(self) -> str:
        untried = [a for a, arm in self.arms.items() if arm.n == 0]
        if untried:
            return untried[0]
        return max(self.arms, key=lambda a: self.arms[a].mean or 0.0)


class ThompsonBeta(Bandit):
    __doc__ = "Thompson sampling with Beta posteriors, for binary rewards (see module)."
    name = "thompson"

    def _pick(self, rng: random.Random) -> str:
        best, best_draw = self.stable, -1.0
        for a, arm in self.arms.items():
            successes = min(max(arm.total, 0.0), arm.n)
            draw = rng.betavariate(1.0 + successes, 1.0 + arm.n - successes)
            if draw > best_draw:
                best, best_draw = a, draw
        return best

    def shares(self, rng: np.random.Generator | None = None, draws: int = 4000) -> dict[str, float]:
        rng = rng or np.random.default_rng(0)
        names = list(self.arms)
        s = np.array([min(max(self.arms[a].total, 0.0), self.arms[a].n) for a in names])
        n = np.array([self.arms[a].n for a in names], dtype=np.float64)
        samples = rng.beta(1.0 + s[:, None], 1.0 + (n - s)[:, None], (len(names), draws))
        wins = np.bincount(samples.argmax(axis=0), minlength=len(names)) / draws
        return {a: float(w) for a, w in zip(names, wins, strict=True)}


class ThompsonGaussian(Bandit):
    __doc__ = "Thompson sampling with Normal posteriors, for continuous rewards (see module)."
    name = "thompson-gaussian"

    def _posterior(self, arm: Arm) -> tuple[float, float]:
        mean = arm.mean or 0.0
        # One pseudo-observation of variance 1 keeps early posteriors wide.
        var = (arm.total_sq - arm.n * mean * mean + 1.0) / (arm.n + 1)
        return mean, math.sqrt(max(var, 1e-12) / (arm.n + 1))

    def _pick(self, rng: random.Random) -> str:
        for a, arm in self.arms.items():
            if arm.n == 0:
                return a
        best, best_draw = self.stable, -math.inf
        for a, arm in self.arms.items():
            mean, sd = self._posterior(arm)
            draw = rng.gauss(mean, sd)
            if draw > best_draw:
                best, best_draw = a, draw
        return best

    def shares(self, rng: np.random.Generator | None = None, draws: int = 4000) -> dict[str, float]:
        rng = rng or np.random.default_rng(0)
        names = list(self.arms)
        params = np.array([self._posterior(self.arms[a]) for a in names])
        samples = rng.normal(params[:, :1], params[:, 1:], (len(names), draws))
        wins = np.bincount(samples.argmax(axis=0), minlength=len(names)) / draws
        return {a: float(w) for a, w in zip(names, wins, strict=True)}


class EpsilonGreedy(Bandit):
    __doc__ = "Epsilon-greedy: explore uniformly with probability epsilon (see module)."
    name = "epsilon-greedy"

    def __init__(
        self, arms: Iterable[str], stable: str, floor: float = 0.05, epsilon: float = 0.1
    ) -> None:
        super().__init__(arms, stable, floor)
        self.epsilon = epsilon

    def _pick(self, rng: random.Random) -> str:
        if rng.random() < self.epsilon:
            return rng.choice(list(self.arms))
        return self._best_mean()

    def shares(self, rng: np.random.Generator | None = None) -> dict[str, float]:
        best = self._best_mean()
        k = len(self.arms)
        return {a: self.epsilon / k + (1 - self.epsilon if a == best else 0.0) for a in self.arms}


class UCB1(Bandit):
    __doc__ = "UCB1: the largest upper confidence bound, rewards in [0, 1] (see module)."
    name = "ucb"

    def _pick(self, rng: random.Random) -> str:
        for a, arm in self.arms.items():
            if arm.n == 0:
                return a
        total = sum(arm.n for arm in self.arms.values())
        log_total = math.log(total)
        return max(
            self.arms,
            key=lambda a: (self.arms[a].mean or 0.0) + math.sqrt(2 * log_total / self.arms[a].n),
        )

    def shares(self, rng: np.random.Generator | None = None) -> dict[str, float]:
        pulls = sum(arm.pulls for arm in self.arms.values())
        if pulls == 0:
            return {a: 1 / len(self.arms) for a in self.arms}
        return {a: arm.pulls / pulls for a, arm in self.arms.items()}


ALGORITHMS: dict[str, type[Bandit]] = {
    c.name: c for c in (ThompsonBeta, ThompsonGaussian, EpsilonGreedy, UCB1)
}


def make(
    algorithm: str,
    arms: Iterable[str],
    stable: str,
    floor: float = 0.05,
    epsilon: float = 0.1,
    rewards: str = "binary",
) -> Bandit:
    """A bandit by the names a ModelDeployment uses (`thompson`, `epsilon-greedy`, `ucb`)."""
    if algorithm == "thompson" and rewards == "continuous":
        algorithm = "thompson-gaussian"
    cls = ALGORITHMS.get(algorithm)
    if cls is None:
        raise ValueError(f"unknown bandit algorithm {algorithm!r}; one of {', '.join(ALGORITHMS)}")
    if cls is EpsilonGreedy:
        return EpsilonGreedy(arms, stable, floor, epsilon)
    return cls(arms, stable, floor)


@dataclasses.dataclass
class Promotion:
    """Reports an arm whose share stayed at or above `threshold` for `hold` seconds,
    with at least `min_samples` rewards in total. The clock is the caller's."""

    threshold: float = 0.95
    hold: float = 60.0
    min_samples: int = 200
    leader: str | None = None
    since: float | None = None

    def observe(self, shares: Mapping[str, float], samples: int, now: float) -> str | None:
        top = max(shares, key=lambda a: shares[a]) if shares else None
        if top is None or shares[top] < self.threshold:
            self.leader, self.since = None, None
            return None
        if top != self.leader:
            self.leader, self.since = top, now
        assert self.since is not None
        if samples >= self.min_samples and now - self.since >= self.hold:
            return top
        return None
