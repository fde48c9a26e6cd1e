"""Wake-ups of a busy object collapse into one rerun; other objects are not held up."""

from __future__ import annotations

import threading

import pytest

from flywheel_operator.handlers.coalescer import Coalescer


def test_wakeups_while_running_become_one_rerun() -> None:
    coalescer = Coalescer()
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow() -> None:
        runs.append("run")
        if len(runs) == 1:
            started.set()
            release.wait(5)

    first = threading.Thread(target=coalescer.run, args=("uid-a", slow))
    first.start()
    started.wait(5)
    for _ in range(5):  # five events arrive while the first reconcile runs
        coalescer.run("uid-a", slow)
    coalescer.run("uid-b", lambda: runs.append("other"))  # another object runs at once
    release.set()
    first.join(5)
    assert runs == ["run", "other", "run"]


def test_an_exception_frees_the_object() -> None:
    coalescer = Coalescer()

    def boom() -> None:
        raise RuntimeError("api down")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            coalescer.run("uid", boom)
    ran: list[int] = []
    coalescer.run("uid", lambda: ran.append(1))
    assert ran == [1]
