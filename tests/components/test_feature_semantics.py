"""The FeatureView semantics end to end: commands, HTTP, both online stores, and the
training set agreeing at every time while windows empty."""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from flywheel import cli
from flywheel.api.featureview import FeatureView
from flywheel.api.trainingjob import LabelSource
from flywheel.data import runner as datasets
from flywheel.entrypoints import RunContext
from flywheel.features import runner, serving
from tests.components.helpers import dataset

pytestmark = pytest.mark.runtime

START = datetime(2026, 3, 1, tzinfo=UTC)
FUNCTIONS = ["sum", "mean", "count", "min", "max", "last"]
EVENTS = """id,store,event_time,amount,calls
0042,s1,2026-03-01 00:00:00,1e300,0
0042,s1,2026-03-01 06:00:00,1.0,9223372036854775807
0042,s1,2026-03-02 00:00:00,0.1,-9223372036854775808
0042,s1,2026-03-02 00:00:00,0.2,5
42,s1,2026-03-03 00:00:00,inf,2
0042,s2,2026-03-03 12:00:00,2.5,
0042,s3,2026-03-02 18:00:00,1.0,1
0042,s3,2026-03-03 00:00:00,2.0,2
0042,s3,2026-03-03 06:00:00,3.0,3
"""


def events() -> Any:
    return dataset(
        "events",
        {
            "source": {"uri": "./events.csv", "format": "csv"},
            "timestampColumn": "event_time",
            "schema": {
                "columns": [
                    {"name": "id", "type": "string", "nullable": False},
                    {"name": "store", "type": "string", "nullable": False},
                    {"name": "event_time", "type": "timestamp", "nullable": False},
                    {"name": "amount", "type": "float64"},
                    {"name": "calls", "type": "int64"},
                ]
            },
        },
    )


def view(store: str = "sqlite") -> FeatureView:
    features: list[dict[str, Any]] = [{"name": "amount", "column": "amount"}]
    for column in ("amount", "calls"):
        for f in FUNCTIONS:
            window = "1d" if column == "amount" else "1.5d"
            features.append(
                {
                    "name": f"{column}_{f}",
                    "aggregation": {"column": column, "function": f, "window": window},
                }
            )
    online: dict[str, Any] = {"type": store}
    if store == "redis":
        online["connectionSecretRef"] = {"name": "redis", "key": "url"}
    return FeatureView.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": f"semantics-{store}"},
            "spec": {
                "entities": [
                    {"name": "customer", "joinKey": "id"},
                    {"name": "shop", "joinKey": "store"},
                ],
                "source": {"datasetRef": {"name": "events"}},
                "timestampColumn": "event_time",
                "ttl": "2.5d",
                "features": features,
                "onlineStore": online,
            },
        }
    )


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "labels.csv").write_text(
        "customer,shop,label_time\n0042,s1,2026-03-02 12:00:00\n42,s1,2026-03-03 23:00:00\n"
    )
    labels = dataset(
        "labels",
        {
            "source": {"uri": "./labels.csv", "format": "csv"},
            "timestampColumn": "label_time",
            "schema": {
                "columns": [
                    {"name": "customer", "type": "string"},
                    {"name": "shop", "type": "string"},
                    {"name": "label_time", "type": "timestamp"},
                ]
            },
        },
    )
    docs = [events().to_wire(), labels.to_wire(), view().to_wire()]
    path = tmp_path / "all.yaml"
    path.write_text("\n---\n".join(json.dumps(d) for d in docs))
    return path


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    return code, out.getvalue()


def ingest_and_materialize(manifest: Path, art: list[str]) -> None:
    for name in ("events", "labels"):
        assert run("dataset", "ingest", "-f", str(manifest), "--name", name, *art)[0] == 0
    assert run("features", "materialize", "-f", str(manifest), *art)[0] == 0


