"""Wake-ups of a busy object collapse into one rerun; other objects are not held up; a
reconcile that raised comes back after a backoff."""

from __future__ import annotations

import threading

from flywheel_operator.handlers.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wakeups_while_running_become_one_rerun() -> None:
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    runs: list[str] = []

    def reconcile(key: str) -> None:
        runs.append(key)
        if runs == ["a"]:
            started.set()
            release.wait(5)
        if runs.count("a") == 2:
            done.set()

    queue: WorkQueue[str] = WorkQueue(reconcile, workers=2)
    queue.start()
    queue.add("a")
    assert started.wait(5)
    for _ in range(5):  # five events arrive while the first reconcile runs
        queue.add("a")
    queue.add("b")  # another object runs at once, on the other worker
    release.set()
    assert done.wait(5)
    queue.stop()
    assert sorted(runs) == ["a", "a", "b"]
    assert runs.index("b") < runs.index("a", 1)


def test_a_key_waits_once() -> None:
    queue: WorkQueue[str] = WorkQueue(lambda key: None, workers=1)
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert queue.depth() == 2


def test_an_exception_brings_the_key_back_after_a_growing_backoff() -> None:
    clock = Clock()
    failed = threading.Event()
    calls: list[str] = []

    def reconcile(key: str) -> None:
        calls.append(key)
        failed.set()
        raise RuntimeError("api down")

    queue: WorkQueue[str] = WorkQueue(reconcile, workers=1, retry_base=0.5, clock=clock)
    queue.start()
    queue.add("a")
    assert failed.wait(5)
    queue.stop()
    # Not due yet: the retry waits 0.5 s on the queue's clock.
    assert calls == ["a"]
    assert queue.depth() == 1
    assert queue._delayed[0][0] == 0.5


def test_a_burst_of_delayed_wakeups_waits_once() -> None:
    """A Job's and its Pod's changes (created, scheduled, started, finished) each wake the
    owner a short while later: the owner waits once, until the first wake-up's moment."""
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(lambda key: None, workers=1, clock=clock)
    for step in range(5):
        clock.now = step * 0.1
        queue.add_after("ds", 0.5)
    assert queue.depth() == 1
    assert queue._delayed[0][0] == 0.5
    queue.add_after("ds", 600)  # later than it runs anyway
    assert queue.depth() == 1
    queue.add("other")
    queue.add_after("other", 0.5)  # ready already: it runs before then anyway
    assert queue.depth() == 2


def test_delayed_wakeups_run_once_when_due() -> None:
    clock = Clock()
    runs: list[str] = []
    done = threading.Event()

    def reconcile(key: str) -> None:
        runs.append(key)
        if len(runs) == 2:
            done.set()

    queue: WorkQueue[str] = WorkQueue(reconcile, workers=1, clock=clock)
    queue.add_after("resync", 600)
    for _ in range(3):
        queue.add_after("ds", 0.5)
    clock.now = 1.0
    queue.add("tick")  # the worker finds the due entry beside it
    queue.start()
    assert done.wait(5)
    queue.stop()
    assert sorted(runs) == ["ds", "tick"]
    assert queue.depth() == 1  # the resync, not due yet
