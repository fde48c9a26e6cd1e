"""Point-in-time join: Flywheel vs pandas merge_asof vs DuckDB ASOF JOIN vs a numpy floor.

1M label rows x 10M feature rows x 10 features at scale 1. Every method gets the
features in the order it wants them prepared ahead (Flywheel: entity then time, as the
offline store keeps them; pandas: time; DuckDB: as they are), and the labels out of
order: sorting the labels is part of the join. Each method must return the same values.

    .venv/bin/pytest -m bench -s tests/bench/test_bench_pit_join.py
    FLYWHEEL_BENCH_SCALE=0.05 .venv/bin/pytest -m bench -s tests/bench/test_bench_pit_join.py

`test_end_to_end` runs each method as its own process over the same Parquet files
(`pit_end_to_end.py`): read, join, write Parquet; the goal is at most 0.8x DuckDB's time.
The processes read compiled bytecode, as installed packages do (`compiled_bytecode`).
Flywheel runs twice: with 10 column features, the work DuckDB does, and with 5 of them
replaced by window aggregations evaluated at each label's time.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from flywheel.api.featureview import FeatureViewSpec
from flywheel.features import pit, transform
from tests.bench.common import best_of, report, scaled

pytestmark = pytest.mark.bench

N_FEATURES = 10
TTL_SECONDS = 7 * 86400
SPAN_SECONDS = 365 * 86400
TS = pa.timestamp("us", tz="UTC")
ROUNDS = 3


def make_data() -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(7)
    n_features, n_labels = scaled(10_000_000), scaled(1_000_000)
    n_entities = max(1, n_features // 100)
    feature_entity = rng.integers(0, n_entities, n_features)
    # Microsecond times make ties within an entity vanishingly rare: the libraries
    # differ in which of several equal-time rows they take (Flywheel: the last written).
    feature_time = rng.integers(0, SPAN_SECONDS * 1_000_000, n_features)
    columns: dict[str, Any] = {
        "entity": feature_entity,
        "t": pa.array(feature_time, pa.int64()).view(TS),
    }
    for i in range(N_FEATURES):
        columns[f"f{i}"] = rng.standard_normal(n_features)
    features = pa.table(columns)
    labels = pa.table(
        {
            # Some labels name entities that have no feature rows at all.
            "entity": rng.integers(0, int(n_entities * 1.05) + 1, n_labels),
            "t": pa.array(rng.integers(0, SPAN_SECONDS, n_labels) * 1_000_000, pa.int64()).view(TS),
        }
    )
    return features, labels


Columns = dict[str, np.ndarray]


def flywheel_join(labels: pa.Table, by_entity: pa.Table, names: list[str]) -> Columns:
    ttl = TTL_SECONDS * 1_000_000
    out = pit.point_in_time_join(labels, by_entity, ["entity"], "t", "t", ttl, names)
    return {n: out.column(n).to_numpy(zero_copy_only=False) for n in names}


def numpy_floor(labels: pa.Table, by_entity: pa.Table, names: list[str]) -> Columns:
    """The least work possible: one global searchsorted over entity * span + time."""
    span = SPAN_SECONDS * 1_000_000 + 1
    fe = by_entity.column("entity").to_numpy()
    ft = by_entity.column("t").combine_chunks().view(pa.int64()).to_numpy()
    le = labels.column("entity").to_numpy()
    lt = labels.column("t").combine_chunks().view(pa.int64()).to_numpy()
    row = np.searchsorted(fe * span + ft, le * span + lt, side="right") - 1
    safe = np.maximum(row, 0)
    ok = (row >= 0) & (fe[safe] == le) & (lt - ft[safe] <= TTL_SECONDS * 1_000_000)
    return {n: np.where(ok, by_entity.column(n).to_numpy()[safe], np.nan) for n in names}


def pandas_join(labels: Any, by_time: Any, names: list[str]) -> Columns:
    import pandas as pd

    ordered = labels.assign(_row=np.arange(len(labels))).sort_values("t", kind="stable")
    out = pd.merge_asof(
        ordered,
        by_time,
        on="t",
        by="entity",
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(seconds=TTL_SECONDS),
    )
    ordered_back = out.sort_values("_row")
    return {n: ordered_back[n].to_numpy() for n in names}


def duckdb_join(con: Any, names: list[str]) -> Columns:
    picks = ", ".join(
        f"CASE WHEN l.t - f.t <= INTERVAL {TTL_SECONDS} SECOND THEN f.{n} END AS {n}" for n in names
    )
    table = con.sql(
        f"SELECT l.row, {picks} FROM labels l ASOF LEFT JOIN features f "
        "ON l.entity = f.entity AND l.t >= f.t ORDER BY l.row"
    ).to_arrow_table()
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in names}


def mismatches(got: Columns, want: Columns) -> dict[str, int]:
    """Rows that differ, per column; every column of the reference must be there."""
    assert got.keys() == want.keys(), (sorted(got), sorted(want))
    out = {}
    for name in want:
        a = np.asarray(got[name], dtype=np.float64)
        b = np.asarray(want[name], dtype=np.float64)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        out[name] = int((~((np.isnan(a) & np.isnan(b)) | (a == b))).sum())
    return out


def test_point_in_time_join() -> None:
    features, labels = make_data()
    names = [f"f{i}" for i in range(N_FEATURES)]
    by_entity = pit.sort_by_entity_and_time(features, ["entity"], "t")
    results: dict[str, tuple[float, Columns]] = {}
    repeats = 3  # the first call pays for cold caches; report the steady state

    results["flywheel"] = best_of(repeats, lambda: flywheel_join(labels, by_entity, names))
    results["numpy searchsorted floor"] = best_of(
        repeats, lambda: numpy_floor(labels, by_entity, names)
    )
    # The baselines are pinned in requirements/dev.txt: a missing one is an error, not a skip.
    import duckdb

    by_time = features.to_pandas().sort_values("t", kind="stable")
    label_frame = labels.to_pandas()
    results["pandas merge_asof"] = best_of(
        repeats, lambda: pandas_join(label_frame, by_time, names)
    )
    con = duckdb.connect()
    con.register("features_arrow", features)
    con.register("labels_arrow", labels.append_column("row", pa.array(np.arange(labels.num_rows))))
    con.execute("CREATE TABLE features AS SELECT * FROM features_arrow")
    con.execute("CREATE TABLE labels AS SELECT * FROM labels_arrow")
    results["duckdb ASOF JOIN"] = best_of(repeats, lambda: duckdb_join(con, names))
    con.close()

    reference = results["flywheel"][1]
    mine = results["flywheel"][0]
    rows = []
    for name, (seconds, values) in results.items():
        differ = {c: n for c, n in mismatches(values, reference).items() if n}
        assert not differ, f"{name} disagrees with flywheel (rows per column): {differ}"
        rows.append(
            [
                name,
                f"{seconds:.3f}",
                f"{labels.num_rows / seconds / 1e6:.2f}",
                f"{seconds / mine:.2f}x",
            ]
        )
    report(
        f"point-in-time join: {labels.num_rows:,} labels x {features.num_rows:,} feature rows x "
        f"{N_FEATURES} features (best of {repeats})",
        ["method", "seconds", "M label rows/s", "time vs flywheel"],
        rows,
    )


def spec(windows: int) -> FeatureViewSpec:
    features: list[dict[str, Any]] = []
    functions = ["sum", "mean", "count", "min", "max"]
    for i in range(N_FEATURES):
        if i < N_FEATURES - windows:
            features.append({"name": f"f{i}", "column": f"f{i}"})
        else:
            function = functions[i % len(functions)]
            aggregation = {"column": f"f{i}", "function": function, "window": "7d"}
            features.append({"name": f"w{i}", "aggregation": aggregation})
    return FeatureViewSpec.model_validate(
        {
            "entities": [{"name": "e", "joinKey": "entity"}],
            "source": {"datasetRef": {"name": "events"}},
            "timestampColumn": "t",
            "ttl": f"{TTL_SECONDS}s",
            "features": features,
        }
    )


def compiled_bytecode(cache: Path) -> dict[str, str]:
    """An environment in which the processes read compiled bytecode from `cache`, as
    the runtime image's installed packages do, and the one warm-up run that writes it.
    Where $PYTHONDONTWRITEBYTECODE is set (as in development shells), each process
    would otherwise compile every Python module it imports, Flywheel's and pandas'
    (seconds of CPU), while DuckDB is almost all compiled code."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    script = Path(__file__).with_name("pit_end_to_end.py")
    subprocess.run([sys.executable, str(script), "warm"], check=True, env=env)
    return env


