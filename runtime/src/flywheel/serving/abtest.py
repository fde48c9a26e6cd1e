"""A/B test statistics for a fixed traffic split: the sample size a declared minimum
detectable effect needs, and a sequential test that may be read after every request.

Reading a fixed-horizon z-test again and again until it says "significant" inflates the
false-positive rate far past alpha. The mixture sequential probability ratio test
(mSPRT; Johari, Pekelis and Walsh, "Always valid inference", 2017) gives a p-value and
interval that stay valid at any stopping time, so the test may stop early exactly when
the always-valid p-value falls below alpha:

    Lambda_n = sqrt(V / (V + tau^2)) * exp(d^2 tau^2 / (2 V (V + tau^2)))
    p_n      = min(p_{n-1}, 1 / Lambda_n)

with d the observed difference of the arms' rates, V its variance (normal approximation),
and tau the mixture's scale, set to the declared minimum detectable effect. Once both
arms reach the planned sample size without a verdict, the test stops: no effect of the
declared size was found. No data never decides.

    plan = sample_size(baseline=0.10, mde=0.02, alpha=0.05, power=0.8)   # per arm
    decision = decide(Arm(4000, 400), Arm(4000, 470), mde=0.02, alpha=0.05,
                      planned=plan, previous_p=1.0)
"""

from __future__ import annotations

import dataclasses
import enum
import math
from statistics import NormalDist

# Below this many observations per arm the normal approximation is not trusted.
MIN_PER_ARM = 100


class Verdict(enum.StrEnum):
    CANDIDATE_BETTER = "CandidateBetter"
    CANDIDATE_WORSE = "CandidateWorse"
    NO_DIFFERENCE = "NoDifference"  # planned sample reached, no effect of the declared size
    CONTINUE = "Continue"
    INSUFFICIENT = "Insufficient"  # too little data to compute anything; never decides

    @property
    def is_terminal(self) -> bool:
        return self in (Verdict.CANDIDATE_BETTER, Verdict.CANDIDATE_WORSE, Verdict.NO_DIFFERENCE)


@dataclasses.dataclass(frozen=True)
class Arm:
    """Observations of one arm: requests with an outcome, and how many succeeded."""

    n: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.n if self.n else 0.0


@dataclasses.dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    p_value: float  # always valid: carry it into the next call as previous_p
    effect: float | None  # candidate rate minus control rate
    interval: tuple[float, float] | None  # always-valid (1 - alpha) interval of the effect


def sample_size(baseline: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per arm for a two-sided fixed-horizon test of two proportions to
    detect an absolute change of `mde` from `baseline` with the given power.

    >>> sample_size(0.10, 0.02)
    3841
    """
    if not 0 < baseline < 1 or not 0 < baseline + mde < 1 or mde == 0:
        raise ValueError(
            f"baseline {baseline} and baseline + mde {baseline + mde} must lie strictly "
            "between 0 and 1, and mde must not be 0"
        )
    z = NormalDist().inv_cdf
    p1, p2 = baseline, baseline + mde
    pooled = (p1 + p2) / 2
    numerator = z(1 - alpha / 2) * math.sqrt(2 * pooled * (1 - pooled)) + z(power) * math.sqrt(
        p1 * (1 - p1) + p2 * (1 - p2)
    )
    return math.ceil((numerator / mde) ** 2)


def decide(
    control: Arm,
    candidate: Arm,
    mde: float,
    alpha: float,
    planned: int,
    previous_p: float = 1.0,
) -> Decision:
    """The verdict after the observations so far (call it as often as you like)."""
    if min(control.n, candidate.n) < MIN_PER_ARM:
        return Decision(
            Verdict.INSUFFICIENT,
            f"{control.n} control and {candidate.n} candidate observations; at least "
            f"{MIN_PER_ARM} per arm before any test",
            previous_p,
            None,
            None,
        )
    effect = candidate.rate - control.rate
    variance = _variance(control) + _variance(candidate)
    tau2 = mde**2
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + effect**2 * tau2 / (
        2 * variance * (variance + tau2)
    )
    p_value = min(previous_p, 1.0, math.exp(-log_lambda))
    half = math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance))
    )
    interval = (effect - half, effect + half)
    shown = (
        f"effect {effect:+.4f} (interval {interval[0]:+.4f} to {interval[1]:+.4f}), p={p_value:.4g}"
    )
    if p_value <= alpha:
        verdict = Verdict.CANDIDATE_BETTER if effect > 0 else Verdict.CANDIDATE_WORSE
        return Decision(verdict, f"always-valid p <= {alpha:g}: {shown}", p_value, effect, interval)
    if min(control.n, candidate.n) >= planned:
        return Decision(
            Verdict.NO_DIFFERENCE,
            f"planned {planned} per arm reached without an effect of {mde:g}: {shown}",
            p_value,
            effect,
            interval,
        )
    return Decision(Verdict.CONTINUE, shown, p_value, effect, interval)


def _variance(arm: Arm) -> float:
    # A rate of exactly 0 or 1 would give no variance; half an observation keeps it honest.
    rate = min(max(arm.rate, 0.5 / arm.n), 1 - 0.5 / arm.n)
    return rate * (1 - rate) / arm.n
