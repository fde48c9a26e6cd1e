"""A/B statistics: the planned sample size, and a sequential test that may be read after
every batch without inflating the false-positive rate."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.serving import abtest
from flywheel.serving.abtest import Arm, Verdict

ALPHA = 0.05
MDE = 0.03
BASE = 0.10


def run(
    rng: np.random.Generator, control: float, candidate: float, planned: int
) -> tuple[abtest.Decision, int]:
    """Peek after every 100 observations per arm; stop at the first terminal verdict."""
    a = rng.random(planned) < control
    b = rng.random(planned) < candidate
    p = 1.0
    decision = None
    for n in range(100, planned + 1, 100):
        decision = abtest.decide(
            Arm(n, int(a[:n].sum())), Arm(n, int(b[:n].sum())), MDE, ALPHA, planned, p
        )
        p = decision.p_value
        if decision.verdict.is_terminal:
            return decision, n
    assert decision is not None
    return decision, planned


def naive_peeking_rejects(rng: np.random.Generator, planned: int) -> bool:
    """A fixed-horizon z-test read at every peek: what the sequential test replaces."""
    a = rng.random(planned) < BASE
    b = rng.random(planned) < BASE
    for n in range(100, planned + 1, 100):
        pa, pb = a[:n].mean(), b[:n].mean()
        pooled = (pa + pb) / 2
        se = np.sqrt(2 * pooled * (1 - pooled) / n)
        if se > 0 and abs(pb - pa) / se > 1.96:
            return True
    return False


def test_sample_size_matches_the_textbook_figure_and_refuses_nonsense() -> None:
    assert abtest.sample_size(0.10, 0.02) == 3841  # 10% -> 12%, alpha 0.05, power 0.8
    assert abtest.sample_size(0.10, 0.03) < abtest.sample_size(0.10, 0.02)
    assert abtest.sample_size(0.10, 0.02, power=0.9) > 3841
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        abtest.sample_size(0.99, 0.02)


def test_peeking_at_the_sequential_test_keeps_the_false_positive_rate_under_alpha() -> None:
    rng = np.random.default_rng(1)
    planned = abtest.sample_size(BASE, MDE)
    runs = 300
    false_positives = sum(
        run(rng, BASE, BASE, planned)[0].verdict
        in (Verdict.CANDIDATE_BETTER, Verdict.CANDIDATE_WORSE)
        for _ in range(runs)
    )
    naive = sum(naive_peeking_rejects(rng, planned) for _ in range(runs))
    assert false_positives / runs <= ALPHA
    assert naive / runs > 2 * ALPHA  # the z-test read at every peek lies
    print(
        f"\nfalse positives under peeking: mSPRT {false_positives / runs:.3f}, "
        f"z-test {naive / runs:.3f}"
    )


def test_a_real_effect_stops_early_and_points_the_right_way() -> None:
    rng = np.random.default_rng(2)
    planned = abtest.sample_size(BASE, MDE)
    outcomes = [run(rng, BASE, BASE + 2 * MDE, planned) for _ in range(100)]
    better = [n for d, n in outcomes if d.verdict == Verdict.CANDIDATE_BETTER]
    assert len(better) >= 90
    assert np.median(better) < planned / 2
    worse = run(rng, BASE + 2 * MDE, BASE, planned)[0]
    assert worse.verdict == Verdict.CANDIDATE_WORSE and worse.effect is not None
    assert worse.interval is not None and worse.interval[1] < 0


def test_no_data_never_decides_and_the_p_value_never_rises() -> None:
    early = abtest.decide(Arm(10, 9), Arm(10, 0), MDE, ALPHA, 1000)
    assert early.verdict == Verdict.INSUFFICIENT and early.interval is None
    assert "at least 100 per arm" in early.reason
    first = abtest.decide(Arm(500, 50), Arm(500, 75), MDE, ALPHA, 5000)
    later = abtest.decide(Arm(600, 60), Arm(600, 61), MDE, ALPHA, 5000, first.p_value)
    assert later.p_value == first.p_value < 1
    done = abtest.decide(Arm(5000, 500), Arm(5000, 505), MDE, ALPHA, 5000, later.p_value)
    assert done.verdict == Verdict.NO_DIFFERENCE and "planned 5000 per arm" in done.reason
