"""Two ingests of one Dataset started at once, as two real `flywheel dataset ingest` processes
(two Jobs of one Dataset after a spec change, say), with a reader following the Dataset
meanwhile: every read is a whole snapshot, and the end is one consistent current version,
one that a writer reported."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flywheel.data import snapshots
from flywheel.storage import publish, uris

pytestmark = pytest.mark.runtime

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))


def source(path: Path, rows: int, plan: str) -> None:
    lines = ["customer_id,event_time,plan,charges"]
    lines += [f"C{i:07d},2026-01-01T00:00:{i % 60:02d},{plan},{i % 97}.5" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def manifest(path: Path, uri: str) -> None:
    columns = [
        {"name": "customer_id", "type": "string"},
        {"name": "event_time", "type": "timestamp"},
        {"name": "plan", "type": "string"},
        {"name": "charges", "type": "float64"},
    ]
    doc: dict[str, Any] = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "events", "namespace": "team-a"},
        "spec": {
            "source": {"uri": uri, "format": "csv"},
            "schema": {"columns": columns},
        },
    }
    path.write_text(json.dumps(doc))


def ingest(tmp_path: Path, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FLYWHEEL, "dataset", "ingest", "-f", str(tmp_path / f"{name}.json"),
         "--artifact-root", str(tmp_path / "artifacts"),
         "--result", str(tmp_path / f"{name}.result.json")],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_two_ingests_at_once_end_in_one_consistent_version(tmp_path: Path) -> None:
    sizes = {"a": 20_000, "b": 30_000}
    for name, rows in sizes.items():
        source(tmp_path / f"{name}.csv", rows, plan=name)
        manifest(tmp_path / f"{name}.json", f"./{name}.csv")
    root = uris.resolve("datasets/team-a/events", tmp_path / "artifacts")
    procs = {name: ingest(tmp_path, name) for name in sizes}

    # A reader meanwhile: whatever it finds current is one whole snapshot of one source.
    reads: list[tuple[int, list[str]]] = []
    while any(p.poll() is None for p in procs.values()):
        if publish.current(root) is not None:
            table = snapshots.current_table(root, ["plan"])
            reads.append((table.num_rows, sorted(set(table.column("plan").to_pylist()))))
        for running in [p for p in procs.values() if p.poll() is None][:1]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.wait(timeout=0.1)  # read again once it ends, or in a tenth of a second
    for name, proc in procs.items():
        out = proc.communicate(timeout=120)[0]
        assert proc.returncode == 0, f"{name}: {out}"

    results = {n: json.loads((tmp_path / f"{n}.result.json").read_text()) for n in sizes}
    assert {n: r["rows"] for n, r in results.items()} == sizes
    assert results["a"]["version"] != results["b"]["version"]
    assert reads, "the reader saw a version while the writers ran"
    for rows, plans in reads:
        assert (rows, plans) in [(sizes["a"], ["a"]), (sizes["b"], ["b"])], (rows, plans)

    current = publish.current(root)
    assert current is not None
    winner = next(n for n, r in results.items() if r["version"] == current["version"])
    table = snapshots.current_table(root)
    assert table.num_rows == sizes[winner]
    assert set(table.column("plan").to_pylist()) == {winner}
    # Both versions are whole (a reader holding the other one keeps reading it), and no
    # run left its staging behind.
    for name, result in results.items():
        version = publish.version_location(root, result["version"])
        listed = json.loads((Path(version.path) / publish.MANIFEST).read_text())["files"]
        for file in listed:
            assert (Path(version.path) / file["path"]).stat().st_size == file["bytes"], name
    staging = Path(root.path) / publish.STAGING
    assert not staging.exists() or not any(staging.iterdir())
