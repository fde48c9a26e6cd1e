"""Overlapping the stages of an ingest: read, check and write run on different threads.

Arrow and numpy release the GIL in their kernels, so threads give real parallelism here.
Order is always kept; memory is bounded by how far ahead each stage may run.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_DONE = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate `items` in a background thread, up to `depth` ahead.

    Arrow parses without holding the GIL, so reading the next batch overlaps with
    validating and writing this one. Errors surface in the consumer, in order; a
    consumer that stops early stops the reader.
    """
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="flywheel-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def ordered_map(
    fn: Callable[[T], R], items: Iterator[T], workers: int, ahead: int = 2
) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order, at most
    `workers + ahead` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pending: collections.deque[concurrent.futures.Future[R]] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix="flywheel-check"
    ) as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers + ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
