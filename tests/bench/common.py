"""Shared bench helpers: sizes from the environment, timing, a printed report.

FLYWHEEL_BENCH_SCALE multiplies every size (default 1; e.g. 0.05 for a quick run).
Figures are printed side by side from one run on one machine; nothing asserts a time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def scale() -> float:
    return float(os.environ.get("FLYWHEEL_BENCH_SCALE", "1"))


def scaled(n: int) -> int:
    return max(1, int(n * scale()))


def best_of(repeats: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The shortest wall time of `repeats` calls, and the last result."""
    best = float("inf")
    result: Any = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def report(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, *rows]:
        print("  " + "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
