"""Dataset ingest against real files: policies, formats, locations and bad inputs."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import cli
from flywheel.api.common import Condition
from flywheel.data import runner, snapshots
from flywheel.storage import publish
from tests.components.helpers import context, dataset, write

pytestmark = pytest.mark.runtime

EVENTS_CSV = """customer_id,event_time,plan,charges,calls
C000001,2026-01-01 00:00:00,basic,19.5,0
C000002,2026-01-01T01:00:00Z,premium,79.0,1
C000003,2026-01-01 02:00:00.250,platinum,30.0,2
bad-id,2026-01-01 03:00:00,basic,-4,0
C000005,not a time,basic,20.0,x
C000006,2026-01-02,standard,39.0,
"""

COLUMNS = [
    {"name": "customer_id", "type": "string", "nullable": False, "regex": "C[0-9]{6}"},
    {"name": "event_time", "type": "timestamp", "nullable": False},
    {"name": "plan", "type": "string", "allowedValues": ["basic", "standard", "premium"]},
    {"name": "charges", "type": "float64", "min": 0},
    {"name": "calls", "type": "int64", "min": 0, "max": 100},
]


def events_spec(uri: str, on_error: str, fraction: float = 0.0, **source: Any) -> dict[str, Any]:
    return {
        "source": {"uri": uri, "format": source.pop("format", "csv"), **source},
        "timestampColumn": "event_time",
        "schema": {"columns": COLUMNS},
        "validation": {"onError": on_error, "maxBadRowFraction": fraction},
    }


def ready(conditions: list[Condition]) -> Condition:
    [c] = [c for c in conditions if c.type == "Ready"]
    return c


def test_quarantine_publishes_good_rows_and_keeps_bad_ones_with_every_reason(
    tmp_path: Path,
) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV)
    ds = dataset("events", events_spec("./events.csv", "quarantine", 0.5))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Ready", status.conditions
    assert (status.rows, status.bad_rows) == (3, 3)
    assert ready(status.conditions).reason == "Published"
    assert status.quarantine_uri and status.snapshot_uri and status.profile_uri

    data = pq.read_table(status.snapshot_uri.removeprefix("file://"))
    assert data.column("customer_id").to_pylist() == ["C000001", "C000002", "C000006"]
    assert data.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert data.column("calls").to_pylist() == [0, 1, None]

    bad = pq.read_table(status.quarantine_uri.removeprefix("file://")).to_pylist()
    by_row = {r["_row"]: r for r in bad}
    assert by_row[3]["_reasons"] == "plan:allowed"
    assert by_row[4]["_reasons"] == "customer_id:regex;charges:min"
    assert by_row[5]["_reasons"] == "event_time:timestamp;calls:type"
    assert by_row[5]["calls"] == "x"  # the bad value as the source had it

    profile = json.loads(Path(status.profile_uri.removeprefix("file://")).read_text())
    assert profile["rows"] == 3
    assert profile["columns"]["charges"]["min"] == 19.5
    assert profile["columns"]["plan"]["distinct"] == 3


def test_fail_policy_publishes_nothing_and_reports_failures_by_column(tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV)
    ds = dataset("events", events_spec("./events.csv", "fail"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    cond = ready(status.conditions)
    assert cond.reason == "ValidationFailed"
    assert "3 of 6 rows" in cond.message
    for check in ("plan:allowed 1", "customer_id:regex 1", "event_time:timestamp 1"):
        assert check in cond.message
    assert status.version is None
    root = runner.dataset_root(ds, context(tmp_path))
    assert publish.current(root) is None


def test_quarantine_fails_above_max_bad_row_fraction(tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV)
    ds = dataset("events", events_spec("./events.csv", "quarantine", 0.1))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    assert ready(status.conditions).reason == "TooManyBadRows"
    assert (
        "50.00% of rows are bad, above maxBadRowFraction 10.00%" in ready(status.conditions).message
    )


def test_warn_publishes_every_row(tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV)
    ds = dataset("events", events_spec("./events.csv", "warn"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Ready"
    assert (status.rows, status.bad_rows) == (6, 3)
    assert ready(status.conditions).reason == "PublishedWithBadRows"
    # Published, and kept as the source had them, like quarantine does.
    assert status.quarantine_uri
    bad = pq.read_table(status.quarantine_uri.removeprefix("file://"))
    assert sorted(bad.column("_row").to_pylist()) == [3, 4, 5]


def test_reingest_of_the_same_content_gives_the_same_version(tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV)
    ds = dataset("events", events_spec("./events.csv", "quarantine", 0.5))
    first = runner.run_dataset(ds, context(tmp_path))
    second = runner.run_dataset(ds, context(tmp_path))
    assert first.version == second.version
    root = runner.dataset_root(ds, context(tmp_path))
    assert len(list(Path(root.path, "versions").iterdir())) == 1
    write(tmp_path / "events.csv", EVENTS_CSV + "C000007,2026-01-03,basic,20,0\n")
    third = runner.run_dataset(ds, context(tmp_path))
    assert third.version != first.version
    assert third.rows == 4


class Crash(Exception):
    pass


def crash_at(phase: str) -> publish.Checkpoint:
    def checkpoint(reached: str) -> None:
        if reached == phase:
            raise Crash(phase)

    return checkpoint


@pytest.mark.parametrize("phase", ["staged", "hashed", "moved", "manifested"])
def test_a_crash_mid_publish_leaves_the_previous_version_and_a_rerun_finishes(
    tmp_path: Path, phase: str
) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV)
    ds = dataset("events", events_spec("./events.csv", "quarantine", 0.5))
    ctx = context(tmp_path)
    old = runner.run_dataset(ds, ctx)
    write(tmp_path / "events.csv", EVENTS_CSV + "C000007,2026-01-03,basic,20,0\n")
    with pytest.raises(Crash):
        runner.run_dataset(ds, ctx, checkpoint=crash_at(phase))
    root = runner.dataset_root(ds, ctx)
    current = publish.current(root)
    assert current is not None and current["version"] == old.version
    # A reader of the current version gets all of it.
    assert snapshots.current_table(root).num_rows == old.rows
    new = runner.run_dataset(ds, ctx)
    assert new.phase == "Ready" and new.version != old.version and new.rows == 4
    assert publish.current(root)["version"] == new.version  # type: ignore[index]


def test_a_killed_process_leaves_the_previous_version(tmp_path: Path) -> None:
    """A real crash: the process exits between moving the files and the commit."""
    import subprocess
    import sys

    write(tmp_path / "events.csv", EVENTS_CSV)
    manifest = tmp_path / "ds.yaml"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "events"},
                "spec": events_spec("./events.csv", "quarantine", 0.5),
            }
        )
    )
    art = tmp_path / "artifacts"
    assert (
        cli.main(
            [
                "dataset",
                "ingest",
                "-f",
                str(manifest),
                "--artifact-root",
                str(art),
                "--result",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    old = json.loads((tmp_path / "r.json").read_text())["version"]
    write(tmp_path / "events.csv", EVENTS_CSV + "C000007,2026-01-03,basic,20,0\n")
    script = f"""