def test_digit_string_ids_are_strings_in_the_command_and_over_http(
    manifest: Path, tmp_path: Path
) -> None:
    art = ["--artifact-root", str(tmp_path / "art")]
    ingest_and_materialize(manifest, art)
    at = "2026-03-03T06:00:00+00:00"
    code, out = run(
        "features", "get-online", "-f", str(manifest), *art,
        "--entity", "id,store=0042,s1", "--entity", "id,store=42,s1", "--at", at,
    )  # fmt: skip
    assert code == 0
    answers = json.loads(out)
    assert [a["entity"] for a in answers] == [
        {"id": "0042", "store": "s1"},
        {"id": "42", "store": "s1"},
    ]
    first, second = (a["features"] for a in answers)
    assert first["calls_count"] == 2 and second["amount_max"] == float("inf")
    context = RunContext(artifact_root=tmp_path / "art", base_dir=tmp_path)
    fv = view()
    server = serving.serve({fv.name: runner.open_online_view(fv, context)}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # JSON numbers for a string key column name the same entity as the text "42".
        body = json.dumps({"entities": [{"id": 42, "store": "s1"}], "at": at}).encode()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/features/{fv.name}"
        request = urllib.request.Request(url, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["features"] == [second]
    finally:
        server.shutdown()
        server.server_close()


def test_training_set_names_label_entity_columns(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    art = ["--artifact-root", str(tmp_path / "art")]
    ingest_and_materialize(manifest, art)
    out = tmp_path / "train.parquet"
    base = ["features", "training-set", "-f", str(manifest), *art, "--labels", "labels"]
    capsys.readouterr()
    assert run(*base, "--out", str(out))[0] == 1
    assert re.search(r"no column.*id, store", capsys.readouterr().err)
    code, _ = run(*base, "--label-entity-columns", "customer,shop", "--out", str(out))
    assert code == 0
    rows = pq.read_table(out).to_pylist()
    # Labels at 2026-03-02 12:00: the 1d window holds the two rows of 03-02 00:00 and
    # the 1e300 of 03-01 00:00 has left it; 1.5d of calls holds int64 max and min.
    assert rows[0]["amount_sum"] == 0.1 + 0.2 and rows[0]["amount_count"] == 2
    assert rows[0]["calls_sum"] == 9223372036854775807 - 9223372036854775808 + 5
    assert rows[1]["amount_last"] == float("inf") and rows[1]["calls_max"] == 2


@pytest.fixture
def redis_secret(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    secret = tmp_path / "secrets" / "redis" / "url"
    secret.parent.mkdir(parents=True)
    secret.write_text(redis_url + "\n")
    monkeypatch.setenv("FLYWHEEL_SECRETS_DIR", str(tmp_path / "secrets"))
    yield redis_url


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_served_windows_decay_exactly_as_training_windows(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    if store == "redis":
        request.getfixturevalue("redis_secret")
    (tmp_path / "events.csv").write_text(EVENTS)
    ds = events()
    context = RunContext(artifact_root=tmp_path / "art", base_dir=tmp_path, resources={ds.key: ds})
    assert datasets.run_dataset(ds, context).phase == "Ready"
    fv = view(store)
    materialized = START + timedelta(days=2, hours=13)
    assert runner.run_featureview(fv, context, now=materialized).phase == "Ready"
    entities = [{"id": "0042", "store": "s1"}, {"id": "42", "store": "s1"}]
    entities += [{"id": "0042", "store": "s2"}, {"id": "0042", "store": "s3"}]
    entities += [{"id": "nobody", "store": "s1"}]
    moments = [materialized + timedelta(hours=h) for h in range(0, 72, 3)]
    labels = pa.table(
        {
            "id": [e["id"] for _ in moments for e in entities],
            "store": [e["store"] for _ in moments for e in entities],
            "t": pa.array([m for m in moments for _ in entities], pa.timestamp("us", tz="UTC")),
        }
    )
    names = [f.name for f in fv.spec.features]
    trained = runner.training_set(fv, labels, context, "t").select(names).to_pylist()
    expected = [None if all(v is None for v in r.values()) else r for r in trained]
    served = [r for m in moments for r in runner.get_online_features(fv, entities, context, m)]
    assert served == expected
    # The windows emptied while the entities were still inside the ttl, then expired.
    assert any(r is not None and r["amount_count"] == 0 for r in served)
    s3 = [r["amount_count"] for r in served[3 :: len(entities)] if r is not None]
    assert s3[0] == 3 and 0 in s3 and 1 in s3  # partly expired on the way
    assert served[-len(entities) :] == [None] * len(entities)


def test_a_trainingjob_label_source_names_the_label_columns(manifest: Path, tmp_path: Path) -> None:
    ingest_and_materialize(manifest, ["--artifact-root", str(tmp_path / "art")])
    context = RunContext(artifact_root=tmp_path / "art", base_dir=tmp_path)
    labels = pa.table(
        {
            "customer": ["0042", "0042"],
            "shop": ["s1", "s9"],
            "when": pa.array(
                [START + timedelta(days=1, hours=12)] * 2, pa.timestamp("us", tz="UTC")
            ),
        }
    )
    label = LabelSource.model_validate(
        {
            "datasetRef": {"name": "labels"},
            "column": "churned",
            "entityColumns": ["customer", "shop"],
            "timestampColumn": "when",
        }
    )
    table = runner.training_set_for_label(view(), labels, context, label)
    assert table.column("amount_count").to_pylist() == [2, None]
