"""A clear error instead of a traceback: bad data files and misuses of the runtime
commands end in a Failed condition or exit 1 that names the file, field and fix."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel import cli
from flywheel.api.common import Condition
from flywheel.data import runner
from flywheel.features import runner as features
from tests.components.helpers import context, dataset, write
from tests.components.test_featureview_integrity import events, ingested, view

pytestmark = pytest.mark.runtime


def ready(conditions: list[Condition]) -> Condition:
    [c] = [c for c in conditions if c.type == "Ready"]
    return c


def ingest(tmp_path: Path, spec: dict[str, Any]) -> Any:
    return runner.run_dataset(dataset("d", spec), context(tmp_path))


def failed(status: Any, reason: str) -> str:
    assert status.phase == "Failed", status.conditions
    condition = ready(status.conditions)
    assert condition.reason == reason, condition.message
    return condition.message


def contract(*columns: dict[str, Any]) -> dict[str, Any]:
    return {"columns": list(columns)}


def test_repeated_csv_headers(tmp_path: Path) -> None:
    write(tmp_path / "d.csv", "a,b,a\n1,2,3\n")
    status = ingest(tmp_path, {"source": {"uri": "./d.csv", "format": "csv"}})
    assert "'a' more than once" in failed(status, "DuplicateColumns")


def test_nanosecond_parquet_times_that_would_lose_digits_are_bad_rows(tmp_path: Path) -> None:
    times = pa.array([1_767_225_600_000_000_000, 1_767_225_600_000_000_001], pa.timestamp("ns"))
    pq.write_table(pa.table({"t": times}), tmp_path / "t.parquet")
    spec = {
        "source": {"uri": "./t.parquet", "format": "parquet"},
        "schema": contract({"name": "t", "type": "timestamp"}),
        "validation": {"onError": "quarantine", "maxBadRowFraction": 1.0},
    }
    status = ingest(tmp_path, spec)
    assert status.phase == "Ready"
    assert (status.rows, status.bad_rows) == (1, 1)


def test_text_that_is_not_utf8_in_a_parquet_string_column(tmp_path: Path) -> None:
    # Arrow accepts the bytes unchecked when told they are a string column.
    raw = pa.array([b"ok", b"\xff\xfe bad"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"s": raw}), tmp_path / "s.parquet")
    status = ingest(tmp_path, {"source": {"uri": "./s.parquet", "format": "parquet"}})
    assert "not valid UTF-8" in failed(status, "InvalidText")


def test_a_message_naming_800_columns_stays_short(tmp_path: Path) -> None:
    names = [f"column_with_a_long_name_{i:04d}_" + "x" * 30 for i in range(800)]
    write(tmp_path / "w.csv", ",".join(["id", *names]) + "\n" + ",".join(["1"] * 801) + "\n")
    spec = {
        "source": {"uri": "./w.csv", "format": "csv"},
        "schema": {"columns": [{"name": "id", "type": "int64"}], "extraColumns": "reject"},
    }
    message = failed(ingest(tmp_path, spec), "IngestFailed")
    assert len(message.encode()) <= 2000
    assert "and 790 more are not in the schema" in message


def test_a_regex_rE2_cannot_run_is_refused_before_reading(tmp_path: Path) -> None:
    write(tmp_path / "r.csv", "s\naa\n")
    spec = {
        "source": {"uri": "./r.csv", "format": "csv"},
        "schema": contract({"name": "s", "type": "string", "regex": "a+"}),
    }
    ds = dataset("d", spec)
    # validate refuses it now; an object stored before that rule still reaches the run
    assert ds.spec.contract is not None
    ds.spec.contract.columns[0].regex = r"(a)\1"
    message = failed(runner.run_dataset(ds, context(tmp_path)), "InvalidContract")
    assert "RE2" in message and "column 's'" in message


def test_allowed_values_of_the_wrong_type(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "n\n1\n")
    spec = {
        "source": {"uri": "./a.csv", "format": "csv"},
        "schema": contract({"name": "n", "type": "int64", "allowedValues": ["one", "two"]}),
    }
    message = failed(ingest(tmp_path, spec), "InvalidContract")
    assert "allowedValues" in message and "column 'n'" in message


def test_parquet_files_that_disagree_without_a_contract(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "dir" / "a.parquet")
    pq.write_table(pa.table({"x": ["one"], "y": [2]}), tmp_path / "dir" / "b.parquet")
    status = ingest(tmp_path, {"source": {"uri": "./dir", "format": "parquet"}})
    message = failed(status, "SchemaMismatch")
    assert "b.parquet" in message and "spec.schema.columns" in message


def test_an_unreachable_s3_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FLYWHEEL_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    status = ingest(tmp_path, {"source": {"uri": "s3://bucket/events.csv", "format": "csv"}})
    assert "$FLYWHEEL_S3_ENDPOINT" in failed(status, "StorageUnavailable")


@pytest.mark.parametrize(
    ("feature", "says"),
    [
        ({"name": "r", "expression": "round(charges, charges)"}, "round(x, n)"),
        ({"name": "r", "expression": "charges * 99999999999999999999"}, "64-bit integer"),
        ({"name": "r", "expression": "charges * 1e400"}, "64-bit float"),
        (
            {
                "name": "w",
                "aggregation": {"column": "charges", "function": "sum", "window": "99999999999d"},
            },
            "window",
        ),
    ],
    ids=["round-by-column", "int-literal", "float-literal", "window"],
)
def test_expressions_and_windows_arrow_cannot_compute(
    tmp_path: Path, feature: dict[str, Any], says: str
) -> None:
    ctx = ingested(tmp_path, events())
    if "aggregation" in feature:
        # validate bounds durations now; an object stored before that rule still runs
        fv = view([{**feature, "aggregation": {**feature["aggregation"], "window": "1d"}}])
        aggregation = fv.spec.features[0].aggregation
        assert aggregation is not None
        aggregation.window = feature["aggregation"]["window"]
    else:
        fv = view([feature])
    status = features.run_featureview(fv, ctx)
    assert status.phase == "Failed"
    condition = status.conditions[-1]
    assert condition.reason == "FeatureError"
    assert f"feature {feature['name']!r}" in condition.message and says in condition.message


def test_get_online_at_that_is_not_a_time_and_values_that_expired(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = ingested(tmp_path, events())
    fv = view([{"name": "charges", "column": "charges"}])
    assert features.run_featureview(fv, ctx).phase == "Ready"
    (tmp_path / "v.json").write_text(json.dumps(fv.to_wire()))
    (tmp_path / "d.json").write_text(json.dumps(events().to_wire()))
    art = ["--artifact-root", str(tmp_path / "artifacts")]
    files = ["-f", str(tmp_path / "v.json"), "-f", str(tmp_path / "d.json")]
    base = ["features", "get-online", *files, *art, "--entity", "customer_id=C1"]
    assert cli.main([*base, "--at", "tomorrow"]) == 1
    assert "--at" in capsys.readouterr().err
    assert cli.main(base) == 0  # now: long after the last event (2026-01-02) + 5d
    [answer] = json.loads(capsys.readouterr().out)
    assert answer["features"] is None
    assert answer["reason"].startswith("expired: last value at 2026-01-02T00:00:00+00:00")
    assert "ttl 5d" in answer["reason"]
    at = datetime(2026, 1, 3, tzinfo=UTC).isoformat()
    assert cli.main([*base, "--at", at]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    assert answer["features"] == {"charges": 20.0} and "reason" not in answer


def test_training_set_out_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = ingested(tmp_path, events())
    fv = view([{"name": "charges", "column": "charges"}])
    assert features.run_featureview(fv, ctx).phase == "Ready"
    (tmp_path / "v.json").write_text(json.dumps(fv.to_wire()))
    labels = events().to_wire()
    labels["spec"]["timestampColumn"] = "event_time"
    (tmp_path / "d.json").write_text(json.dumps(labels))
    write(tmp_path / "taken", "a file")
    files = ["-f", str(tmp_path / "v.json"), "-f", str(tmp_path / "d.json")]
    art = ["--artifact-root", str(tmp_path / "artifacts")]
    out = ["--out", str(tmp_path / "taken" / "train.parquet")]
    code = cli.main(["features", "training-set", *files, *art, "--labels", "events", *out])
    assert code == 1
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and "Traceback" not in err


def test_flywheel_run_shows_the_same_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "d.csv", "a,b,a\n1,2,3\n")
    body = dataset("d", {"source": {"uri": "./d.csv", "format": "csv"}}).to_wire()
    (tmp_path / "d.json").write_text(json.dumps(body))
    code = cli.main(
        ["run", "-f", str(tmp_path / "d.json"), "--artifact-root", str(tmp_path / "art")]
    )
    assert code == 1
    out, err = capsys.readouterr()
    assert "more than once" in out
    assert "Error:" not in out + err.replace("error:", "")
    assert "Traceback" not in out + err