import os, sys
from flywheel.data import runner
from flywheel.entrypoints import RunContext
from tests.components.helpers import dataset
import json
from pathlib import Path
spec = json.loads(open({str(manifest)!r}).read())["spec"]
ctx = RunContext(artifact_root=Path({str(art)!r}), base_dir=Path({str(tmp_path)!r}))
def die(phase):
    if phase == "moved":
        os._exit(9)
runner.run_dataset(dataset("events", spec), ctx, checkpoint=die)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    assert proc.returncode == 9
    pointer = json.loads((art / "datasets/default/events/current.json").read_text())
    assert pointer["version"] == old
    assert (
        cli.main(
            [
                "dataset",
                "ingest",
                "-f",
                str(manifest),
                "--artifact-root",
                str(art),
                "--result",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    new = json.loads((tmp_path / "r.json").read_text())
    assert new["version"] != old and new["rows"] == 4


# --- formats and locations ------------------------------------------------------------


def good_table() -> pa.Table:
    return pa.table(
        {
            "customer_id": ["C000001", "C000002", "C000003"],
            "event_time": pa.array([1, 2, 3], pa.timestamp("s")),
            "plan": ["basic", "premium", "basic"],
            "charges": [1.0, 2.0, 3.0],
            "calls": pa.array([1, 2, 3], pa.int32()),
        }
    )


def test_parquet_directory_is_read_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    t = good_table()
    pq.write_table(t.slice(2), tmp_path / "src/b.parquet")
    pq.write_table(t.slice(0, 2), tmp_path / "src/a.parquet")
    (tmp_path / "src/_SUCCESS").write_text("")
    ds = dataset("events", events_spec("./src", "fail", format="parquet"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Ready", status.conditions
    root = runner.dataset_root(ds, context(tmp_path))
    assert snapshots.current_table(root).column("customer_id").to_pylist() == [
        "C000001",
        "C000002",
        "C000003",
    ]


def test_jsonl_through_a_glob_and_file_uri(tmp_path: Path) -> None:
    rows = [
        {
            "customer_id": "C000001",
            "event_time": "2026-01-01T00:00:00",
            "plan": "basic",
            "charges": 1.5,
            "calls": 1,
        },
        {
            "customer_id": "C000002",
            "event_time": "2026-01-01T00:00:00+01:00",
            "plan": "basic",
            "charges": 2,
            "calls": 2.5,
        },
    ]
    write(tmp_path / "in/part-1.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    write(tmp_path / "in/other.txt", "not data")
    uri = f"file://{tmp_path}/in/*.jsonl"
    ds = dataset("events", events_spec(uri, "quarantine", 0.5, format="jsonl"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Ready", status.conditions
    # 2.5 calls cannot be an int64 without loss: reported, not truncated.
    assert (status.rows, status.bad_rows) == (1, 1)


def test_pvc_uri_resolves_under_the_mount_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_PVC_ROOT", str(tmp_path / "mnt"))
    write(tmp_path / "mnt/claim-a/raw/events.csv", EVENTS_CSV)
    ds = dataset("events", events_spec("pvc://claim-a/raw/events.csv", "warn"))
    assert runner.run_dataset(ds, context(tmp_path)).rows == 6


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_http_sources_csv_and_parquet(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    write(root / "events.csv", EVENTS_CSV)
    pq.write_table(good_table(), root / "events.parquet")
    csv_ds = dataset("a", events_spec(f"{base}/events.csv", "warn"))
    assert runner.run_dataset(csv_ds, context(tmp_path)).rows == 6
    pq_ds = dataset("b", events_spec(f"{base}/events.parquet", "fail", format="parquet"))
    assert runner.run_dataset(pq_ds, context(tmp_path)).rows == 3


# --- bad inputs: a clear error naming file, column and fix; nothing published ---------


def failed_message(tmp_path: Path, spec: dict[str, Any]) -> str:
    ds = dataset("events", spec)
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    assert publish.current(runner.dataset_root(ds, context(tmp_path))) is None
    return ready(status.conditions).message


def test_truncated_parquet_names_the_file(tmp_path: Path) -> None:
    pq.write_table(good_table(), tmp_path / "x.parquet")
    data = (tmp_path / "x.parquet").read_bytes()
    (tmp_path / "x.parquet").write_bytes(data[: len(data) // 2])
    msg = failed_message(tmp_path, events_spec("./x.parquet", "fail", format="parquet"))
    assert "x.parquet" in msg and "cannot read as parquet" in msg and "fix:" in msg


def test_corrupt_csv_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", EVENTS_CSV + 'C000009,"2026-01-01,basic\n')
    msg = failed_message(tmp_path, events_spec("./x.csv", "warn"))
    assert "x.csv" in msg and "cannot read as csv" in msg


def test_empty_source_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", "customer_id,event_time,plan,charges,calls\n")
    msg = failed_message(tmp_path, events_spec("./x.csv", "warn"))
    assert "has no rows" in msg
    (tmp_path / "empty").mkdir()
    msg = failed_message(tmp_path, events_spec("./empty", "warn"))
    assert "matches no files" in msg


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    msg = failed_message(tmp_path, events_spec("./nope.csv", "warn"))
    assert "nope.csv" in msg and "does not exist" in msg


def test_missing_column_names_file_column_and_fix(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", "customer_id,event_time,plan,charges\nC000001,2026-01-01,basic,1\n")
    msg = failed_message(tmp_path, events_spec("./x.csv", "warn"))
    assert "x.csv" in msg and "column 'calls'" in msg and "missing" in msg and "fix:" in msg


def test_column_of_the_wrong_type_names_file_column_and_fix(tmp_path: Path) -> None:
    t = good_table().set_column(1, "event_time", pa.array([True, False, True]))
    pq.write_table(t, tmp_path / "x.parquet")
    msg = failed_message(tmp_path, events_spec("./x.parquet", "warn", format="parquet"))
    assert "x.parquet" in msg and "column 'event_time'" in msg
    assert "type bool" in msg and "fix:" in msg


def test_extra_columns_rejected_when_the_contract_says_so(tmp_path: Path) -> None:
    lines = EVENTS_CSV.splitlines()
    write(tmp_path / "x.csv", "\n".join([lines[0] + ",x"] + [r + ",1" for r in lines[1:]]))
    spec = events_spec("./x.csv", "warn")
    spec["schema"]["extraColumns"] = "reject"
    msg = failed_message(tmp_path, spec)
    assert "x.csv" in msg and "column(s) x are not in the schema" in msg and "extraColumns" in msg
    spec["schema"]["extraColumns"] = "keep"
    status = runner.run_dataset(dataset("keep", spec), context(tmp_path))
    assert status.phase == "Ready"
    kept = snapshots.current_table(runner.dataset_root(dataset("keep", spec), context(tmp_path)))
    assert kept.column_names[-1] == "x"
    spec["schema"]["extraColumns"] = "drop"
    runner.run_dataset(dataset("drop", spec), context(tmp_path))
    dropped = snapshots.current_table(runner.dataset_root(dataset("drop", spec), context(tmp_path)))
    assert "x" not in dropped.column_names


def test_unique_columns_quarantine_every_repeat_after_the_first(tmp_path: Path) -> None:
    write(tmp_path / "x.csv", "id,v\na,1\nb,2\na,3\nc,4\na,5\n")
    spec = {
        "source": {"uri": "./x.csv", "format": "csv"},
        "schema": {
            "columns": [
                {"name": "id", "type": "string", "unique": True},
                {"name": "v", "type": "int64"},
            ]
        },
        "validation": {"onError": "quarantine", "maxBadRowFraction": 0.5},
    }
    ds = dataset("u", spec)
    status = runner.run_dataset(ds, context(tmp_path))
    assert (status.rows, status.bad_rows) == (3, 2)
    table = snapshots.current_table(runner.dataset_root(ds, context(tmp_path)))
    assert table.column("v").to_pylist() == [1, 2, 4]
    assert status.quarantine_uri
    bad = pq.read_table(status.quarantine_uri.removeprefix("file://"))
    assert bad.column("_reasons").to_pylist() == ["id:unique", "id:unique"]


def test_ingest_command_writes_the_status_file(tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV)
    manifest = tmp_path / "ds.yaml"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "ev"},
                "spec": events_spec("./events.csv", "fail"),
            }
        )
    )
    code = cli.main(
        [
            "dataset",
            "ingest",
            "-f",
            str(manifest),
            "--artifact-root",
            str(tmp_path / "a"),
            "--result",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 1
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["phase"] == "Failed"
    assert result["error"].startswith("ValidationFailed: ")
    assert "conditions" not in result


def test_ingest_command_reads_the_manifest_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the operator's Job runs it: no -f, the manifest in $FLYWHEEL_MANIFEST."""
    write(tmp_path / "events.csv", EVENTS_CSV)
    spec = events_spec(str(tmp_path / "events.csv"), "quarantine", 0.5)
    monkeypatch.setenv(
        "FLYWHEEL_MANIFEST",
        json.dumps(
            {
                "apiVersion": "flywheel.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "ev", "namespace": "team-a"},
                "spec": spec,
            }
        ),
    )
    result_file = tmp_path / "termination-log"
    code = cli.main(
        ["dataset", "ingest", "--artifact-root", str(tmp_path / "a"), "--result", str(result_file)]
    )
    assert code == 0
    result = json.loads(result_file.read_text())
    assert result["rows"] == 3 and result["badRows"] == 3 and result["version"]
    assert "/datasets/team-a/ev/versions/" in result["snapshotUri"]
    assert len(result_file.read_bytes()) < 4096


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_large_files_are_streamed_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    from flywheel.data import sources

    rows = [
        {
            "customer_id": f"C{i:06d}",
            "event_time": f"2026-01-01 00:00:{i % 60:02d}",
            "plan": "platinum" if i % 50 == 0 else "basic",
            "charges": i / 10,
            "calls": i % 7,
        }
        for i in range(3000)
    ]
    if fmt == "csv":
        text = "customer_id,event_time,plan,charges,calls\n" + "".join(
            f"{r['customer_id']},{r['event_time']},{r['plan']},{r['charges']},{r['calls']}\n"
            for r in rows
        )
    else:
        text = "".join(json.dumps(r) + "\n" for r in rows)
    write(tmp_path / f"big.{fmt}", text)
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "big.parquet", row_group_size=500)
        monkeypatch.setattr(sources, "BATCH_ROWS", 700)
    spec = events_spec(f"./big.{fmt}", "quarantine", 0.05, format=fmt)
    whole = runner.run_dataset(dataset("whole", spec), context(tmp_path))
    monkeypatch.setattr(sources, "WHOLE_FILE_BYTES", 0)
    monkeypatch.setattr(sources, "WHOLE_PARQUET_BYTES", 0)
    monkeypatch.setattr(sources, "BLOCK_BYTES", 16 << 10)  # many small blocks
    streamed = runner.run_dataset(dataset("streamed", spec), context(tmp_path))
    for status in (whole, streamed):
        assert status.phase == "Ready", status.conditions
        assert (status.rows, status.bad_rows) == (2940, 60)
    table = snapshots.current_table(
        runner.dataset_root(dataset("streamed", spec), context(tmp_path))
    )
    assert table.column("customer_id").to_pylist()[:2] == ["C000001", "C000002"]


def test_corrupt_jsonl_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "x.jsonl", '{"customer_id": "C000001"}\n{"customer_id": \n')
    msg = failed_message(tmp_path, events_spec("./x.jsonl", "warn", format="jsonl"))
    assert "x.jsonl" in msg and "cannot read as jsonl" in msg


def test_the_profile_is_the_same_held_in_memory_or_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.data import ingest

    write(tmp_path / "events.csv", EVENTS_CSV)
    spec = events_spec("./events.csv", "quarantine", 0.5)
    in_memory = runner.run_dataset(dataset("a", spec), context(tmp_path))
    monkeypatch.setattr(ingest, "PROFILE_IN_MEMORY_BYTES", 0)
    read_back = runner.run_dataset(dataset("b", spec), context(tmp_path))
    assert in_memory.version == read_back.version


@pytest.mark.parametrize("on_error", ["quarantine", "warn"])
def test_value_counts_from_the_allowed_values_check_are_the_profiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_error: str
) -> None:
    """The profile counts a column checked against allowedValues from the check's codes,
    batch by batch: the same counts, and ties in the order the values first appear, as
    counting the published column; a value outside the list (published by warn) too."""
    from flywheel.data import profile, sources

    monkeypatch.setattr(sources, "BATCH_ROWS", 4)
    # "b" and "c" tie and "c" appears first, in the second batch; "x" is not allowed.
    plans = ["a", "a", None, "a", "c", "a", "b", "x", "b", "c", None, "true"]
    flags = ["true", "", "false", "true", "true", "false", "true", "1", "", "false", "x", "0"]
    rows = [f"{p or ''},{f}" for p, f in zip(plans, flags, strict=True)]
    write(tmp_path / "p.csv", "plan,flag\n" + "\n".join(rows) + "\n")
    spec = {
        "source": {"uri": "./p.csv", "format": "csv"},
        "schema": {
            "columns": [
                {"name": "plan", "type": "string", "allowedValues": ["c", "b", "a", "true"]},
                {"name": "flag", "type": "bool", "allowedValues": [True, False]},
            ]
        },
        "validation": {"onError": on_error, "maxBadRowFraction": 0.5},
    }
    status = runner.run_dataset(dataset(f"codes-{on_error}", spec), context(tmp_path))
    assert status.phase == "Ready" and status.profile_uri and status.snapshot_uri
    published = pq.read_table(status.snapshot_uri.removeprefix("file://"))
    got = json.loads(Path(status.profile_uri.removeprefix("file://")).read_text())
    assert got == json.loads(json.dumps(profile.profile_table(published)))
    top = [t["value"] for t in got["columns"]["plan"]["top"]]
    assert top[:3] == ["a", "c", "b"]


def test_publishing_to_a_store_without_rename(tmp_path: Path) -> None:
    """Object stores cannot rename a directory: the version is copied file by file, and
    the commit is still the one small current.json."""
    from pyarrow import fs as pafs

    from flywheel.data import ingest
    from flywheel.storage import uris
    from flywheel.storage.uris import Location

    (tmp_path / "bucket").mkdir()
    store = pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem())
    root = Location(store, "datasets/events", "s3://bucket/datasets/events")
    write(tmp_path / "events.csv", EVENTS_CSV)
    spec = dataset("events", events_spec("./events.csv", "quarantine", 0.5)).spec
    source = uris.resolve(str(tmp_path / "events.csv"))
    with pytest.raises(Crash):
        ingest.ingest(spec, source, root, checkpoint=crash_at("moved"))
    assert publish.current(root) is None  # moved, not committed: nothing visible
    result = ingest.ingest(spec, source, root)
    manifest = publish.current(root)
    assert manifest is not None and manifest["version"] == result.version
    assert result.location.uri == f"s3://bucket/datasets/events/versions/{result.version}"
    assert not list((tmp_path / "bucket/datasets/events/_staging").iterdir())


def test_large_snapshots_are_written_in_parts_that_keep_the_row_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flywheel.data import ingest, sources

    monkeypatch.setattr(ingest, "ROWS_PER_PART", 1000)
    monkeypatch.setattr(sources, "BATCH_ROWS", 500)
    lines = [f"id{i % 2500},{i}" for i in range(4000)]  # ids repeat after 2500 rows
    write(tmp_path / "x.csv", "id,v\n" + "\n".join(lines) + "\n")
    spec = {
        "source": {"uri": "./x.csv", "format": "csv"},
        "schema": {
            "columns": [
                {"name": "id", "type": "string", "unique": True},
                {"name": "v", "type": "int64"},
            ]
        },
        "validation": {"onError": "quarantine", "maxBadRowFraction": 0.5},
    }
    ds = dataset("parts", spec)
    status = runner.run_dataset(ds, context(tmp_path))
    assert (status.rows, status.bad_rows) == (2500, 1500)
    assert status.snapshot_uri is not None
    parts = sorted(Path(status.snapshot_uri.removeprefix("file://")).iterdir())
    assert [p.name for p in parts] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    table = snapshots.current_table(runner.dataset_root(ds, context(tmp_path)))
    assert table.column("v").to_pylist() == list(range(2500))


def test_the_manifest_holds_the_digests_of_the_published_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts are hashed as they are written, not read back: the manifest must still
    name the bytes that were published."""
    from flywheel.data import ingest, sources

    monkeypatch.setattr(ingest, "ROWS_PER_PART", 1000)
    monkeypatch.setattr(sources, "BATCH_ROWS", 500)
    lines = [f"id{i},{i if i % 7 else 'x'}" for i in range(3000)]
    write(tmp_path / "x.csv", "id,v\n" + "\n".join(lines) + "\n")
    spec = {
        "source": {"uri": "./x.csv", "format": "csv"},
        "schema": {"columns": [{"name": "id", "type": "string"}, {"name": "v", "type": "int64"}]},
        "validation": {"onError": "quarantine", "maxBadRowFraction": 0.5},
    }
    ds = dataset("digests", spec)
    status = runner.run_dataset(ds, context(tmp_path))
    root = runner.dataset_root(ds, context(tmp_path))
    manifest = publish.current(root)
    assert manifest is not None and manifest["version"] == status.version
    version = Path(root.path, "versions", manifest["version"])
    files = {f["path"]: (f["sha256"], f["bytes"]) for f in manifest["files"]}
    assert {"data/part-00001.parquet", "quarantine/part-00000.parquet"} <= set(files)
    for path, (sha256, size) in files.items():
        data = (version / path).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (sha256, size), path


def test_only_columns_whose_values_repeat_are_written_with_a_dictionary(tmp_path: Path) -> None:
    from flywheel.data import ingest
    from flywheel.storage import uris

    batch = pa.RecordBatch.from_pydict(
        {
            "id": [f"C{i:06d}" for i in range(1000)],
            "plan": ["basic", "premium"] * 500,
            "empty": pa.nulls(1000, pa.string()),
        }
    )
    assert ingest.dictionary_columns(batch) == ["plan", "empty"]
    writer = ingest._Writer(uris.resolve(str(tmp_path / "data")))
    writer.write(batch)
    writer.close()
    meta = pq.read_metadata(tmp_path / "data" / "part-00000.parquet").row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(3)}
    assert "RLE_DICTIONARY" not in encodings["id"]
    assert "RLE_DICTIONARY" in encodings["plan"]
    assert pq.read_table(tmp_path / "data").to_batches()[0].equals(batch)
