"""Nothing lost, nothing corrupted: inputs that used to publish wrong data as "all valid"."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.api.common import Condition
from flywheel.data import runner
from flywheel.storage import publish
from tests.components.helpers import context, dataset, write

pytestmark = pytest.mark.runtime


def ready(conditions: list[Condition]) -> Condition:
    [c] = [c for c in conditions if c.type == "Ready"]
    return c


def spec(uri: str, columns: list[dict[str, Any]], fmt: str = "csv", **extra: Any) -> dict[str, Any]:
    return {
        "source": {"uri": uri, "format": fmt},
        "schema": {"columns": columns},
        "validation": {"onError": "quarantine", "maxBadRowFraction": 1.0},
        **extra,
    }


def snapshot(status: Any) -> Any:
    return pq.read_table(status.snapshot_uri.removeprefix("file://"))


def quarantined(status: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(
        status.quarantine_uri.removeprefix("file://")
    ).to_pylist()
    return rows


# --- one store root, one owner ---------------------------------------------------------


def test_two_datasets_with_one_destination_the_second_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x\n1\n")
    write(tmp_path / "b.csv", "x\n2\n")
    columns = [{"name": "x", "type": "int64"}]
    first = dataset("a", spec("./a.csv", columns, destination="./artifacts/shared"))
    second = dataset("b", spec("./b.csv", columns, destination="./artifacts/shared"))
    ctx = context(tmp_path)
    assert runner.run_dataset(first, ctx).phase == "Ready"
    refused = runner.run_dataset(second, ctx)
    assert refused.phase == "Failed"
    condition = ready(refused.conditions)
    assert condition.reason == "StoreOwnedByAnother"
    assert "Dataset default/a" in condition.message and "Dataset default/b" in condition.message
    # The first Dataset still serves its own rows.
    again = runner.run_dataset(first, ctx)
    assert snapshot(again).column("x").to_pylist() == [1]


def test_a_publisher_without_an_owner_cannot_take_an_owned_root(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x\n1\n")
    ds = dataset("a", spec("./a.csv", [{"name": "x", "type": "int64"}]))
    ctx = context(tmp_path)
    status = runner.run_dataset(ds, ctx)
    location = runner.dataset_root(ds, ctx)
    before = (Path(location.path) / publish.CURRENT).read_text()
    staging = publish.new_staging(location)
    write(Path(staging.path) / "features.parquet", "not a dataset")
    with pytest.raises(publish.OwnershipError, match="belongs to Dataset default/a"):
        publish.commit(location, staging)
    publish.discard(staging)
    assert (Path(location.path) / publish.CURRENT).read_text() == before
    assert status.phase == "Ready"


# --- silent misreads -------------------------------------------------------------------


def test_a_symlink_loop_in_the_source_directory_fails(tmp_path: Path) -> None:
    write(tmp_path / "src" / "part.csv", "x\n1\n")
    os.symlink(tmp_path / "src", tmp_path / "src" / "again")
    ds = dataset("loop", spec("./src", [{"name": "x", "type": "int64"}]))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    assert ready(status.conditions).reason == "SourceSymlinkLoop"
    assert status.version is None


def test_a_file_reached_through_two_links_is_read_once(tmp_path: Path) -> None:
    write(tmp_path / "data" / "part.csv", "x\n1\n2\n")
    (tmp_path / "src").mkdir()
    os.symlink(tmp_path / "data" / "part.csv", tmp_path / "src" / "a.csv")
    os.symlink(tmp_path / "data" / "part.csv", tmp_path / "src" / "b.csv")
    ds = dataset("twice", spec("./src", [{"name": "x", "type": "int64"}]))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Ready", status.conditions
    assert status.rows == 2


def test_files_of_a_directory_are_read_in_path_order_skipping_hidden_ones(
    tmp_path: Path,
) -> None:
    write(tmp_path / "src" / "a" / "x.csv", "x\n2\n")
    write(tmp_path / "src" / "a.csv", "x\n1\n")
    write(tmp_path / "src" / "_temporary" / "y.csv", "x\n9\n")
    write(tmp_path / "src" / ".hidden.csv", "x\n9\n")
    ds = dataset("order", spec("./src", [{"name": "x", "type": "int64"}]))
    status = runner.run_dataset(ds, context(tmp_path))
    assert snapshot(status).column("x").to_pylist() == [1, 2]


def test_a_dangling_symlink_in_the_source_directory_fails(tmp_path: Path) -> None:
    write(tmp_path / "src" / "part.csv", "x\n1\n")
    os.symlink(tmp_path / "gone.csv", tmp_path / "src" / "more.csv")
    ds = dataset("dangling", spec("./src", [{"name": "x", "type": "int64"}]))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    condition = ready(status.conditions)
    assert condition.reason == "SourceNotFound"
    assert "more.csv" in condition.message


def test_a_fifo_as_the_source_fails_instead_of_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "events.csv")
    ds = dataset("fifo", spec("./events.csv", [{"name": "x", "type": "int64"}]))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    assert ready(status.conditions).reason == "SourceNotAFile"


def test_json_epoch_numbers_are_seconds_and_millisecond_values_are_flagged(
    tmp_path: Path,
) -> None:
    lines = [{"t": 1767225600}, {"t": 1767225600.25}, {"t": 1767225600000}]
    write(tmp_path / "e.jsonl", "\n".join(json.dumps(r) for r in lines) + "\n")
    ds = dataset("epoch", spec("./e.jsonl", [{"name": "t", "type": "timestamp"}], "jsonl"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Ready", status.conditions
    times = [t.isoformat() for t in snapshot(status).column("t").to_pylist()]
    assert times == ["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00.250000+00:00"]
    assert [(r["_row"], r["_reasons"]) for r in quarantined(status)] == [(3, "t:timestamp")]


def test_only_zero_and_one_are_booleans(tmp_path: Path) -> None:
    write(tmp_path / "b.jsonl", "".join(f'{{"b": {v}}}\n' for v in (0, 1, 2, -7)))
    ds = dataset("bools", spec("./b.jsonl", [{"name": "b", "type": "bool"}], "jsonl"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert snapshot(status).column("b").to_pylist() == [False, True]
    assert [(r["b"], r["_reasons"]) for r in quarantined(status)] == [
        ("2", "b:type"),
        ("-7", "b:type"),
    ]


def test_nan_is_not_present_and_not_in_range(tmp_path: Path) -> None:
    write(tmp_path / "n.csv", "a,b\n1.5,1.5\nNaN,1\n1,nan\n")
    columns = [
        {"name": "a", "type": "float64", "nullable": False},
        {"name": "b", "type": "float64", "min": 0, "max": 2},
    ]
    status = runner.run_dataset(dataset("nan", spec("./n.csv", columns)), context(tmp_path))
    assert snapshot(status).column("a").to_pylist() == [1.5]
    reasons = {r["_row"]: r["_reasons"] for r in quarantined(status)}
    assert reasons == {2: "a:null", 3: "b:min;b:max"}


def test_a_corrupt_parquet_page_is_not_published(tmp_path: Path) -> None:
    values = list(range(1000, 1000 + 4096))
    path = tmp_path / "p.parquet"
    pq.write_table(
        pa.table({"x": pa.array(values, pa.int64())}),
        path,
        compression="NONE",
        use_dictionary=False,
        write_page_checksum=True,
    )
    data = bytearray(path.read_bytes())
    offset = bytes(data).index((3000).to_bytes(8, "little"))
    data[offset] ^= 0x01  # 3000 becomes 3001: still a valid int64
    path.write_bytes(bytes(data))
    ds = dataset("corrupt", spec("./p.parquet", [{"name": "x", "type": "int64"}], "parquet"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    assert ready(status.conditions).reason == "SourceUnreadable"
    assert status.version is None


def test_a_19_digit_int64_survives_a_bad_neighbour(tmp_path: Path) -> None:
    write(tmp_path / "i.csv", "x\n9223372036854775807\nnot a number\n-9223372036854775808\n")
    ds = dataset("big", spec("./i.csv", [{"name": "x", "type": "int64"}]))
    status = runner.run_dataset(ds, context(tmp_path))
    assert snapshot(status).column("x").to_pylist() == [2**63 - 1, -(2**63)]
    assert [r["_row"] for r in quarantined(status)] == [2]


def test_warn_keeps_every_bad_value_not_only_the_first_twenty(tmp_path: Path) -> None:
    rows = "".join(f"{'x' if i % 2 else i}\n" for i in range(100))
    write(tmp_path / "w.csv", "n\n" + rows)
    ds = dataset("warn", spec("./w.csv", [{"name": "n", "type": "int64"}]))
    ds.spec.validation.on_error = "warn"  # type: ignore[assignment]
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Ready"
    assert status.rows == 100
    bad = quarantined(status)
    assert len(bad) == 50
    assert {r["n"] for r in bad} == {"x"}


# --- where a snapshot may go -----------------------------------------------------------


def test_a_destination_inside_the_source_directory_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "artifacts" / "src" / "a.csv", "x\n1\n")
    columns = [{"name": "x", "type": "int64"}]
    ds = dataset("self", spec("./artifacts/src", columns, destination="./artifacts/src/out"))
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    assert ready(status.conditions).reason == "DestinationInsideSource"
    assert not (tmp_path / "artifacts" / "src" / "out").exists()


def test_a_destination_outside_the_artifact_root_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x\n1\n")
    ds = dataset(
        "out", spec("./a.csv", [{"name": "x", "type": "int64"}], destination="./artifacts/../x")
    )
    status = runner.run_dataset(ds, context(tmp_path))
    assert ready(status.conditions).reason == "DestinationOutsideRoot"
    assert not (tmp_path / "x").exists()


def test_in_a_pod_a_missing_local_source_names_what_pods_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(runner.IN_CLUSTER_ENV, "10.96.0.1")
    ds = dataset("pod", spec("./data/events.csv", [{"name": "x", "type": "int64"}]))
    status = runner.run_dataset(ds, context(tmp_path))
    condition = ready(status.conditions)
    assert condition.reason == "SourceNotReachable"
    assert "pvc://" in condition.message and "s3://" in condition.message


# --- what a killed run leaves behind ---------------------------------------------------


def test_staging_left_by_a_killed_ingest_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "x\n1\n")
    ds = dataset("a", spec("./a.csv", [{"name": "x", "type": "int64"}]))
    ctx = context(tmp_path)
    root = runner.dataset_root(ds, ctx)
    abandoned = Path(root.path, publish.STAGING, "deadbeef")
    write(abandoned / "data" / "part-00000.parquet", "half written")
    old = 1_000_000_000.0
    for p in (abandoned / "data" / "part-00000.parquet", abandoned / "data", abandoned):
        os.utime(p, (old, old))
    live = publish.new_staging(root)  # held by this process, as a running ingest holds it
    for p in (Path(live.path),):
        os.utime(p, (old, old))
    try:
        status = runner.run_dataset(ds, ctx)
        assert status.phase == "Ready", status.conditions
        assert not abandoned.exists()
        assert Path(live.path).exists()
        assert "removed 1 staging directories" in ready(status.conditions).message
        assert "deadbeef" in ready(status.conditions).message
    finally:
        publish.discard(live)
