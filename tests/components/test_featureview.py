"""FeatureViews over a real ingested Dataset: offline, online (SQLite and Redis), HTTP."""

from __future__ import annotations

import json
import random
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
from flywheel.api.dataset import Dataset
from flywheel.api.featureview import FeatureView
from flywheel.data import runner as datasets
from flywheel.data import snapshots
from flywheel.entrypoints import RunContext
from flywheel.features import materialize, runner, serving, stores
from tests.components.helpers import dataset

pytestmark = pytest.mark.runtime

START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 20
ENTITIES = [f"C{i:06d}" for i in range(40)]
FEATURES: list[dict[str, Any]] = [
    {"name": "plan", "column": "plan"},
    {"name": "charges", "column": "charges"},
    {"name": "log_charges", "expression": "log1p(charges)"},
    {"name": "calls_3d", "aggregation": {"column": "calls", "function": "sum", "window": "3d"}},
    {"name": "avg_2d", "aggregation": {"column": "charges", "function": "mean", "window": "2d"}},
    {"name": "max_1d", "aggregation": {"column": "charges", "function": "max", "window": "1d"}},
]


def write_events(path: Path, seed: int = 3) -> None:
    rng = random.Random(seed)
    lines = ["customer_id,event_time,plan,charges,calls"]
    for cid in ENTITIES:
        # Some customers go quiet early, so a ttl leaves them without features later.
        last_day = rng.choice([3, 10, DAYS])
        for _ in range(rng.randint(1, 25)):
            t = START + timedelta(seconds=rng.randint(0, last_day * 86400))
            lines.append(
                f"{cid},{t:%Y-%m-%d %H:%M:%S},{rng.choice(['basic', 'premium'])},"
                f"{rng.uniform(10, 90):.2f},{rng.randint(0, 3)}"
            )
    path.write_text("\n".join(lines) + "\n")


def events_dataset() -> Any:
    return dataset(
        "events",
        {
            "source": {"uri": "./events.csv", "format": "csv"},
            "timestampColumn": "event_time",
            "schema": {
                "columns": [
                    {"name": "customer_id", "type": "string", "nullable": False},
                    {"name": "event_time", "type": "timestamp", "nullable": False},
                    {"name": "plan", "type": "string"},
                    {"name": "charges", "type": "float64"},
                    {"name": "calls", "type": "int64"},
                ]
            },
        },
    )


def feature_view(name: str = "customer", store: str = "sqlite", ttl: str = "5d") -> FeatureView:
    online: dict[str, Any] = {"type": store}
    if store == "redis":
        online["connectionSecretRef"] = {"name": "redis", "key": "url"}
    return FeatureView.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": name},
            "spec": {
                "entities": [{"name": "customer", "joinKey": "customer_id"}],
                "source": {"datasetRef": {"name": "events"}},
                "timestampColumn": "event_time",
                "ttl": ttl,
                "features": FEATURES,
                "onlineStore": online,
            },
        }
    )


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    write_events(tmp_path / "events.csv")
    ds = events_dataset()
    context = RunContext(
        artifact_root=tmp_path / "artifacts", base_dir=tmp_path, resources={ds.key: ds}
    )
    assert datasets.run_dataset(ds, context).phase == "Ready"
    return context


