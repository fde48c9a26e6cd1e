"""Drift statistics: equal to scipy (or a written-out formula), and calibrated."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as sps  # type: ignore[import-untyped]
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]

from flywheel.drift import stats

SIZES = [(20, 15), (100, 80), (1000, 700), (5000, 5000), (20_000, 3000)]


def _samples(seed: int, n: int, m: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(loc=shift, size=m)


def _p(result: stats.Result) -> float:
    assert result.p_value is not None
    return result.p_value


# --- Kolmogorov-Smirnov --------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), SIZES)
def test_ks_statistic_equals_scipy(n: int, m: int) -> None:
    a, b = _samples(n + m, n, m, shift=0.1)
    got = stats.ks(stats.numeric_reference(a), b)
    assert got.score == pytest.approx(sps.ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize(("n", "m"), SIZES[1:])
def test_ks_p_value_close_to_scipy_asymptotic(n: int, m: int) -> None:
    """From 100 values on each side (the default minSamples); below, the two
    approximations of the same limit differ by a few hundredths."""
    for shift in (0.0, 0.05, 0.2):
        a, b = _samples(n * 3 + m, n, m, shift)
        got = stats.ks(stats.numeric_reference(a), b).p_value
        want = sps.ks_2samp(a, b, method="asymp").pvalue
        # Stephens' correction against scipy's kstwo at round(en): close, not identical.
        assert got == pytest.approx(want, abs=0.01)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.int64, st.integers(1, 60), elements=st.integers(-5, 5)),
    hnp.arrays(np.int64, st.integers(1, 60), elements=st.integers(-6, 6)),
)
def test_ks_statistic_with_ties_equals_scipy(a: np.ndarray, b: np.ndarray) -> None:
    got = stats.ks(stats.numeric_reference(a), b).score
    with np.errstate(divide="ignore"):  # scipy's p-value of one value against one
        want = sps.ks_2samp(a, b, method="asymp").statistic
    assert got == pytest.approx(want, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.integers(1, 80),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
        unique=True,
    ),
    hnp.arrays(
        np.float64,
        st.integers(1, 80),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
        unique=True,
    ),
)
def test_ks_of_untied_samples_equals_scipy_and_the_general_path(
    a: np.ndarray, b: np.ndarray
) -> None:
    """Samples without repeats take the shortcut (unless a value is on both sides):
    the same statistic as scipy's and as the path over distinct values, bit for bit."""
    reference = stats.numeric_reference(a)
    live = np.sort(b)
    untied = stats._ks_untied(reference, live)
    if untied is not None:
        assert untied == stats._ks_tied(reference, live)
    got = stats.ks(reference, b).score
    with np.errstate(divide="ignore"):
        want = sps.ks_2samp(a, b, method="asymp").statistic
    assert got == pytest.approx(want, abs=1e-12)


def test_ks_with_a_value_on_both_sides_takes_the_general_path() -> None:
    a, b = _samples(7, 1000, 800, shift=0.1)
    b[:10] = a[:10]  # some live values equal reference values exactly
    reference = stats.numeric_reference(a)
    assert stats._ks_untied(reference, np.sort(b)) is None
    assert stats.ks(reference, b).score == pytest.approx(sps.ks_2samp(a, b).statistic, abs=1e-15)


def test_ks_ignores_non_finite_live_values() -> None:
    a, b = _samples(1, 500, 400)
    dirty = np.concatenate([b, [np.nan, np.inf, -np.inf]])
    ref = stats.numeric_reference(a)
    assert stats.ks(ref, dirty) == stats.ks(ref, b)


def test_ks_of_nothing_is_nan() -> None:
    assert math.isnan(stats.ks(stats.numeric_reference([1.0, 2.0]), []).score)


# --- chi-square ----------------------------------------------------------------------


def test_chi2_equals_scipy_contingency() -> None:
    rng = np.random.default_rng(7)
    for k in (2, 3, 8, 40):
        ref = rng.integers(0, 500, k)
        cur = rng.integers(0, 300, k)
        ref[0] = cur[0] = 0  # a category empty on both sides is left out
        got = stats.chi2(stats.CategoricalReference(tuple(map(str, range(k))), ref), cur)
        want = sps.chi2_contingency(np.stack([ref[1:], cur[1:]]), correction=False)
        assert got.statistic == pytest.approx(want.statistic, rel=1e-12)
        assert got.p_value == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)
        assert got.score == pytest.approx(math.sqrt(want.statistic / (ref.sum() + cur.sum())))


