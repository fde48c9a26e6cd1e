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
