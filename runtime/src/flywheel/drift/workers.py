"""Features of a drift run, tested side by side on the CPUs this process may use.

numpy's sort, searchsorted and reductions release the GIL, so a thread per CPU runs the
features' tests in parallel without copying a column to another process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")

# cgroup v2's CPU limit of this container ("max 100000" when it has none).
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, within its container's CPU
    limit (a Pod's `resources.limits.cpu`), at least one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _cgroup_limit() or cpus))


def _cgroup_limit() -> int | None:
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def map_features(work: Callable[[In], Out], items: Iterable[In]) -> list[Out]:
    """`work` on every item, in order; on a thread per usable CPU when there are more."""
    items = list(items)
    threads = min(usable_cpus(), len(items))
    if threads <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="drift") as pool:
        return list(pool.map(work, items))
