"""What the watches hold: the last seen version of every object the operator reads.

Kopf watches the owner kinds and the children (kinds in `WATCHED`); each event lands
here, and so does the answer to every write the operator makes (write-through), so a
reconcile right after its own write sees that write. `Kube` reads from a `Store` instead
of the API for the kinds it serves:

    watch event ──► Store.put ──► newer? ──► on_change(obj, written=False)
    our write   ──► Store.put ──► newer? ──► on_change(obj, written=True)
    (handlers/__init__.py wakes the owner, and whoever read a changed owner)
    reconcile   ──► Kube.get / Kube.select ──► Store (no API call)

A store answers with the objects it holds, which the callers must not change.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Key = tuple[str, str, str]  # (kind, namespace, name)

# The object a reconcile is for: what it reads of other owners makes it their dependent.
_reader: contextvars.ContextVar[Key | None] = contextvars.ContextVar("reader", default=None)


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"])


# Metadata that changes without changing anything a reconcile reads: the version itself,
# who wrote which field, and finalizers (the Job controller's tracking finalizer is
# removed from every Pod of a Job once counted).
_BOOKKEEPING = frozenset({"resourceVersion", "managedFields", "finalizers"})


def differs(held: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether `new` changes anything a reconcile reads of `held` (its predecessor)."""
    if held is None:
        return True
    if held.keys() != new.keys():
        return True
    for field, value in new.items():
        if field != "metadata" and held[field] != value:
            return True
    old_meta, new_meta = held["metadata"], new["metadata"]
    fields = (old_meta.keys() | new_meta.keys()) - _BOOKKEEPING
    return any(old_meta.get(f) != new_meta.get(f) for f in fields)


def _version(obj: dict[str, Any]) -> int | None:
    """The resourceVersion as a number: etcd revisions, which only grow."""
    value = str(obj["metadata"].get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


@contextlib.contextmanager
def reading_for(owner: Key) -> Iterator[None]:
    """Reads inside are made on behalf of `owner` (see `Store.dependents`)."""
    token = _reader.set(owner)
    try:
        yield
    finally:
        _reader.reset(token)


class Store:
    """Objects by kind, namespace and name, with an index of every label.

    Thread-safe: kopf's event loop writes, the reconcile workers read.
    """

    def __init__(
        self,
        kinds: Iterable[str],
        tracked: Iterable[str] = (),
        on_change: Callable[[dict[str, Any], bool], None] | None = None,
    ) -> None:
        self._kinds = frozenset(kinds)
        self.on_change = on_change
        # Kinds whose readers are recorded: a change of one wakes who read it.
        self._tracked = frozenset(tracked)
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        # (kind, namespace, label, value) -> names
        self._labels: dict[tuple[str, str, str, str], set[str]] = {}
        self._dependents: dict[Key, set[Key]] = {}

    def serves(self, kind: str) -> bool:
        return kind in self._kinds

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (kind, namespace or "", name)
        reader = _reader.get()
        with self._lock:
            if reader is not None and kind in self._tracked and reader != key:
                self._dependents.setdefault(key, set()).add(reader)
            return self._objects.get(key)

    def select(
        self, kind: str, namespace: str | None, selector: dict[str, str]
    ) -> list[dict[str, Any]]:
        ns = namespace or ""
        with self._lock:
            names: set[str] | None = None
            for label, value in selector.items():
                found = self._labels.get((kind, ns, label, value), set())
                names = set(found) if names is None else names & found
            if names is None:  # no selector: every object of the kind in the namespace
                names = {k[2] for k in self._objects if k[0] == kind and k[1] == ns}
            return [self._objects[(kind, ns, n)] for n in sorted(names)]

    def keys(self, kind: str) -> list[Key]:
        with self._lock:
            return [k for k in self._objects if k[0] == kind]

    def dependents(self, key: Key) -> list[Key]:
        """The owners whose last reconcile read `key`."""
        with self._lock:
            return sorted(self._dependents.get(key, ()))

    def put(self, obj: dict[str, Any], written: bool = False) -> bool:
        """Hold `obj` unless an equal or newer version is held; True when it was newer.
        `on_change` is told only when it changed more than bookkeeping (`differs`).

        `written`: the answer to a write of this operator, not a watch event."""
        if obj.get("kind") not in self._kinds:
            return False
        key = key_of(obj)
        with self._lock:
            held = self._objects.get(key)
            if held is not None:
                new, old = _version(obj), _version(held)
                if new is not None and old is not None and new <= old:
                    return False
                self._unindex(key, held)
            self._objects[key] = obj
            for label, value in (obj["metadata"].get("labels") or {}).items():
                self._labels.setdefault((key[0], key[1], label, value), set()).add(key[2])
        if self.on_change is not None and differs(held, obj):
            self.on_change(obj, written)
        return True

    def remove(self, kind: str, namespace: str | None, name: str) -> None:
        key = (kind, namespace or "", name)
        with self._lock:
            held = self._objects.pop(key, None)
            if held is not None:
                self._unindex(key, held)
            self._dependents.pop(key, None)

    def _unindex(self, key: Key, obj: dict[str, Any]) -> None:
        for label, value in (obj["metadata"].get("labels") or {}).items():
            index = (key[0], key[1], label, value)
            names = self._labels.get(index)
            if names is not None:
                names.discard(key[2])
                if not names:
                    del self._labels[index]
