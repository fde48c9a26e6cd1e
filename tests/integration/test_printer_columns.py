"""What `kubectl get dm` prints for a DriftMonitor with and without drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cluster import Kubectl

pytestmark = pytest.mark.integration

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def drift_monitor() -> str:
    for path in sorted(QUICKSTART.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "DriftMonitor":
                return yaml.safe_dump(doc)
    raise AssertionError("the quickstart has no DriftMonitor")


def set_status(kubectl: Kubectl, name: str, drifted: list[str]) -> None:
    condition = {
        "type": "DriftDetected",
        "status": "True" if drifted else "False",
        "reason": "Drift" if drifted else "NoDrift",
        "message": ", ".join(drifted),
        "lastTransitionTime": "2026-05-01T00:10:00Z",
    }
    status = {
        "phase": "Ready",
        "lastRun": "2026-05-01T00:10:00Z",
        "driftedFeatures": drifted,
        "conditions": [condition],
    }
    kubectl.run(
        "patch", "dm", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def row(output: str, name: str) -> list[str]:
    _header, *lines = output.splitlines()
    [line] = [line for line in lines if line.startswith(name + " ")]
    return line.split()


def test_the_drifted_column_says_false_not_an_empty_list(
    flywheel_crds: list[str], kubectl: Kubectl
) -> None:
    applied = kubectl.apply(drift_monitor(), extra=["-o", "name"]).stdout.split()
    name = applied[0].split("/", 1)[1]
    set_status(kubectl, name, [])
    plain = kubectl.run("get", "dm", name).stdout
    assert "[]" not in plain
    assert row(plain, name)[1:3] == ["Ready", "False"]
    set_status(kubectl, name, ["plan", "country"])
    wide = kubectl.run("get", "dm", name, "-o", "wide").stdout
    assert row(wide, name)[1:5] == ["Ready", "True", "plan,", "country"]