@pytest.mark.parametrize("dof", [1, 2, 3, 7, 30, 200])
def test_chi2_sf_equals_scipy(dof: int) -> None:
    for x in np.geomspace(1e-3, 10 * dof + 100, 40):
        assert stats.chi2_sf(float(x), dof) == pytest.approx(
            sps.chi2.sf(x, dof), rel=1e-9, abs=1e-300
        )


def test_category_counts_put_unknown_values_in_other() -> None:
    ref = stats.categorical_reference({"a": 5, "b": 3, stats.OTHER: 2})
    assert ref.categories == ("a", "b", stats.OTHER)
    assert stats.category_counts(ref, ["a", "c", "b", "a", "zz"]).tolist() == [2, 1, 2]


# --- PSI and Jensen-Shannon ----------------------------------------------------------


def _psi_by_formula(ref: np.ndarray, cur: np.ndarray, bins: int) -> float:
    """PSI written out: decile edges of the reference, right-closed bins, floor 1e-4."""
    inner = sorted(set(np.quantile(ref, [i / bins for i in range(1, bins)]).tolist()))
    edges = [-math.inf, *inner, math.inf]

    def shares(values: np.ndarray) -> list[float]:
        counts = [0] * (len(edges) - 1)
        for v in values.tolist():
            for i in range(len(counts)):
                if edges[i] < v <= edges[i + 1]:
                    counts[i] += 1
                    break
        return [max(c / len(values), 1e-4) for c in counts]

    r, c = shares(ref), shares(cur)
    return sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c, strict=True))


@pytest.mark.parametrize("shift", [0.0, 0.3, 3.0])
def test_psi_equals_the_formula(shift: float) -> None:
    a, b = _samples(3, 2000, 1500, shift)
    ref = stats.numeric_reference(a)
    got = stats.psi(ref.bin_counts, stats.numeric_bin_counts(ref, b)).score
    assert got == pytest.approx(_psi_by_formula(a, b, stats.DEFAULT_BINS), rel=1e-12)


def test_psi_bins_are_reference_deciles() -> None:
    a, _ = _samples(4, 10_000, 1)
    ref = stats.numeric_reference(a)
    assert ref.bin_counts.tolist() == [1000] * 10
    assert ref.edges == pytest.approx(np.quantile(a, np.arange(1, 10) / 10))


def test_numeric_bin_counts_drop_non_finite_values() -> None:
    ref = stats.numeric_reference(np.arange(100.0))
    counts = stats.numeric_bin_counts(ref, [np.nan, np.inf, -np.inf, -1e308, 1e308, 50.0])
    assert counts.sum() == 3 and counts[0] == 1 and counts[-1] == 1


def test_numeric_bin_counts_span_blocks() -> None:
    a, b = _samples(5, 1000, 3 * (1 << 16) + 17)
    ref = stats.numeric_reference(a)
    inner = np.concatenate(([-np.inf], ref.edges, [np.inf]))
    want = np.histogram(b, bins=inner)[0]  # left-closed; ties at an edge have measure 0 here
    assert stats.numeric_bin_counts(ref, b).tolist() == want.tolist()


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(np.int64, st.integers(1, 12), elements=st.integers(0, 1000)),
    st.randoms(use_true_random=False),
)
def test_js_equals_scipy_and_psi_is_non_negative(counts: np.ndarray, rnd: object) -> None:
    other = np.array([c + int(i % 3 == 0) * 7 for i, c in enumerate(counts.tolist())])
    if counts.sum() == 0:
        counts = counts + 1
    js = stats.jensen_shannon(counts, other).score
    assert js == pytest.approx(jensenshannon(counts, other, base=2), abs=1e-7)
    assert 0 <= js <= 1
    assert js == pytest.approx(stats.jensen_shannon(other, counts).score, abs=1e-12)
    assert stats.psi(counts, other).score >= 0


def test_js_of_disjoint_is_one_of_same_is_zero() -> None:
    assert stats.jensen_shannon([3, 0], [0, 3]).score == 1.0
    assert stats.jensen_shannon([3, 1], [6, 2]).score == 0.0


