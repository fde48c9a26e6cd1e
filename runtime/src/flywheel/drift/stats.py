"""Drift statistics: a live sample against a prepared reference, vectorised numpy only.

The reference side of every test is prepared once per reference version
(`numeric_reference`, `categorical_reference`) and cached by the caller; a check then
costs one pass (PSI, JS) or one sort (KS, Wasserstein) over the live values.

    method       score                                p-value  drift when
    ks           KS statistic D = sup |F_ref - F_cur|  yes      p-value < alpha
    chi2         Cramér's V of the 2 x k table        yes      p-value < alpha
    psi          population stability index           no       score >= threshold
    wasserstein  W1 / standard deviation of reference  no       score >= threshold
    js           Jensen-Shannon distance (base 2)      no       score >= threshold

Non-finite live values (NaN, +-inf) are left out of every numeric test; nulls are the
caller's to drop. The p-values are the two-sample KS asymptotic p-value (Kolmogorov's
limit with Stephens' small-sample correction) and the chi-square survival function of
the homogeneity test, computed here so that the runtime needs no scipy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# PSI: proportions of empty bins are raised to this, so the log ratio stays finite.
# 1e-4 adds at most about 0.001 per empty bin to a PSI whose alarm level is 0.1-0.25.
PSI_EPSILON = 1e-4
# Quantile bins of the reference for PSI and JS on numbers: ten deciles.
DEFAULT_BINS = 10
# The bucket for categories the reference did not list (its rare values and new ones).
OTHER = "__other__"


# --- the prepared reference ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class NumericReference:
    """Everything a numeric test needs from the reference, computed once per version."""

    # Distinct finite values, ascending, and how many reference values are below each
    # (`below`) and at most each (`upto`): F_ref(x-) and F_ref(x) at the jumps, as counts.
    values: np.ndarray
    below: np.ndarray
    upto: np.ndarray
    count: int
    std: float
    # Inner edges of the quantile bins (-inf, e1], (e1, e2], ..., (e_last, +inf).
    edges: np.ndarray
    bin_counts: np.ndarray

    @property
    def proportions(self) -> np.ndarray:
        return self.bin_counts / max(self.count, 1)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields as arrays, for an .npz cache (`from_arrays` reads them back)."""
        return {
            "values": self.values,
            "below": self.below,
            "upto": self.upto,
            "count": np.array(self.count),
            "std": np.array(self.std),
            "edges": self.edges,
            "bin_counts": self.bin_counts,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> NumericReference:
        return cls(
            values=arrays["values"],
            below=arrays["below"],
            upto=arrays["upto"],
            count=int(arrays["count"]),
            std=float(arrays["std"]),
            edges=arrays["edges"],
            bin_counts=arrays["bin_counts"],
        )


def numeric_reference(values: Any, bins: int = DEFAULT_BINS) -> NumericReference:
    """Prepare a reference sample: distinct values with their CDF, and quantile bins.

    >>> ref = numeric_reference([1.0, 2.0, 2.0, 3.0], bins=2)
    >>> ref.values.tolist(), ref.below.tolist(), ref.upto.tolist(), ref.edges.tolist()
    ([1.0, 2.0, 3.0], [0, 1, 3], [1, 3, 4], [2.0])
    """
    x = _finite(values)
    x.sort()
    distinct, first, counts = _runs(x)
    below = first.astype(np.int64)
    upto = below + counts
    inner = np.unique(np.quantile(x, np.arange(1, bins) / bins)) if x.size else np.empty(0)
    # x is sorted and finite: each edge's count of values at most it is one binary search.
    at_most = np.searchsorted(x, inner, side="right")
    bin_counts = np.diff(np.concatenate(([0], at_most, [x.size]))).astype(np.int64)
    return NumericReference(
        values=distinct,
        below=below,
        upto=upto,
        count=int(x.size),
        std=float(x.std()) if x.size else 0.0,
        edges=inner,
        bin_counts=bin_counts,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class CategoricalReference:
    """Category -> count of the reference; `OTHER` holds what it did not list."""

    categories: tuple[str, ...]
    counts: np.ndarray

    @property
    def count(self) -> int:
        return int(self.counts.sum())


def categorical_reference(counts: Mapping[str, int]) -> CategoricalReference:
    """From category counts (a profile's top values, `OTHER` for the rest)."""
    items = sorted((str(k), int(v)) for k, v in counts.items() if k != OTHER)
    other = int(counts.get(OTHER, 0))
    return CategoricalReference(
        categories=(*[k for k, _ in items], OTHER),
        counts=np.array([v for _, v in items] + [other], dtype=np.int64),
    )


def counts_on(reference: CategoricalReference, counts: Mapping[str, int]) -> np.ndarray:
    """Live category counts on the reference's categories (unknown ones -> `OTHER`)."""
    index = {c: i for i, c in enumerate(reference.categories)}
    other = len(reference.categories) - 1
    out = np.zeros(len(reference.categories), dtype=np.int64)
    for value, n in counts.items():
        out[index.get(value, other)] += n
    return out


def category_counts(reference: CategoricalReference, values: Sequence[Any]) -> np.ndarray:
    """Live category values counted on the reference's categories."""
    uniq, counts = np.unique(np.asarray([str(v) for v in values], dtype=object), return_counts=True)
    return counts_on(reference, dict(zip(uniq.tolist(), counts.tolist(), strict=True)))


# --- results -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Result:
    """One test on one column: the score, the p-value where the method has one."""

    score: float
    p_value: float | None = None
    statistic: float | None = None  # the raw statistic where it differs from the score


# --- Kolmogorov-Smirnov --------------------------------------------------------------


def ks(reference: NumericReference, current: Any) -> Result:
    """Two-sample KS: D = sup_x |F_ref(x) - F_cur(x)| and its asymptotic p-value.

    Only the live sample is sorted. Between two distinct live values u_i < u_{i+1} the
    live CDF is constant, so the supremum over [u_i, u_{i+1}) is reached at u_i or just
    before u_{i+1}: D is the largest of |F_ref(u_i) - F_cur(u_i)|,
    |F_ref(u_{i+1}-) - F_cur(u_i)| and F_ref(u_0-), all read from the reference's counts.

    The differences are taken between counts scaled to a common denominator,
    |a m - b n| / (n m), in integers: exact, and one division for the whole column.
    """
    x = _finite(current)
    m, n = x.size, reference.count
    if m == 0 or n == 0:
        return Result(score=math.nan, p_value=math.nan)
    x.sort()
    scaled = _ks_untied(reference, x)
    if scaled is None:
        scaled = _ks_tied(reference, x)
    d = scaled / (n * m)
    return Result(score=d, p_value=ks_p_value(d, n, m))


def _ks_untied(reference: NumericReference, x: np.ndarray) -> int | None:
    """n m D when no value repeats within either sample or across them (continuous
    features, the common case); None otherwise.

    Then F_ref(x_i-) = at_i / n with at_i the reference values below x_i, F_cur(x_i-) =
    i / m, and at x_i both CDFs step by exactly one value: with L_i = at_i m - i n, the
    left differences are L_i and the right ones L_i - n, so n m D = max(max L, n - min L).
    """
    m, n = x.size, reference.count
    if reference.values.size != n or (x[1:] == x[:-1]).any():
        return None
    at = np.searchsorted(reference.values, x, side="left")
    # `at` ascends, so the live values above every reference value are a suffix.
    inside = m if at[-1] < n else int(np.searchsorted(at, n, side="left"))
    if (reference.values[at[:inside]] == x[:inside]).any():
        return None  # a live value equals a reference value: the general path
    at *= m
    at -= np.arange(0, m * n, n, dtype=np.int64)
    return max(int(at.max()), n - int(at.min()))


def _ks_tied(reference: NumericReference, x: np.ndarray) -> int:
    """n m D over the distinct live values, for samples with repeated values."""
    m, n = x.size, reference.count
    distinct, _, counts = _runs(x)
    cur = np.cumsum(counts) * n  # F_cur at each distinct live value, times n m
    at = np.searchsorted(reference.values, distinct, side="left")
    inside = at < reference.values.size
    hit = np.zeros(distinct.size, dtype=bool)
    hit[inside] = reference.values[at[inside]] == distinct[inside]
    # F_ref(u-): reference values strictly below u; F_ref(u): at most u (times n m).
    padded_below = np.append(reference.below, n)
    left = padded_below[at] * m
    padded_upto = np.append(reference.upto, n)
    right = np.where(hit, padded_upto[at], padded_below[at]) * m
    return max(
        int(left[0]),
        int(np.abs(right - cur).max()),
        int(np.abs(left[1:] - cur[:-1]).max()) if distinct.size > 1 else 0,
    )


def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sided asymptotic p-value of the two-sample statistic D for sizes n and m.

    Kolmogorov's limiting distribution at (sqrt(en) + 0.12 + 0.11 / sqrt(en)) * D with
    en = n m / (n + m) (Stephens 1970; Numerical Recipes' probks).

    >>> round(ks_p_value(0.0, 100, 100), 6), round(ks_p_value(1.0, 100, 100), 6)
    (1.0, 0.0)
    """
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d
    return _kolmogorov_sf(lam)


def _kolmogorov_sf(lam: float) -> float:
    """Q(lam) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 lam^2), the Kolmogorov tail."""
    if lam < 0.2:  # the series converges slowly here and its value is 1 to 1e-15
        return 1.0
    k = np.arange(1, 101, dtype=np.float64)
    terms = 2 * (-1) ** (k - 1) * np.exp(-2 * k * k * lam * lam)
    return float(min(1.0, max(0.0, terms.sum())))


# --- chi-square ----------------------------------------------------------------------


def chi2(reference: CategoricalReference, current_counts: Any) -> Result:
    """Chi-square homogeneity test of the 2 x k table (reference counts, live counts).

    Score: Cramér's V = sqrt(statistic / total), in [0, 1] whatever the sample sizes;
    `statistic` and the p-value (k - 1 degrees of freedom) are those of
    `scipy.stats.chi2_contingency(table, correction=False)`. Categories empty on both
    sides are left out.
    """
    ref = np.asarray(reference.counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    keep = (ref + cur) > 0
    ref, cur = ref[keep], cur[keep]
    n, m = ref.sum(), cur.sum()
    if n == 0 or m == 0:
        return Result(score=math.nan, p_value=math.nan, statistic=math.nan)
    total = n + m
    column = ref + cur
    expected_ref, expected_cur = column * (n / total), column * (m / total)
    stat = float(
        (((ref - expected_ref) ** 2) / expected_ref).sum()
        + (((cur - expected_cur) ** 2) / expected_cur).sum()
    )
    dof = int(keep.sum()) - 1
    p = chi2_sf(stat, dof) if dof > 0 else 1.0
    return Result(score=math.sqrt(stat / total), p_value=p, statistic=stat)


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for X ~ chi-square(dof): the regularized upper incomplete gamma.

    >>> round(chi2_sf(3.841458820694124, 1), 6)
    0.05
    """
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    # Numerical Recipes gammp/gammq: a series below a + 1, a continued fraction above.
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-16:
            break
    return min(1.0, math.exp(log_prefix) * h)


# --- binned distances: PSI and Jensen-Shannon ----------------------------------------


def numeric_bin_counts(reference: NumericReference, current: Any) -> np.ndarray:
    """Live values counted in the reference's quantile bins (non-finite values dropped)."""
    return _bin_counts(np.asarray(current, dtype=np.float64), reference.edges)


def psi(reference_counts: Any, current_counts: Any, epsilon: float = PSI_EPSILON) -> Result:
    """PSI = sum_i (c_i - r_i) ln(c_i / r_i) over bin proportions, each raised to epsilon.

    >>> round(psi([50, 50], [50, 50]).score, 6)
    0.0
    >>> round(psi([50, 50], [100, 0]).score, 4)  # (1-.5) ln(1/.5) + (1e-4-.5) ln(1e-4/.5)
    4.6043
    """
    r, c = _proportions(reference_counts), _proportions(current_counts)
    if r is None or c is None:
        return Result(score=math.nan)
    r = np.maximum(r, epsilon)
    c = np.maximum(c, epsilon)
    return Result(score=float(((c - r) * np.log(c / r)).sum()))


def jensen_shannon(reference_counts: Any, current_counts: Any) -> Result:
    """Jensen-Shannon distance, base 2: sqrt of the divergence, 0 (same) to 1 (disjoint).

    Equal to `scipy.spatial.distance.jensenshannon(r, c, base=2)`.

    >>> jensen_shannon([1, 0], [0, 1]).score
    1.0
    """
    r, c = _proportions(reference_counts), _proportions(current_counts)
    if r is None or c is None:
        return Result(score=math.nan)
    mid = (r + c) / 2
    divergence = (_kl(r, mid) + _kl(c, mid)) / 2
    return Result(score=math.sqrt(max(divergence, 0.0)))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / q[nz])).sum())


