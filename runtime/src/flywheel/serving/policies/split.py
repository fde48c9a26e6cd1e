"""A weighted split of requests over versions (canary traffic)."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Mapping


def key_point(key: str) -> float:
    """A request key's fixed point in [0, 1): the same key lands on the same point on
    every router replica and after every restart.

    >>> key_point("customer-42") == key_point("customer-42")
    True
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class WeightedSplit:
    """Routes a point u in [0, 1) to the version whose slice of [0, 1) holds it.

    Algorithm: cumulative weights, normalized, searched with bisect (O(log n)). Versions
    keep the order given (stable first), so when a canary step raises the candidate's
    weight, every sticky key already on the candidate stays there: the candidate's slice
    only grows downwards from 1. Weights of zero get no slice; all zero is an error.

    >>> WeightedSplit({"v1": 90, "v2": 10}).choose(0.95)
    'v2'
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"weights must not be negative: {dict(weights)}")
        live = [(v, float(w)) for v, w in weights.items() if w > 0]
        total = sum(w for _, w in live)
        if total <= 0:
            raise ValueError("at least one version needs a weight above zero")
        self.versions = [v for v, _ in live]
        self.shares = {v: w / total for v, w in live}
        edges = []
        running = 0.0
        for _, w in live:
            running += w / total
            edges.append(running)
        edges[-1] = 1.0
        self._edges = edges

    def choose(self, u: float) -> str:
        return self.versions[min(bisect.bisect_right(self._edges, u), len(self.versions) - 1)]

    def choose_key(self, key: str) -> str:
        """Sticky routing: the same key goes to the same version while weights hold."""
        return self.choose(key_point(key))

    def without(self, versions: set[str]) -> WeightedSplit | None:
        """The split over the other versions (when some are ejected), or None."""
        rest = {v: w for v, w in self.shares.items() if v not in versions}
        return WeightedSplit(rest) if rest else None