# --- Wasserstein ---------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), SIZES)
def test_wasserstein_equals_scipy(n: int, m: int) -> None:
    a, b = _samples(11 * n + m, n, m, shift=0.3)
    got = stats.wasserstein(stats.numeric_reference(a), b)
    assert got.statistic == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-10)
    assert got.score == pytest.approx(got.statistic / a.std(), rel=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(-9, 9)),
    hnp.arrays(np.int64, st.integers(1, 40), elements=st.integers(-9, 9)),
)
def test_wasserstein_with_ties_equals_scipy(a: np.ndarray, b: np.ndarray) -> None:
    got = stats.wasserstein(stats.numeric_reference(a), b).statistic
    assert got == pytest.approx(sps.wasserstein_distance(a, b), rel=1e-10, abs=1e-12)


# --- corrections ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=60))
def test_benjamini_hochberg_equals_scipy(p: list[float]) -> None:
    got = stats.benjamini_hochberg(p)
    assert got == pytest.approx(sps.false_discovery_control(p, method="bh").tolist(), abs=1e-12)
    assert all(g >= q - 1e-15 for g, q in zip(got, p, strict=True))


def test_bonferroni() -> None:
    assert stats.bonferroni([0.001, 0.3]) == [0.002, 0.6]
    assert stats.bonferroni([]) == []


# --- calibration: the false-alarm rate and the power the issue asks for --------------


def test_ks_false_alarm_rate_at_alpha_005() -> None:
    ref = stats.numeric_reference(np.random.default_rng(2026).normal(size=10_000))
    seeds = range(2000)
    alarms = sum(
        _p(stats.ks(ref, np.random.default_rng(seed).normal(size=1000))) < 0.05 for seed in seeds
    )
    assert 0.03 <= alarms / len(seeds) <= 0.07


@pytest.mark.parametrize("correct", [stats.benjamini_hochberg, stats.bonferroni])
def test_any_alarm_among_20_features_at_alpha_005(
    correct: Callable[[Sequence[float]], list[float]],
) -> None:
    """With the correction, a run of 20 undrifted features alarms about 5% of the time."""
    rng = np.random.default_rng(11)
    refs = [stats.numeric_reference(rng.normal(size=2000)) for _ in range(20)]
    runs = 600
    alarms = 0
    for _ in range(runs):
        p = [_p(stats.ks(ref, rng.normal(size=500))) for ref in refs]
        alarms += min(correct(p)) < 0.05
    assert 0.03 <= alarms / runs <= 0.07


def test_ks_false_alarm_rate_with_equal_sizes() -> None:
    rng = np.random.default_rng(17)
    runs = 2000
    alarms = 0
    for _ in range(runs):
        ref = stats.numeric_reference(rng.normal(size=1000))
        alarms += _p(stats.ks(ref, rng.normal(size=1000))) < 0.05
    assert 0.03 <= alarms / runs <= 0.07


def test_chi2_false_alarm_rate_at_alpha_005() -> None:
    rng = np.random.default_rng(99)
    shares = np.array([0.5, 0.3, 0.15, 0.05])
    ref = stats.CategoricalReference(("a", "b", "c", "d"), rng.multinomial(10_000, shares))
    runs = 2000
    alarms = sum(_p(stats.chi2(ref, rng.multinomial(1000, shares))) < 0.05 for _ in range(runs))
    assert 0.03 <= alarms / runs <= 0.07


def test_ks_detects_a_02_sigma_shift_at_n_1000() -> None:
    rng = np.random.default_rng(7)
    ref = stats.numeric_reference(rng.normal(size=10_000))
    runs = 1000
    found = sum(_p(stats.ks(ref, rng.normal(0.2, 1, size=1000))) < 0.05 for _ in range(runs))
    assert found / runs >= 0.95


def test_chi2_finds_categorical_drift() -> None:
    rng = np.random.default_rng(5)
    before = np.array([0.5, 0.3, 0.15, 0.05])
    after = np.array([0.44, 0.3, 0.18, 0.08])  # a few points moved between plans
    ref = stats.CategoricalReference(("a", "b", "c", "d"), rng.multinomial(10_000, before))
    runs = 500
    found = sum(_p(stats.chi2(ref, rng.multinomial(1000, after))) < 0.05 for _ in range(runs))
    assert found / runs >= 0.95
    # A category the reference never saw is drift on its own.
    ref2 = stats.categorical_reference({"a": 600, "b": 400})
    live = stats.category_counts(ref2, ["a"] * 50 + ["b"] * 30 + ["new"] * 20)
    assert _p(stats.chi2(ref2, live)) < 1e-6
