"""Policy state that must survive a router restart: bandit arms, in SQLite.

One small table; every save replaces a deployment's arms in one transaction, so a crash
leaves the previous save. WAL mode lets several router processes on one node share it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any


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

    def close(self) -> None:
        self._db.close()
