"""The keys of objects to reconcile, and the threads that reconcile them.

    add(key) ───────► ready ──► a worker ──► reconcile(key)
    add_after(key, s) ► delayed ─┘   │ raised: add_after(key, backoff) ──┘
                                     │ added again while running: once more after

A key waits at most once; a key being reconciled is not handed to a second worker, and
the wake-ups that arrive meanwhile become one rerun. An `add_after` of a key that will
run no later anyway (ready, or delayed to an earlier moment) adds nothing: a burst of
child events (a Job created, its Pod scheduled, started, finished) delayed by a short
window is one reconcile of its owner, not five.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """`workers` threads run `reconcile(key)`; a key that raised comes back after a
    capped exponential backoff (`retry_base` doubling up to `retry_cap` seconds)."""

    def __init__(
        self,
        reconcile: Callable[[K], None],
        workers: int,
        retry_base: float = 0.5,
        retry_cap: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reconcile = reconcile
        self._workers = workers
        self._retry_base, self._retry_cap = retry_base, retry_cap
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()  # in _ready
        self._running: set[K] = set()
        self._again: set[K] = set()  # added while running
        self._delayed: list[tuple[float, int, K]] = []  # (due, tie, key)
        self._dues: dict[K, list[float]] = {}  # key -> the dues it has in _delayed
        self._tie = 0
        self._failures: dict[Hashable, int] = {}
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def start(self) -> None:
        if self._threads:
            return
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def started(self) -> bool:
        return bool(self._threads)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def add(self, key: K) -> None:
        with self._cond:
            self._add(key)

    def add_after(self, key: K, delay: float) -> None:
        with self._cond:
            due = self._clock() + delay
            dues = self._dues.get(key)
            if key in self._queued or (dues and min(dues) <= due):
                return  # it runs by then anyway, and sees what this wake-up is for
            self._tie += 1
            heapq.heappush(self._delayed, (due, self._tie, key))
            self._dues.setdefault(key, []).append(due)
            self._cond.notify()

    def depth(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def _add(self, key: K) -> None:
        if key in self._running:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def _next(self) -> K | None:
        """The next key to run, waiting for one; None once stopped."""
        with self._cond:
            while not self._stopped:
                now = self._clock()
                while self._delayed and self._delayed[0][0] <= now:
                    due, _, key = heapq.heappop(self._delayed)
                    self._undue(key, due)
                    self._add(key)
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._running.add(key)
                    return key
                timeout = self._delayed[0][0] - now if self._delayed else None
                self._cond.wait(timeout)
            return None

    def _undue(self, key: K, due: float) -> None:
        dues = self._dues[key]
        dues.remove(due)
        if not dues:
            del self._dues[key]

    def _work(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._reconcile(key)
            except Exception:
                log.exception("reconcile of %s failed; retrying", key)
                failures = self._failures.get(key, 0)
                self._failures[key] = failures + 1
                self.add_after(key, min(self._retry_base * 2.0**failures, self._retry_cap))
            else:
                self._failures.pop(key, None)
            with self._cond:
                self._running.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self._add(key)
