"""Online lookups: p50/p99 latency for 1 and 100 entities, SQLite and Redis.

Each lookup goes through the same path as `get_online_features` (key encoding, store
read, JSON decode, ttl check, window tiles combined) on a store of 100k entities (at
scale 1) with 10 features, and on one whose entities also carry 3 window aggregations.

    .venv/bin/pytest -m bench -s tests/bench/test_bench_online.py
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flywheel.api.featureview import FeatureView
from flywheel.features import materialize, online, serving
from tests.bench.common import report, scaled

pytestmark = pytest.mark.bench

GOALS_P99_MS = {("sqlite", 1): 0.5, ("redis", 1): 1.0}


WINDOWS = 3  # window aggregations of the windowed view, each with TILES tiles
TILES = 10


def view(windows: int = 0) -> FeatureView:
    features: list[dict[str, Any]] = [{"name": f"f{i}", "column": f"f{i}"} for i in range(10)]
    functions = ["sum", "mean", "max"]
    for i in range(windows):
        aggregation = {"column": "amount", "function": functions[i % 3], "window": "7d"}
        features.append({"name": f"w{i}", "aggregation": aggregation})
    return FeatureView.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": "bench"},
            "spec": {
                "entities": [{"name": "customer", "joinKey": "customer_id"}],
                "source": {"datasetRef": {"name": "events"}},
                "timestampColumn": "t",
                "ttl": "30d",
                "features": features,
            },
        }
    )


def fill(store: online.OnlineStore, entities: int, now: int, windows: int = 0) -> None:
    rng = random.Random(1)
    items = []
    hour = 3_600_000_000
    for i in range(entities):
        values: dict[str, Any] = {f"f{j}": rng.random() * 100 for j in range(9)}
        values["f9"] = rng.choice(["basic", "standard", "premium"])
        tiles = [[now - (TILES - k) * hour, rng.random() * 100] for k in range(TILES)]
        mean_tiles = [[t, v, 2] for t, v in tiles]
        stored = {f"w{w}": [False, mean_tiles if w % 3 == 1 else tiles] for w in range(windows)}
        doc = online.encode(now, values, stored)
        items.append((online.entity_key_json([f"C{i:07d}"]), now, doc))
    store.write(items)


def latencies(opened: serving.OnlineView, entities: int, batch: int, calls: int) -> np.ndarray:
    rng = random.Random(2)
    out = np.empty(calls)
    for c in range(calls):
        wanted = [{"customer_id": f"C{rng.randrange(entities):07d}"} for _ in range(batch)]
        start = time.perf_counter()
        rows = opened.get(wanted)
        out[c] = time.perf_counter() - start
        assert all(r is not None for r in rows)
    return out * 1000


def test_online_lookup_latency(tmp_path: Path, redis_url: str) -> None:
    entities = scaled(100_000)
    now = materialize.to_micros(datetime.now(UTC))
    stores: dict[str, tuple[online.OnlineStore, int]] = {
        "sqlite": (online.SQLiteStore(tmp_path / "online.sqlite", "fv_bench"), 0),
        "redis": (online.RedisStore(redis_url, "bench/online"), 0),
        f"sqlite, {WINDOWS} windows": (
            online.SQLiteStore(tmp_path / "windows.sqlite", "fv_bench"),
            WINDOWS,
        ),
    }
    rows = []
    for name, (store, windows) in stores.items():
        fill(store, entities, now, windows)
        opened = serving.OnlineView(view(windows), store)
        latencies(opened, entities, 1, 200)  # warm caches and connections
        for batch, calls in ((1, 5000), (100, 1000)):
            ms = latencies(opened, entities, batch, calls)
            p50, p99 = np.percentile(ms, [50, 99])
            goal = GOALS_P99_MS.get((name, batch))
            verdict = (
                "-" if goal is None else (f"< {goal} ms: " + ("met" if p99 < goal else "MISSED"))
            )
            rows.append([name, str(batch), f"{p50:.3f}", f"{p99:.3f}", verdict])
        store.close()
    report(
        f"online lookup latency, {entities:,} entities, 10 features (+{WINDOWS} window "
        f"aggregations of {TILES} tiles each, combined at read time), in-process client",
        ["store", "entities/lookup", "p50 ms", "p99 ms", "p99 goal"],
        rows,
    )