def in_process(env: dict[str, str], *args: str) -> tuple[float, float, float]:
    """The wall time of one run of the script in a new process, the CPU time (user +
    system) of that run, and the load average after it: on a busy machine the CPU time
    is the steadier."""
    script = Path(__file__).with_name("pit_end_to_end.py")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), *args], check=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, os.getloadavg()[0]


def sorted_features(path: Path) -> Columns:
    """Every feature column of a join's output, in (entity, time) order."""
    table = pq.read_table(path)
    order = pc.sort_indices(table, sort_keys=[("entity", "ascending"), ("t", "ascending")])
    names = [f"f{i}" for i in range(N_FEATURES)]
    return {n: table.column(n).take(order).to_numpy(zero_copy_only=False) for n in names}


@pytest.mark.timeout(3600)
def test_end_to_end(tmp_path: Path) -> None:
    features, labels = make_data()
    labels_file = tmp_path / "labels.parquet"
    pq.write_table(labels, labels_file)
    commands: dict[str, tuple[list[str], Path]] = {}
    for windows in (0, 5):
        view = spec(windows)
        offline = transform.feature_table(features, view)  # the offline table, as published
        offline_file = tmp_path / f"offline-{windows}.parquet"
        pq.write_table(offline, offline_file)
        spec_file = tmp_path / f"spec-{windows}.json"
        spec_file.write_text(json.dumps(view.model_dump(mode="json", by_alias=True)))
        out = tmp_path / f"flywheel-{windows}.parquet"
        command = ["flywheel", str(spec_file), str(offline_file), str(labels_file), str(out)]
        name = "flywheel, 10 columns" if windows == 0 else f"flywheel, {windows} windows"
        commands[name] = (command, out)
    # The baseline is pinned in requirements/dev.txt: a missing one is an error, not a skip.
    out = tmp_path / "duckdb.parquet"
    offline_0 = str(tmp_path / "offline-0.parquet")
    command = ["duckdb", str(TTL_SECONDS), offline_0, str(labels_file), str(out)]
    commands["duckdb ASOF JOIN"] = (command, out)
    env = compiled_bytecode(tmp_path / "bytecode")
    # Rounds of one run of each method, so that a change of load on a shared machine
    # falls on every method alike; each keeps its best run.
    best: dict[str, tuple[float, float, float]] = {}
    for _ in range(ROUNDS):
        for name, (command, _) in commands.items():
            run = in_process(env, *command)
            best[name] = min(best.get(name, run), run)
    flywheel_out = sorted_features(commands["flywheel, 10 columns"][1])
    differ = {c: n for c, n in mismatches(sorted_features(out), flywheel_out).items() if n}
    assert not differ, f"duckdb disagrees with flywheel (rows per column): {differ}"
    wall, cpu, _ = best["duckdb ASOF JOIN"]
    report(
        f"end to end, own process, Parquet in and out: {labels.num_rows:,} labels x "
        f"{features.num_rows:,} feature rows x {N_FEATURES} features (best of {ROUNDS}; goal: "
        "flywheel <= 0.8x duckdb); load: the 1-minute load average after the run",
        ["method", "wall s", "wall vs duckdb", "cpu s", "cpu vs duckdb", "load"],
        [
            [n, f"{w:.3f}", f"{w / wall:.2f}x", f"{c:.3f}", f"{c / cpu:.2f}x", f"{load:.1f}"]
            for n, (w, c, load) in best.items()
        ],
    )
