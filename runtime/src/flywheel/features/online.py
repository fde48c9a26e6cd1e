"""Online stores: per entity, its latest feature row and its window tiles.

Both stores keep, per entity, one JSON document under the entity's key (the JSON list of
its join-key values, `entity_key_json`):

    {"t": event time of the entity's latest row, in microseconds since the epoch,
     "v": {feature: value} of the columns and expressions at that row,
     "w": {feature: [integer?, [[tile time, partial aggregate...], ...]]}}

A window aggregation is stored as partial aggregates, one tile per event time inside
the window as of the latest row (`flywheel.features.tiles`); a read at time T combines
the tiles inside (T - window, T], so a served value decays exactly as the training
value does. The same encoding and the same ttl rule on read make SQLite (embedded, the
default) and Redis (for clusters) answer identically.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from flywheel.features import tiles

Entity = dict[str, Any]


class StoreError(Exception):
    """The online store cannot be reached or opened; the message says which and why."""


Row = dict[str, Any]  # feature name -> value


def entity_key_json(values: Sequence[Any]) -> str:
    """'["C000001"]': the join-key values as compact JSON, a text key that keeps types
    ("1" and 1 differ) and cannot collide (JSON quotes every string)."""
    return json.dumps(list(values), separators=(",", ":"), default=str)


def encode(event_micros: int, values: Row, windows: dict[str, Any] | None = None) -> str:
    document: dict[str, Any] = {"t": event_micros, "v": values}
    if windows:
        document["w"] = windows
    return json.dumps(document, separators=(",", ":"), default=str)


def decode(
    document: str | bytes | None,
    now_micros: int,
    ttl_micros: int,
    windows: Sequence[tiles.Window] = (),
) -> Row | None:
    """The stored values if they are not older than the ttl at `now` (nor from its
    future), with each window combined from its tiles as of `now`."""
    if document is None:
        return None
    doc = json.loads(document)
    age = now_micros - int(doc["t"])
    if age < 0 or age > ttl_micros:
        return None
    values: Row = doc["v"]
    stored = doc.get("w", {})
    for window in windows:
        integer, parts = stored.get(window.name, (False, []))
        values[window.name] = tiles.combine(window, integer, parts, now_micros)
    return values


class OnlineStore(Protocol):
    def write(self, items: Iterable[tuple[str, int, str]], replace: bool = False) -> None:
        """Upsert (key, event time, document); an older event never replaces a newer one,
        unless `replace` (a rebuild from a new source version)."""

    def entity_keys(self) -> list[str]: ...

    def delete(self, keys: Sequence[str]) -> None: ...

    def read(self, keys: Sequence[str]) -> list[str | None]: ...

    def event_times(self, keys: Sequence[str]) -> list[int | None]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...

    @property
    def identity(self) -> str:
        """Which store this is (no secrets): the watermark belongs to one store."""


class SQLiteStore:
    """One table per FeatureView; WAL so that readers never wait for a writer."""

    def __init__(self, path: Path, table: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the SQLite store at {path}: {exc}") from None
        self.path = path
        self.table = '"' + table.replace('"', "") + '"'
        self._local = threading.local()
        self.identity = f"sqlite:{path.resolve()}#{table}"
        with self._connection() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} "
                "(key TEXT PRIMARY KEY, event_time INTEGER NOT NULL, doc TEXT NOT NULL) "
                "WITHOUT ROWID"
            )

    def _connection(self) -> sqlite3.Connection:
        # sqlite3 connections are per thread; the HTTP server reads from many threads.
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def write(self, items: Iterable[tuple[str, int, str]], replace: bool = False) -> None:
        newer = "" if replace else " WHERE excluded.event_time >= event_time"
        self._transaction(
            f"INSERT INTO {self.table} (key, event_time, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET event_time = excluded.event_time, "
            "doc = excluded.doc" + newer,
            items,
        )

    def entity_keys(self) -> list[str]:
        return [k for (k,) in self._connection().execute(f"SELECT key FROM {self.table}")]

    def delete(self, keys: Sequence[str]) -> None:
        self._transaction(f"DELETE FROM {self.table} WHERE key = ?", ((k,) for k in keys))

    def _transaction(self, sql: str, rows: Iterable[Any]) -> None:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def read(self, keys: Sequence[str]) -> list[str | None]:
        db = self._connection()
        if len(keys) == 1:
            row = db.execute(f"SELECT doc FROM {self.table} WHERE key = ?", (keys[0],)).fetchone()
            return [row[0] if row else None]
        found = self._many(db, "doc", keys)
        return [found.get(k) for k in keys]

    def event_times(self, keys: Sequence[str]) -> list[int | None]:
        found = self._many(self._connection(), "event_time", keys)
        return [found.get(k) for k in keys]

    def _many(self, db: sqlite3.Connection, column: str, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):  # below SQLite's bound-parameter limit
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT key, {column} FROM {self.table} WHERE key IN ({marks})"
            out.update(db.execute(sql, chunk).fetchall())
        return out

    def count(self) -> int:
        row = self._connection().execute(f"SELECT count(*) FROM {self.table}").fetchone()
        return int(row[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


# Keep the newer document: compare the event times stored beside each document.
_UPSERT_IF_NEWER = """
local n = 0
for i = 1, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if (not old) or tonumber(old) <= tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    n = n + 1
  end
