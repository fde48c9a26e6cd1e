"""A bounded window of recent latencies per version, for the rollout analysis."""

from __future__ import annotations

import numpy as np


class LatencyWindow:
    """The last `size` latencies in a ring buffer; quantiles over what it holds.

    >>> w = LatencyWindow(4)
    >>> for x in [1, 2, 3, 4, 100]: w.add(x)
    >>> w.quantile(0.5), len(w)
    (3.5, 4)
    """

    def __init__(self, size: int = 4096) -> None:
        self._values = np.zeros(size, dtype=np.float64)
        self._count = 0

    def add(self, value: float) -> None:
        self._values[self._count % len(self._values)] = value
        self._count += 1

    def __len__(self) -> int:
        return min(self._count, len(self._values))

    def quantile(self, q: float) -> float | None:
        n = len(self)
        if n == 0:
            return None
        return float(np.quantile(self._values[:n], q))
