"""Shadow traffic: which requests to mirror to the candidate, and how its answer
compares with the primary's.

The mirroring itself (a bounded queue, its own timeout, never awaited by the primary)
is the router's; these classes only decide and count, so they are pure and cheap.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ShadowPolicy:
    """Mirror a share of requests: request i is mirrored when u_i < percent / 100.

    Algorithm: Bernoulli sampling with the caller's uniform draw. It fails open: a
    share above what the queue can absorb is dropped and counted by the router, never
    waited for.
    """

    target: str
    percent: float = 100.0
    timeout_s: float = 1.0
    queue_size: int = 1000
    # Scores at or above this are the positive class, for agreement of single scores.
    threshold: float = 0.5

    def mirror(self, u: float) -> bool:
        return u * 100.0 < self.percent


def compare(primary: np.ndarray, shadow: np.ndarray, threshold: float = 0.5) -> tuple[bool, float]:
    """(agree, mean absolute delta) of two answers to the same request.

    Agreement is on the decision: argmax per row for score vectors [rows, k], the side
    of `threshold` for one score per row. Answers of different shapes disagree.

    >>> compare(np.array([0.7, 0.2]), np.array([0.6, 0.4]))
    (True, 0.15...)
    """
    a = np.asarray(primary, dtype=np.float64)
    b = np.asarray(shadow, dtype=np.float64)
    if a.shape != b.shape:
        return False, float("nan")
    delta = float(np.abs(a - b).sum()) / a.size if a.size else 0.0
    if a.ndim == 2 and a.shape[1] > 1:
        agree = bool(np.array_equal(a.argmax(axis=1), b.argmax(axis=1)))
    else:
        agree = bool(np.array_equal(a >= threshold, b >= threshold))
    return agree, delta


@dataclasses.dataclass
class ShadowStats:
    """What the mirrored requests showed, since the router started."""

    mirrored: int = 0
    dropped: int = 0  # the queue was full
    errors: int = 0
    timeouts: int = 0
    compared: int = 0
    agreed: int = 0
    delta_sum: float = 0.0

    def record(self, agree: bool, delta: float) -> None:
        self.compared += 1
        self.agreed += agree
        if delta == delta:  # not NaN
            self.delta_sum += delta

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def mean_delta(self) -> float | None:
        return self.delta_sum / self.compared if self.compared else None