# --- Wasserstein ---------------------------------------------------------------------


def wasserstein(reference: NumericReference, current: Any) -> Result:
    """W1 = integral |F_ref - F_cur| dx, divided by the reference's standard deviation.

    `statistic` is W1 itself (`scipy.stats.wasserstein_distance`); the score is scaled so
    that one threshold fits features of any unit. A constant reference scales by 1.
    """
    x = _finite(current)
    m, n = x.size, reference.count
    if m == 0 or n == 0:
        return Result(score=math.nan, statistic=math.nan)
    x.sort()
    distinct, _, counts = _runs(x)
    # Both CDFs on the merged grid of distinct values; between neighbours they are flat.
    grid = np.union1d(reference.values, distinct)
    ref_at = np.searchsorted(reference.values, grid, side="right")
    f_ref = np.append(0, reference.upto)[ref_at] / n
    cur_at = np.searchsorted(distinct, grid, side="right")
    f_cur = np.append(0, np.cumsum(counts))[cur_at] / m
    w = float((np.abs(f_ref - f_cur)[:-1] * np.diff(grid)).sum())
    scale = reference.std if reference.std > 0 else 1.0
    return Result(score=w / scale, statistic=w)


# --- many features at once -----------------------------------------------------------


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """p * k, at most 1: controls the chance of any false alarm among k tests.

    >>> bonferroni([0.01, 0.2, 0.5])
    [0.03, 0.6000000000000001, 1.0]
    """
    k = len(p_values)
    return [min(1.0, p * k) for p in p_values]


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (controls the false discovery rate).

    Equal to `scipy.stats.false_discovery_control(p, method="bh")`.

    >>> [round(p, 4) for p in benjamini_hochberg([0.01, 0.04, 0.03, 0.5])]
    [0.04, 0.0533, 0.0533, 0.5]
    """
    p = np.asarray(p_values, dtype=np.float64)
    k = p.size
    if k == 0:
        return []
    order = np.argsort(p)
    scaled = p[order] * k / np.arange(1, k + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(k)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(v) for v in out]


# --- helpers -------------------------------------------------------------------------


def _finite(values: Any) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    # A copy either way: callers sort it in place.
    return x.copy() if finite.all() else x[finite]


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of a sorted array, the index each starts at, and its count."""
    if sorted_values.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return sorted_values, empty, empty
    new = sorted_values[1:] != sorted_values[:-1]
    if new.all():  # no ties, as with most continuous features: skip building the runs
        starts = np.arange(sorted_values.size)
        return sorted_values, starts, np.ones(sorted_values.size, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], new)))
    counts = np.diff(np.append(starts, sorted_values.size))
    return sorted_values[starts], starts, counts


def _bin_counts(x: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Counts of x in the right-closed bins around `inner`, without sorting or searching.

    Per block of x that fits the L2 cache, one SIMD compare-and-count per edge gives
    #(x <= edge); the bins are the differences. The outer edges -inf and the largest
    float leave -inf, +inf and NaN (never <= anything) out of every bin. With ten bins
    this reads x from memory once, several times faster than `searchsorted`.
    """
    edges = np.concatenate(([-np.inf], inner, [np.finfo(np.float64).max]))
    at_most = np.zeros(edges.size, dtype=np.int64)
    mask = np.empty(min(_BLOCK, x.size), dtype=bool)
    for start in range(0, x.size, _BLOCK):
        block = x[start : start + _BLOCK]
        out = mask[: block.size]
        for i, edge in enumerate(edges):
            np.less_equal(block, edge, out=out)
            at_most[i] += np.count_nonzero(out)
    return np.diff(at_most)


_BLOCK = 1 << 16  # 512 KiB of float64


def _proportions(counts: Any) -> np.ndarray | None:
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else None
