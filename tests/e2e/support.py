"""Helpers of the kind e2e tests: kubectl bound to a context, waits that explain
themselves, and the quickstart rewritten to run inside a cluster.

Nothing here talks to a cluster at import time: `pytest --collect-only tests/e2e` runs in CI.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = REPO_ROOT / "examples" / "quickstart"
# The chart's default artifactRoot is pvc://flywheel-artifacts/; the runtime mounts a
# claim at /mnt/pvc/<claim> (flywheel.storage.uris).
ARTIFACT_CLAIM = "flywheel-artifacts"
PVC_MOUNT = f"/mnt/pvc/{ARTIFACT_CLAIM}"
DATA_PREFIX = f"pvc://{ARTIFACT_CLAIM}/quickstart/"

Manifest = dict[str, Any]


def find_kubectl() -> Path | None:
    """kubectl on PATH, else the one `make dev` installs into .venv/bin."""
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    venv = REPO_ROOT / ".venv" / "bin" / "kubectl"
    return venv if venv.is_file() and os.access(venv, os.X_OK) else None


@dataclass(frozen=True)
class Cluster:
    kubectl: Path
    context: str

    def run(
        self,
        *args: str,
        namespace: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.kubectl), "--context", self.context]
        if namespace:
            cmd += ["--namespace", namespace]
        result = subprocess.run(
            [*cmd, *args], input=input, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{' '.join(cmd + list(args))}` exited {result.returncode}\n"
                f"stderr: {result.stderr.strip()}\nstdout: {result.stdout.strip()[:2000]}"
            )
        return result

    def reachable(self) -> tuple[bool, str]:
        result = self.run("get", "--raw=/readyz", "--request-timeout=5s", check=False, timeout=15)
        return result.returncode == 0, (result.stderr or result.stdout).strip()

    def wait(self, condition: str, targets: Sequence[str], namespace: str, timeout: int) -> None:
        """`kubectl wait --for=condition=...`; on timeout the objects, their conditions and
        the namespace's recent events are in the message."""
        result = self.run(
            "wait", f"--for=condition={condition}", *targets, f"--timeout={timeout}s",
            namespace=namespace, check=False, timeout=timeout + 30,
        )  # fmt: skip
        if result.returncode == 0:
            return
        seen = self.run("get", *targets, "-o", "yaml", namespace=namespace, check=False)
        events = self.run(
            "get", "events", "--sort-by=.lastTimestamp", namespace=namespace, check=False
        )
        raise AssertionError(
            f"{', '.join(targets)} not {condition} after {timeout}s: {result.stderr.strip()}\n"
            f"--- objects\n{seen.stdout or seen.stderr}\n"
            f"--- events (latest last)\n{events.stdout[-6000:]}"
        )


def in_cluster_quickstart(docs: Sequence[Manifest], *, fast_rollout: bool = True) -> list[Manifest]:
    """The quickstart as a cluster runs it: Dataset sources read from the artifact PVC
    (where the test uploads ./data), and, with fast_rollout, canary pauses and the
    analysis window shortened so that a promotion takes minutes, not a quarter hour.

    >>> ds = {"kind": "Dataset", "spec": {"source": {"uri": "./data/a.csv"}}}
    >>> in_cluster_quickstart([ds])[0]["spec"]["source"]["uri"]
    'pvc://flywheel-artifacts/quickstart/a.csv'
    """
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        spec = doc.get("spec", {})
        if doc["kind"] == "Dataset":
            uri = spec["source"]["uri"]
            if uri.startswith("./data/"):
                spec["source"]["uri"] = DATA_PREFIX + uri.removeprefix("./data/")
        if doc["kind"] == "ModelDeployment" and fast_rollout:
            canary = spec.get("rollout", {}).get("canary")
            if canary:
                for step in canary.get("steps", []):
                    if "pause" in step:
                        step["pause"] = "30s"
                analysis = canary.setdefault("analysis", {})
                analysis["interval"] = "10s"
                analysis["minRequests"] = min(int(analysis.get("minRequests", 50)), 50)
        out.append(doc)
    return out


def load_quickstart_data(cluster: Cluster, namespace: str, image: str, python: str) -> str:
    """The quickstart's CSVs (generated if missing) copied into the artifact claim, where
    Pods read them; returns the pvc:// prefix its Dataset sources are rewritten to."""
    data = QUICKSTART / "data"
    files = sorted(data.glob("*.csv"))
    if not files:
        subprocess.run([python, str(QUICKSTART / "generate_data.py")], check=True)
        files = sorted(data.glob("*.csv"))
    cluster.run("apply", "-f", "-", namespace=namespace, input=json.dumps(artifact_pvc()))
    pod = "quickstart-loader"
    cluster.run("apply", "-f", "-", namespace=namespace,
                input=json.dumps(loader_pod(pod, image)))  # fmt: skip
    cluster.wait("Ready", [f"pod/{pod}"], namespace, timeout=300)
    target = f"{PVC_MOUNT}/quickstart"
    cluster.run("exec", pod, "--", "mkdir", "-p", target, namespace=namespace)
    for path in files:
        cluster.run("cp", str(path), f"{namespace}/{pod}:{target}/{path.name}", timeout=300)
    cluster.run("delete", "pod", pod, "--wait=true", namespace=namespace)
    return DATA_PREFIX


def loader_pod(name: str, image: str) -> Manifest:
    """A pod that mounts the artifact PVC so that `kubectl cp` can fill it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "flywheel-e2e"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "loader",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "artifacts", "mountPath": PVC_MOUNT}],
                }
            ],
            "volumes": [
                {"name": "artifacts", "persistentVolumeClaim": {"claimName": ARTIFACT_CLAIM}}
            ],
        },
    }


def artifact_pvc(size: str = "5Gi") -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": ARTIFACT_CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


# Sends Open Inference Protocol v2 requests with quickstart-like feature rows until the
# deadline; run in-cluster by a Job, so the canary analysis sees real traffic.
TRAFFIC_SCRIPT = """
import json, math, os, random, time, urllib.request
url, deadline = os.environ["URL"], time.time() + float(os.environ["SECONDS"])
sent = failed = 0
while time.time() < deadline:
    charges, tenure = random.uniform(10, 200), random.randint(0, 2000)
    row = {"plan": random.choice(["basic", "standard", "premium"]),
           "monthly_charges": charges, "tenure_days": tenure,
           "log_charges": math.log1p(charges),
           "charges_per_tenure_month": charges / (tenure / 30 + 1),
           "support_calls_7d": random.randint(0, 5), "avg_charges_30d": charges}
    inputs = [{"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64",
               "data": [v]} for k, v in row.items()]
    body = json.dumps({"inputs": inputs}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=5).read()
    except Exception:
        failed += 1
    sent += 1
    time.sleep(0.05)
print(json.dumps({"sent": sent, "failed": failed}))
"""


def traffic_job(name: str, image: str, url: str, seconds: int) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "flywheel-e2e"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "traffic",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-c", TRAFFIC_SCRIPT],
                            "env": [
                                {"name": "URL", "value": url},
                                {"name": "SECONDS", "value": str(seconds)},
                            ],
                        }
                    ],
                }
            },
        },
    }
