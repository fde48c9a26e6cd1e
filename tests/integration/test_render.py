"""`flywheel-operator render` prints what the operator applies: the same manifests, given
to the operator on the real API server, make the objects render printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import ControlPlane, Kubectl, kuberay, wait_for
from tests.integration.test_operator import running_operator

OPERATOR = str(Path(sys.executable).parent / "flywheel-operator")
ARTIFACT_ROOT = "file:///var/lib/flywheel/"
IMAGE = "flywheel/runtime:test"

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "churn"},
    "spec": {
        "backend": "triton",
        "stable": {"modelName": "churn", "version": "v1"},
        "candidate": {"modelName": "churn", "version": "v2"},
        "rollout": {"strategy": "canary", "canary": {"steps": [{"weight": 25}]}},
    },
}


def rendered(directory: Path, namespace: str) -> list[dict[str, Any]]:
    env = {**os.environ, "FLYWHEEL_ARTIFACT_ROOT": ARTIFACT_ROOT,
           "FLYWHEEL_RUNTIME_IMAGE": IMAGE}  # fmt: skip
    argv = [OPERATOR, "render", "-f", str(directory), "-n", namespace]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_render_prints_what_the_operator_applies(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    tmp_path: Path,
) -> None:
    directory = tmp_path / "manifests"
    directory.mkdir()
    datasets = (REPO / "examples" / "quickstart" / "01-datasets.yaml").read_text()
    (directory / "01-datasets.yaml").write_text(datasets)
    (directory / "02-deployment.yaml").write_text(yaml.safe_dump(DEPLOYMENT))
    objects = rendered(directory, namespace)
    kinds = sorted(o["kind"] for o in objects)
    assert {"Job", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= set(kinds)

    with running_operator(
        control_plane, namespace, tmp_path / "operator.log", ARTIFACT_ROOT, IMAGE
    ):
        kubectl.apply(directory)
        kinds = sorted({o["kind"] for o in objects})

        def live() -> dict[tuple[str, str], dict[str, Any]]:
            return {
                (o["kind"], o["metadata"]["name"]): o
                for kind in kinds
                for o in kubectl.items(kind.lower())
                if o["metadata"].get("ownerReferences")  # the operator's, not the cluster's
            }

        wanted = {(o["kind"], o["metadata"]["name"]) for o in objects}
        wait_for(lambda: len(live()) >= len(wanted), what="the operator's children", timeout=90)
        applied = live()
        assert set(applied) == wanted
        for obj in objects:
            # The owner's uid is the API server's; everything else is the builders'.
            for ref in obj["metadata"]["ownerReferences"]:
                ref.pop("uid")
            key = (obj["kind"], obj["metadata"]["name"])
            assert kuberay.pruned(obj, applied[key]) == [], key
