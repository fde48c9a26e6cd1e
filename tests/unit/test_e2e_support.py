"""The kind recipe without a kind cluster: the config, the make targets, and the quickstart
as the e2e tests rewrite it (still valid Flywheel input)."""

from __future__ import annotations

import re
from typing import Any

import yaml

from flywheel import manifests
from tests.e2e import support


def quickstart_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(support.QUICKSTART.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_rewritten_quickstart_validates() -> None:
    docs = quickstart_docs()
    rewritten = support.in_cluster_quickstart(docs)
    assert len(rewritten) == len(docs)
    for doc in rewritten:
        resource, errors = manifests.parse(doc, "quickstart")
        assert resource is not None and not errors, [e.message for e in errors]


def test_sources_move_to_the_artifact_pvc_and_the_canary_speeds_up() -> None:
    original = quickstart_docs()
    rewritten = support.in_cluster_quickstart(original)
    uris = [d["spec"]["source"]["uri"] for d in rewritten if d["kind"] == "Dataset"]
    assert uris == [
        "pvc://flywheel-artifacts/quickstart/customer_events.csv",
        "pvc://flywheel-artifacts/quickstart/churn_labels.csv",
    ]
    (md,) = [d for d in rewritten if d["kind"] == "ModelDeployment"]
    canary = md["spec"]["rollout"]["canary"]
    assert [s.get("pause") for s in canary["steps"]] == ["30s", "30s", None]
    assert canary["analysis"]["minRequests"] == 50
    # The input is left alone.
    (md_before,) = [d for d in original if d["kind"] == "ModelDeployment"]
    assert md_before["spec"]["rollout"]["canary"]["steps"][0]["pause"] == "2m"


def test_kind_config_is_one_control_plane_and_one_worker() -> None:
    config = yaml.safe_load((support.REPO_ROOT / "kind-config.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    assert config["name"] == "flywheel"
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker"]


def test_kind_make_targets() -> None:
    text = (support.REPO_ROOT / "hack" / "kind.mk").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", text, flags=re.MULTILINE))
    assert {"kind-up", "deploy", "e2e", "kind-down"} <= targets
    assert "$(KIND) create cluster --config $(KIND_CONFIG) --name $(KIND_CLUSTER)" in text
    assert ".venv/bin/pytest -m kind tests/e2e" in text
