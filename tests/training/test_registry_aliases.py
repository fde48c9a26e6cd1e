"""Moving a registry alias: what a promotion does, here and through the operator's Job."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flywheel.storage import uris
from flywheel.training import registry

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _registered(tmp_path: Path, n: int) -> tuple[uris.Location, list[str]]:
    """A model root with `n` registered versions, as trainings leave it."""
    root = uris.resolve(str(tmp_path / "models" / "churn"))
    versions = []
    for i in range(n):
        local = tmp_path / f"built-{i}"
        local.mkdir()
        (local / "metrics.json").write_text(json.dumps({"auc": i / 10}))
        version, _, _ = registry.register(root, local, {"model": "churn"}, T0)
        versions.append(version)
    return root, versions


def test_a_promotion_moves_champion_and_the_index_keeps_every_move(tmp_path: Path) -> None:
    root, (v1, v2) = _registered(tmp_path, 2)
    assert (registry.alias(root, "champion"), registry.alias(root, "candidate")) == (v1, v2)
    moved = registry.set_alias(root, "champion", v2, "promoted by md/churn", T0)
    assert moved == {"version": v2, "previous": v1, "setAt": T0.isoformat(),
                     "reason": "promoted by md/churn"}  # fmt: skip
    assert registry.alias(root, "champion") == v2
    # A retried move changes nothing, and is not recorded twice.
    assert registry.set_alias(root, "champion", v2, "again", T0)["reason"] == "promoted by md/churn"
    history = registry.read_index(root)["history"]
    assert [(h["alias"], h["version"], h["previous"]) for h in history] == [("champion", v2, v1)]


def test_an_alias_only_names_a_registered_version(tmp_path: Path) -> None:
    root, (v1,) = _registered(tmp_path, 1)
    with pytest.raises(ValueError, match=r"--version: 'nope' is not a registered version"):
        registry.set_alias(root, "champion", "nope", "", T0)
    assert registry.alias(root, "champion") == v1


def test_the_command_the_operator_runs(tmp_path: Path) -> None:
    _, (_, v2) = _registered(tmp_path, 2)
    result = tmp_path / "result.json"
    model_root = str(tmp_path / "models" / "churn")
    flywheel = [sys.executable, "-m", "flywheel.cli"]
    done = subprocess.run(
        [*flywheel, "registry", "alias", "set", "--model-root", model_root, "--alias",
         "champion", "--version", v2, "--reason", "promoted", "--artifact-root",
         str(tmp_path), "--result", str(result)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(result.read_text())["version"] == v2
    got = subprocess.run(
        [*flywheel, "registry", "alias", "get", "--model-root", model_root, "--alias", "champion"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert got.stdout.strip() == v2
    bad = subprocess.run(
        [*flywheel, "registry", "alias", "set", "--model-root", model_root, "--alias",
         "champion", "--version", "v9"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1 and "--version: 'v9' is not a registered version" in bad.stderr
