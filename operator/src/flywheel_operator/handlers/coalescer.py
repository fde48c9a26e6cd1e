"""One reconcile per object at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Coalescer:
    """One reconcile per object at a time; wake-ups that arrive meanwhile become one rerun.

    A burst of child events (a Job created, started, finished) and a timer tick would
    otherwise each run a full reconcile of the same owner.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: dict[str, bool] = {}  # uid -> woken again while running

    def run(self, uid: str, reconcile: Callable[[], None]) -> None:
        with self._lock:
            if uid in self._dirty:
                self._dirty[uid] = True
                return
            self._dirty[uid] = False
        try:
            while True:
                reconcile()
                with self._lock:
                    if not self._dirty[uid]:
                        return
                    self._dirty[uid] = False
        finally:
            with self._lock:
                self._dirty.pop(uid, None)
