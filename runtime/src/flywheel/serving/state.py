"""Policy state that must survive a router restart and be shared by its replicas.

A bandit's arms are counts (pulls, rewards, their sum and sum of squares), and counts add
up: each router adds what it saw since its last sync to shared totals and takes the
totals back (`add_counts`), so every replica routes on what all of them learnt, and a
restarted one starts from there. A counter that only grows needs no lock between
replicas and loses nothing when one dies between two syncs (it loses its unsynced part).

    StateStore        SQLite: routers on one node or a shared volume (WAL mode)
    RedisStateStore   Redis: replicas anywhere (`redis://` URL); one hash per policy

`save`/`load` keep a whole JSON document (what is not a count).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# arm -> field -> value: what `add_counts` adds and returns.
Counts = dict[str, dict[str, float]]
# Between an arm's name and its field in a Redis hash's keys; no version name holds it.
_SEP = "\x1f"


class PolicyStore(Protocol):
    def save(self, deployment: str, policy: str, state: Any) -> None: ...
    def load(self, deployment: str, policy: str) -> Any | None: ...
    def add_counts(
        self, deployment: str, policy: str, deltas: Mapping[str, Mapping[str, float]]
    ) -> Counts: ...
    def close(self) -> None: ...


def open_store(where: str | Path) -> PolicyStore:
    """A `redis://` or `rediss://` URL, else a SQLite file's path."""
    text = str(where)
    if text.startswith(("redis://", "rediss://")):
        return RedisStateStore(text)
    return StateStore(text)


class StateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=5, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS policy_state ("
            " deployment TEXT NOT NULL, policy TEXT NOT NULL, state TEXT NOT NULL,"
            " updated REAL NOT NULL, PRIMARY KEY (deployment, policy))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS policy_counts ("
            " deployment TEXT NOT NULL, policy TEXT NOT NULL, arm TEXT NOT NULL,"
            " field TEXT NOT NULL, value REAL NOT NULL,"
            " PRIMARY KEY (deployment, policy, arm, field))"
        )
        self._db.commit()

    def save(self, deployment: str, policy: str, state: Any) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO policy_state VALUES (?, ?, ?, ?)",
                (deployment, policy, json.dumps(state, sort_keys=True), time.time()),
            )

    def load(self, deployment: str, policy: str) -> Any | None:
        row = self._db.execute(
            "SELECT state FROM policy_state WHERE deployment = ? AND policy = ?",
            (deployment, policy),
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def add_counts(
        self, deployment: str, policy: str, deltas: Mapping[str, Mapping[str, float]]
    ) -> Counts:
        """Add `deltas` to the shared totals and return the totals, in one transaction."""
        rows = [
            (deployment, policy, arm, field, float(value))
            for arm, fields in deltas.items()
            for field, value in fields.items()
            if value
        ]
        with self._db:
            self._db.executemany(
                "INSERT INTO policy_counts VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (deployment, policy, arm, field) "
                "DO UPDATE SET value = value + excluded.value",
                rows,
            )
            found = self._db.execute(
                "SELECT arm, field, value FROM policy_counts WHERE deployment = ? AND policy = ?",
                (deployment, policy),
            ).fetchall()
        totals: Counts = {}
        for arm, field, value in found:
            totals.setdefault(arm, {})[field] = value
        return totals

    def close(self) -> None:
        self._db.close()


class RedisStateStore:
    """The same, in Redis: HINCRBYFLOAT then HGETALL in one MULTI, so a sync is atomic."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self.client.close()
            where = url.rsplit("@", 1)[-1]  # never the password
            raise StateError(f"router state: redis at {where} is not reachable: {exc}") from None

    @staticmethod
    def _key(deployment: str, policy: str, what: str) -> str:
        # The hash tag keeps a policy's keys in one slot (Redis Cluster).
        return f"flywheel:router:{{{deployment}:{policy}}}:{what}"

    def save(self, deployment: str, policy: str, state: Any) -> None:
        self.client.set(self._key(deployment, policy, "state"), json.dumps(state, sort_keys=True))

    def load(self, deployment: str, policy: str) -> Any | None:
        found = self.client.get(self._key(deployment, policy, "state"))
        return None if found is None else json.loads(found)

    def add_counts(
        self, deployment: str, policy: str, deltas: Mapping[str, Mapping[str, float]]
    ) -> Counts:
        key = self._key(deployment, policy, "counts")
        pipe = self.client.pipeline(transaction=True)
        for arm, fields in deltas.items():
            for field, value in fields.items():
                if value:
                    pipe.hincrbyfloat(key, f"{arm}{_SEP}{field}", float(value))
        pipe.hgetall(key)
        found: dict[bytes, bytes] = pipe.execute()[-1]
        totals: Counts = {}
        for name, raw in found.items():
            arm, _, field = name.decode().rpartition(_SEP)
            totals.setdefault(arm, {})[field] = float(raw)
        return totals

    def close(self) -> None:
        self.client.close()


class StateError(Exception):
    """The state store cannot be reached; the message names where, never a password."""
