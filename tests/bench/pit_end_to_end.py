"""One end-to-end point-in-time join in its own process: Parquet in, Parquet out.

    python tests/bench/pit_end_to_end.py flywheel SPEC.json FEATURES LABELS OUT
    python tests/bench/pit_end_to_end.py duckdb TTL_SECONDS FEATURES LABELS OUT
    python tests/bench/pit_end_to_end.py warm

flywheel: the offline table (sorted by entity then time) and the labels are read as
`flywheel.features.stores` reads them for a training set (the offline columns one at a
time, as they are used), the training set is computed by `flywheel.features.asof` and
written as `flywheel features training-set` writes it. duckdb: the same files are read
by DuckDB, joined with ASOF JOIN (the ttl as a CASE) and written by DuckDB. warm: imports
what both methods import, so that their bytecode is compiled before either is timed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def flywheel(spec_file: str, features: str, labels: str, out: str) -> None:
    from flywheel.api.featureview import FeatureViewSpec
    from flywheel.features import asof, stores
    from flywheel.storage import uris

    with open(spec_file) as f:
        spec = FeatureViewSpec.model_validate_json(f.read())
    offline = stores.read_columns(uris.resolve(features))
    table = asof.training_set(stores.read_table(uris.resolve(labels)), offline, spec, "t")
    stores.write_table(table, out)


def duckdb(ttl_seconds: str, features: str, labels: str, out: str) -> None:
    import duckdb as db

    con = db.connect()
    names = [
        c
        for c in con.sql(f"SELECT * FROM read_parquet('{features}') LIMIT 0").columns
        if c.startswith("f")
    ]
    picks = ", ".join(
        f"CASE WHEN l.t - f.t <= INTERVAL {int(ttl_seconds)} SECOND THEN f.{n} END AS {n}"
        for n in names
    )
    con.execute(
        f"COPY (SELECT l.entity, l.t, {picks} FROM read_parquet('{labels}') l "
        f"ASOF LEFT JOIN read_parquet('{features}') f "
        f"ON l.entity = f.entity AND l.t >= f.t) TO '{out}' (FORMAT parquet)"
    )


def warm() -> None:
    import importlib

    # pandas too: pyarrow imports it when it first builds an array.
    for module in ["duckdb", "pandas", "flywheel.api.featureview", "flywheel.features.stores"]:
        importlib.import_module(module)
    importlib.import_module("flywheel.features.asof")


if __name__ == "__main__":
    method, *args = sys.argv[1:]
    methods: dict[str, Callable[..., None]] = {"flywheel": flywheel, "duckdb": duckdb, "warm": warm}
    methods[method](*args)