@pytest.fixture
def redis_secret(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    secret = tmp_path / "secrets" / "redis" / "url"
    secret.parent.mkdir(parents=True)
    secret.write_text(redis_url + "\n")
    monkeypatch.setenv("FLYWHEEL_SECRETS_DIR", str(tmp_path / "secrets"))
    yield redis_url


def labels_at(moment: datetime, entities: list[str] | None = None) -> pa.Table:
    ids = entities or [*ENTITIES, "C999999"]
    return pa.table(
        {
            "customer_id": ids,
            "label_time": pa.array([moment] * len(ids), pa.timestamp("us", tz="UTC")),
        }
    )


def pit_rows(view: FeatureView, ctx: RunContext, moment: datetime) -> list[dict[str, Any] | None]:
    table = runner.training_set(view, labels_at(moment), ctx, "label_time")
    names = [f["name"] for f in FEATURES]
    rows = table.select(names).to_pylist()
    # The join gives nulls for a missing entity; the online store gives no row.
    return [None if all(r[n] is None for n in names) else r for r in rows]


def online_rows(view: FeatureView, ctx: RunContext, moment: datetime) -> list[Any]:
    return runner.get_online_features(
        view, [{"customer_id": c} for c in [*ENTITIES, "C999999"]], ctx, moment
    )


def test_materialize_reports_offline_and_online(ctx: RunContext) -> None:
    view = feature_view()
    status = runner.run_featureview(view, ctx, now=START + timedelta(days=40))
    assert status.phase == "Ready", status.conditions
    assert status.online_rows == len(ENTITIES)
    assert status.offline_version and status.source_version and status.watermark
    assert status.watermark <= START + timedelta(days=DAYS)
    assert status.conditions[0].reason == "Materialized"
    again = runner.run_featureview(view, ctx, now=START + timedelta(days=41))
    assert again.offline_version == status.offline_version  # same source, same version
    assert "0 entities updated" in again.conditions[0].message


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_online_answers_what_the_point_in_time_join_gives_for_now(
    ctx: RunContext, store: str, request: pytest.FixtureRequest
) -> None:
    if store == "redis":
        request.getfixturevalue("redis_secret")
    view = feature_view(store=store)
    materialized_at = START + timedelta(days=DAYS, hours=1)
    assert runner.run_featureview(view, ctx, now=materialized_at).phase == "Ready"
    for moment in (materialized_at, START + timedelta(days=DAYS + 4), START + timedelta(days=26)):
        expected = pit_rows(view, ctx, moment)
        assert online_rows(view, ctx, moment) == expected
    # Some entities have expired by the ttl at day 24, and all by day 26.
    day24 = online_rows(view, ctx, START + timedelta(days=DAYS + 4))
    assert any(r is None for r in day24[:-1]) and any(r is not None for r in day24)
    assert all(r is None for r in online_rows(view, ctx, START + timedelta(days=26)))


def test_redis_and_sqlite_give_identical_answers(ctx: RunContext, redis_secret: str) -> None:
    now = START + timedelta(days=DAYS + 1)
    answers = []
    for store in ("sqlite", "redis"):
        view = feature_view(store=store)
        runner.run_featureview(view, ctx, now=now)
        answers.append(online_rows(view, ctx, now))
    assert answers[0] == answers[1]
    assert sum(a is not None for a in answers[0]) >= 5


def test_incremental_materialization_only_advances_after_new_rows(ctx: RunContext) -> None:
    view = feature_view(ttl="30d")
    mid = START + timedelta(days=5)
    first = runner.run_featureview(view, ctx, now=mid)
    assert first.watermark is not None and first.watermark <= mid
    assert online_rows(view, ctx, mid) == pit_rows(view, ctx, mid)
    later = START + timedelta(days=DAYS + 1)
    second = runner.run_featureview(view, ctx, now=later)
    assert second.watermark is not None and second.watermark > first.watermark
    assert online_rows(view, ctx, later) == pit_rows(view, ctx, later)


class Crash(Exception):
    pass


def test_the_watermark_stays_until_the_online_write_is_verified(ctx: RunContext) -> None:
    view = feature_view()
    now = START + timedelta(days=DAYS + 1)
    state = stores.view_root(view, ctx).join(stores.STATE_FILE)

    def crash(phase: str) -> None:
        if phase == "online-written":
            raise Crash

    with pytest.raises(Crash):
        runner.run_featureview(view, ctx, now=now, checkpoint=crash)
    assert not Path(state.path).exists()
    status = runner.run_featureview(view, ctx, now=now)
    assert status.watermark is not None
    assert json.loads(Path(state.path).read_text())["watermark"] == materialize.to_micros(
        status.watermark
    )


def test_training_set_never_sees_the_future(ctx: RunContext) -> None:
    view = feature_view(ttl="365d")
    runner.run_featureview(view, ctx, now=START + timedelta(days=40))
    before_everything = runner.training_set(
        view, labels_at(START - timedelta(seconds=1)), ctx, "label_time"
    )
    assert before_everything.column("charges").null_count == before_everything.num_rows
    events = ctx.resources["Dataset/events"]
    assert isinstance(events, Dataset)
    source = snapshots.current_table(datasets.dataset_root(events, ctx))
    first_seen: dict[str, datetime] = {}
    for cid, t in zip(
        source.column("customer_id").to_pylist(),
        source.column("event_time").to_pylist(),
        strict=True,
    ):
        first_seen[cid] = min(t, first_seen.get(cid, t))
    cid = ENTITIES[0]
    just_before = runner.training_set(
        view, labels_at(first_seen[cid] - timedelta(microseconds=1), [cid]), ctx, "label_time"
    )
    at_first = runner.training_set(view, labels_at(first_seen[cid], [cid]), ctx, "label_time")
    assert just_before.column("charges").to_pylist() == [None]
    assert at_first.column("charges").to_pylist() != [None]


def test_source_not_ingested_is_a_clear_condition(tmp_path: Path) -> None:
    ctx = RunContext(artifact_root=tmp_path / "a", base_dir=tmp_path)
    status = runner.run_featureview(feature_view(), ctx)
    assert status.phase == "Failed"
    assert status.conditions[0].reason == "SourceNotReady"
    assert "ingest it first" in status.conditions[0].message


def test_http_endpoint(ctx: RunContext) -> None:
    view = feature_view(ttl="365d")
    runner.run_featureview(view, ctx, now=START + timedelta(days=40))
    server = serving.serve({view.name: runner.open_online_view(view, ctx)}, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        at = (START + timedelta(days=DAYS + 1)).isoformat()
        body = json.dumps(
            {"entities": [{"customer_id": ENTITIES[1]}, {"customer_id": "nope"}], "at": at}
        ).encode()
        request = urllib.request.Request(
            f"{base}/v1/features/{view.name}", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        expected = runner.get_online_features(
            view,
            [{"customer_id": ENTITIES[1]}, {"customer_id": "nope"}],
            ctx,
            START + timedelta(days=DAYS + 1),
        )
        assert answer["features"] == expected and expected[0] is not None
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert json.loads(response.read())["views"] == [view.name]
        bad = urllib.request.Request(f"{base}/v1/features/{view.name}", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=5)
        assert err.value.code == 400
        err.value.close()
    finally:
        server.shutdown()
        server.server_close()


def test_commands_materialize_and_training_set(tmp_path: Path) -> None:
    write_events(tmp_path / "events.csv")
    docs = [
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "events"},
            "spec": events_dataset().spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
        },
        feature_view(ttl="365d").to_wire(),
    ]
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "customer_id,label_time\n" + "".join(f"{c},2026-01-15 00:00:00\n" for c in ENTITIES)
    )
    docs.append(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "labels"},
            "spec": {
                "source": {"uri": "./labels.csv", "format": "csv"},
                "timestampColumn": "label_time",
                "schema": {
                    "columns": [
                        {"name": "customer_id", "type": "string"},
                        {"name": "label_time", "type": "timestamp"},
                    ]
                },
            },
        }
    )
    manifest = tmp_path / "all.yaml"
    manifest.write_text("\n---\n".join(json.dumps(d) for d in docs))
    art = ["--artifact-root", str(tmp_path / "art")]
    for name in ("events", "labels"):
        assert cli.main(["dataset", "ingest", "-f", str(manifest), "--name", name, *art]) == 0
    result = tmp_path / "fv.json"
    assert (
        cli.main(["features", "materialize", "-f", str(manifest), *art, "--result", str(result)])
        == 0
    )
    status = json.loads(result.read_text())
    assert status["phase"] == "Ready" and status["onlineRows"] == len(ENTITIES)
    out = tmp_path / "train.parquet"
    assert (
        cli.main(
            [
                "features",
                "training-set",
                "-f",
                str(manifest),
                *art,
                "--labels",
                "labels",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pq.read_table(out)
    assert table.num_rows == len(ENTITIES)
    assert {"plan", "calls_3d", "label_time"} <= set(table.column_names)


def test_materialize_in_a_job_uses_the_input_status_of_its_dataset(
    ctx: RunContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the operator's Job runs it: manifest and the Dataset's status in the environment."""
    events = ctx.resources["Dataset/events"]
    assert isinstance(events, Dataset)
    dataset_status = datasets.run_dataset(events, ctx)
    monkeypatch.setenv("FLYWHEEL_MANIFEST", json.dumps(feature_view().to_wire()))
    monkeypatch.setenv("FLYWHEEL_INPUTS", json.dumps({"Dataset/events": dataset_status.to_wire()}))
    result = tmp_path / "termination-log"
    # A different artifact root: the snapshot is found through the input status alone.
    code = cli.main(
        [
            "features",
            "materialize",
            "--incremental",
            "--artifact-root",
            str(tmp_path / "elsewhere"),
            "--result",
            str(result),
        ]
    )
    assert code == 0
    status = json.loads(result.read_text())
    assert status["sourceVersion"] == dataset_status.version
    assert status["lastMaterialized"] and status["onlineRows"] == len(ENTITIES)


def test_jobs_on_a_claim_hand_over_pvc_uris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's default artifact root is pvc://flywheel-artifacts/, mounted in each
    Job's Pod under $FLYWHEEL_PVC_ROOT; results name pvc:// URIs another Pod can read."""
    monkeypatch.setenv("FLYWHEEL_PVC_ROOT", str(tmp_path / "mnt"))
    write_events(tmp_path / "events.csv")
    spec = events_dataset().spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    spec["source"]["uri"] = str(tmp_path / "events.csv")
    monkeypatch.setenv(
        "FLYWHEEL_MANIFEST",
        json.dumps(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "events"},
                "spec": spec,
            }
        ),
    )
    root = ["--artifact-root", "pvc://flywheel-artifacts/"]
    out = tmp_path / "ds.json"
    assert cli.main(["dataset", "ingest", *root, "--result", str(out)]) == 0
    ds_status = json.loads(out.read_text())
    assert ds_status["snapshotUri"].startswith("pvc://flywheel-artifacts/datasets/default/events/")
    monkeypatch.setenv("FLYWHEEL_MANIFEST", json.dumps(feature_view().to_wire()))
    monkeypatch.setenv("FLYWHEEL_INPUTS", json.dumps({"Dataset/events": ds_status}))
    out = tmp_path / "fv.json"
    assert cli.main(["features", "materialize", *root, "--result", str(out)]) == 0
    fv_status = json.loads(out.read_text())
    assert fv_status["sourceVersion"] == ds_status["version"]
    assert fv_status["offlineUri"].startswith("pvc://flywheel-artifacts/featureviews/")


def test_an_unreachable_online_store_is_a_clear_condition(
    ctx: RunContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_SECRETS_DIR", str(tmp_path / "no-secrets"))
    status = runner.run_featureview(feature_view(store="redis"), ctx)
    assert status.phase == "Failed"
    assert status.conditions[0].reason == "OnlineStoreUnavailable"
    assert "redis/url" in status.conditions[0].message
    monkeypatch.setenv("FLYWHEEL_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    status = runner.run_featureview(feature_view(store="redis"), ctx)
    assert status.conditions[0].reason == "OnlineStoreUnavailable"
    assert "127.0.0.1:1" in status.conditions[0].message
    assert "hunter2" not in status.conditions[0].message
