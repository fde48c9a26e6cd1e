"""No secret shown, no write outside its root: every output path of the runtime commands."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from flywheel import cli
from flywheel.data import runner
from tests.components.helpers import context, dataset, write

pytestmark = pytest.mark.runtime

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connections are refused


def manifest(tmp_path: Path, uri: str, **spec: Any) -> Path:
    body = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "events"},
        "spec": {
            "source": {"uri": uri, "format": "csv"},
            "schema": {"columns": [{"name": "x", "type": "int64"}]},
            **spec,
        },
    }
    return write(tmp_path / "events.json", json.dumps(body))


@pytest.mark.parametrize(
    "uri",
    [
        # validate refuses it; its message must not echo the URI either
        f"http://user:{SECRET}@127.0.0.1:{{port}}/x.csv",
        # a signed URL is allowed: the run fails to connect, and says so masked
        f"http://127.0.0.1:{{port}}/x.csv?X-Amz-Signature={SECRET}",
    ],
    ids=["userinfo", "signed-url"],
)
def test_run_and_plan_never_print_a_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], uri: str
) -> None:
    path = manifest(tmp_path, uri.format(port=closed_port()))
    art = ["--artifact-root", str(tmp_path / "artifacts")]
    cli.main(["run", "-f", str(path), "--plan-only", *art])
    assert cli.main(["run", "-f", str(path), *art]) == 1
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert "X-Amz-Signature" not in uri or "X-Amz-Signature=***" in out


def test_the_result_json_and_the_status_line_carry_no_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(tmp_path, f"http://127.0.0.1:{closed_port()}/x.csv?token={SECRET}")
    result = tmp_path / "result.json"
    code = cli.main(
        [
            "dataset",
            "ingest",
            "-f",
            str(path),
            "--artifact-root",
            str(tmp_path / "artifacts"),
            "--result",
            str(result),
        ]
    )
    assert code == 1
    body = json.loads(result.read_text())
    assert body["error"].startswith("SourceUnreadable")
    assert SECRET not in result.read_text()
    out, err = capsys.readouterr()
    assert SECRET not in out + err


def test_an_unexpected_error_is_one_redacted_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError(f"cannot list s3://AKIAIOSFODNN7EXAMPLE:{SECRET}@bucket/x")

    monkeypatch.setattr(runner, "run_dataset", broken)
    path = manifest(tmp_path, "./x.csv")
    code = cli.main(["dataset", "ingest", "-f", str(path), "--artifact-root", str(tmp_path)])
    assert code == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: RuntimeError: cannot list s3://***@bucket/x")
    assert "Traceback" not in err
    assert SECRET not in out + err


def test_a_status_message_quotes_source_content_only_as_a_short_redacted_sample(
    tmp_path: Path,
) -> None:
    first_line = f"api_key={SECRET} and some more private words that go on for a while"
    write(tmp_path / "s.csv", f"x\n1\n{first_line},2,3\n")
    ds = dataset(
        "s",
        {
            "source": {"uri": "./s.csv", "format": "csv"},
            "schema": {"columns": [{"name": "x", "type": "int64"}]},
        },
    )
    status = runner.run_dataset(ds, context(tmp_path))
    assert status.phase == "Failed"
    message = status.conditions[-1].message
    assert SECRET not in message
    assert "private words that go on" not in message


def test_a_namespace_that_is_not_a_dns_label_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a" / "x.csv", "x\n1\n")
    path = manifest(tmp_path / "a", "./x.csv")
    root = tmp_path / "a" / "artifacts"
    args = ["dataset", "ingest", "-f", str(path), "--artifact-root", str(root)]
    code = cli.main([*args, "--namespace", "../../../escaped"])
    assert code == 1
    assert "not a DNS label" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert not root.exists()
