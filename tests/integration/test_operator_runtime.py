"""The operator and the runtime together: the Jobs the operator makes run for real.

kwok has no container runtime, so the test plays the kubelet: it runs each Job's
container command (`flywheel ...` with the Job's args and env) on this machine, then
writes what the command wrote to its termination log into the Pod's status, as the
kubelet would. Everything else is real: the API server, the operator, the runtime, the
data it ingests and the stores it fills.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.integration.test_operator import Operator, quickstart, running_operator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runtime_operator(
    control_plane: ControlPlane, namespace: str, flywheel_crds: list[str], tmp_path: Path
) -> Iterator[Operator]:
    """The operator with a local artifact root, which the commands run here can reach."""
    root = tmp_path / "artifacts"
    with running_operator(control_plane, namespace, tmp_path / "operator.log", str(root)) as op:
        yield op


def run_job_like_the_kubelet(
    kubectl: Kubectl, job: dict[str, Any], scratch: Path
) -> dict[str, Any]:
    """Run the Job's container command here; write its result where the kubelet would."""
    [container] = job["spec"]["template"]["spec"]["containers"]
    result = scratch / f"{job['metadata']['name']}.json"
    args = [str(result) if a == "/dev/termination-log" else a for a in container["args"]]
    env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])}}
    flywheel = Path(sys.executable).with_name("flywheel")
    done = subprocess.run(
        [str(flywheel), *args], env=env, cwd=scratch, capture_output=True, text=True, timeout=300
    )
    assert result.exists(), f"no result from {args}: {done.stderr[-2000:]}"
    message = result.read_text()
    pods = wait_for(
        lambda: kubectl.items(
            "pod", "-l", f"batch.kubernetes.io/job-name={job['metadata']['name']}"
        ),
        lambda items: any(
            (cs.get("state") or {}).get("terminated")
            for p in items
            for cs in p.get("status", {}).get("containerStatuses", [])
        ),
        what=f"kwok to finish the pod of {job['metadata']['name']}",
    )
    patch = [
        {
            "op": "add",
            "path": "/status/containerStatuses/0/state/terminated/message",
            "value": message,
        }
    ]
    kubectl.run(
        "patch", "pod", pods[0]["metadata"]["name"], "--subresource=status", "--type=json",
        "-p", json.dumps(patch),
    )  # fmt: skip
    parsed: dict[str, Any] = json.loads(message)
    return parsed


def test_dataset_and_featureview_run_the_runtime_commands(
    runtime_operator: Operator, kubectl: Kubectl, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(ROOT / "examples/quickstart/generate_data.py"), "--customers", "300",
         "--out", str(data)],
        check=True, capture_output=True,
    )  # fmt: skip
    events = quickstart("Dataset", "customer-events")
    events["spec"]["source"]["uri"] = str(data / "customer_events.csv")
    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    kubectl.apply(yaml.safe_dump_all([events, fv]))

    [ingest] = wait_for(lambda: kubectl.items("job"), what="the ingest Job")
    result = run_job_like_the_kubelet(kubectl, ingest, tmp_path)
    assert result["rows"] > 10_000 and result["badRows"] > 0, result
    ds = wait_for(
        lambda: kubectl.get("dataset", "customer-events"),
        lambda o: o.get("status", {}).get("phase") == "Ready",
        what="dataset/customer-events Ready",
        timeout=60,
    )
    assert ds["status"]["version"] == result["version"]
    assert ds["status"]["badRows"] == result["badRows"]

    [materialize] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="the materialization Job",
    )
    result = run_job_like_the_kubelet(kubectl, materialize, tmp_path)
    assert result["onlineRows"] == 300, result
    kubectl.wait("--for=condition=Ready", "featureview/customer-features", timeout=60)
    fv_status = kubectl.get("featureview", "customer-features")["status"]
    assert fv_status["onlineRows"] == 300 and fv_status["watermark"]
