"""`flywheel run`: kind sessions entered once per run; `-o json` prints a List."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flywheel import cli, entrypoints

ENTERED: list[str] = []

MANIFEST = """
apiVersion: flywheel.dev/v1alpha1
kind: Dataset
metadata: {name: NAME}
spec:
  source: {uri: ./rows.csv, format: csv}
  schema:
    columns:
      - {name: id, type: int64}
"""


@contextmanager
def counting_session() -> Iterator[None]:
    ENTERED.append("enter")
    yield
    ENTERED.append("exit")


def write(directory: Path) -> Path:
    (directory / "rows.csv").write_text("id\n1\n2\n")
    for name in ("a", "b"):
        (directory / f"{name}.yaml").write_text(MANIFEST.replace("NAME", name))
    return directory


def test_a_kinds_session_is_entered_once_for_the_whole_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = dataclasses.replace(
        entrypoints.ENTRYPOINTS["Dataset"],
        session="tests.training.test_run_cli:counting_session",
    )
    monkeypatch.setitem(entrypoints.ENTRYPOINTS, "Dataset", entry)
    ENTERED.clear()
    code = cli.main(["run", "-f", str(write(tmp_path)), "--artifact-root", str(tmp_path / "art")])
    assert code == 0
    assert ENTERED == ["enter", "exit"]
    assert "Dataset:" in capsys.readouterr().out


def test_output_json_is_a_kubectl_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["run", "-f", str(write(tmp_path)), "--artifact-root", str(tmp_path / "art"), "-o", "json"]
    )
    captured = capsys.readouterr()
    assert code == 0
    found = json.loads(captured.out)
    assert found["kind"] == "List"
    assert [(i["kind"], i["metadata"]["name"], i["status"]["phase"]) for i in found["items"]] == [
        ("Dataset", "a", "Ready"),
        ("Dataset", "b", "Ready"),
    ]
    assert found["items"][0]["status"]["rows"] == 2
    assert "STEP" in captured.err