end
return n
"""

_UPSERT_ALWAYS = """
for i = 1, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return #ARGV / 3
"""


class RedisStore:
    """Two hashes per FeatureView: documents, and event times (for newer-wins upserts).

    The hash tag `{...}` keeps both in one slot, so a Redis Cluster works too.
    """

    BATCH = 2000

    def __init__(self, url: str, name: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=5)
        try:
            self.client.ping()
        except redis.RedisError as exc:
            self.client.close()
            where = url.rsplit("@", 1)[-1]  # never the password
            raise StoreError(f"redis at {where} is not reachable: {exc}") from None
        self.docs = f"flywheel:{{{name}}}:docs"
        self.times = f"flywheel:{{{name}}}:times"
        self._upsert = self.client.register_script(_UPSERT_IF_NEWER)
        self._replace = self.client.register_script(_UPSERT_ALWAYS)
        kwargs = self.client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
        self.identity = f"redis:{where}#{self.docs}"

    def write(self, items: Iterable[tuple[str, int, str]], replace: bool = False) -> None:
        script = self._replace if replace else self._upsert
        batch: list[Any] = []
        for key, event_time, doc in items:
            batch += [key, event_time, doc]
            if len(batch) >= 3 * self.BATCH:
                script(keys=[self.docs, self.times], args=batch)
                batch = []
        if batch:
            script(keys=[self.docs, self.times], args=batch)

    def entity_keys(self) -> list[str]:
        names: Any = self.client.hkeys(self.times)
        return [n.decode() if isinstance(n, bytes) else n for n in names]

    def delete(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), self.BATCH):
            chunk = list(keys[i : i + self.BATCH])
            with self.client.pipeline() as both:  # MULTI: a reader sees both or neither
                both.hdel(self.docs, *chunk)
                both.hdel(self.times, *chunk)
                both.execute()

    def read(self, keys: Sequence[str]) -> list[str | None]:
        if len(keys) == 1:
            one: Any = self.client.hget(self.docs, keys[0])
            return [one]
        many: Any = self.client.hmget(self.docs, list(keys))
        return list(many)

    def event_times(self, keys: Sequence[str]) -> list[int | None]:
        values: Any = self.client.hmget(self.times, list(keys)) if keys else []
        return [None if v is None else int(v) for v in values]

    def count(self) -> int:
        n: Any = self.client.hlen(self.docs)
        return int(n)

    def close(self) -> None:
        self.client.close()
