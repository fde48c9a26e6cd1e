"""A TrainingJob trained for real, with the test playing KubeRay.

The operator makes the RayJob. The test does what KubeRay v1.5.0 does with it
(rayjob_controller.go): stands up the Ray cluster (a local Ray head on 127.0.0.1, its
environment standing in for the head Pod's: the claim's volume at $FLYWHEEL_PVC_ROOT),
writes `jobId` and `dashboardURL`, creates the submitter Job from `submitterPodTemplate`
with RAY_DASHBOARD_ADDRESS and RAY_JOB_SUBMISSION_ID added, and writes
`jobStatus` / `jobDeploymentStatus` from what the Ray dashboard says. The kubelet stand-in
runs the submitter Pod's real command; the submitter submits the RayJob's entrypoint to
that Ray; the entrypoint trains, evaluates and registers the model on the volume.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import entrypoints
from flywheel_operator.builders import trainingjob
from flywheel_operator.settings import Settings
from tests.cluster import Kubectl, kuberay, wait_for
from tests.cluster.controlplane import PLAYED_IMAGE
from tests.cluster.kubelet import Node, Run, run_pod, running_pod
from tests.integration.test_operator import Operator, condition, quickstart
from tests.integration.test_operator_runtime import (  # noqa: F401 (fixtures)
    CLAIM,
    run_job,
    runtime_operator,
)
from tests.unit.operator.conftest import model

# Ingest, materialization, a Ray job of 6 epochs and its retries, on 2 shared cores.
pytestmark = pytest.mark.timeout(1200)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayHead:
    """A Ray head on 127.0.0.1, as the RayJob's cluster: its dashboard serves job
    submission and logs, as the head Service's port 8265 does."""

    def __init__(self, volumes: Node) -> None:
        self.port, self.dashboard_port, self.agent_port = free_port(), free_port(), free_port()
        # Short: Ray's socket paths live under it (at most 107 bytes).
        self.temp_dir = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # The head Pod mounts the claim at <pvc root>/<claim>.
            "FLYWHEEL_PVC_ROOT": str(volumes.claim(CLAIM).parent),
            "RAY_USAGE_STATS_ENABLED": "0",
            # As a RayCluster without authOptions: no token on the dashboard (a token left
            # in this machine's ~/.ray would otherwise turn it on).
            "RAY_AUTH_MODE": "disabled",
            # A RayJob's cluster runs no Serve replicas to migrate: Ray's 30 s drain on
            # SIGTERM would only wait for a node that never turns idle (its agents hold
            # leases), as the stop of every test's head showed.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        }
        env.pop("RAY_ADDRESS", None)
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "ray"), "start", "--head", "--block",
             "--node-ip-address=127.0.0.1", f"--port={self.port}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
             f"--dashboard-agent-listen-port={self.agent_port}",
             "--include-dashboard=true", "--num-cpus=2", f"--temp-dir={self.temp_dir}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        # Ready as KubeRay's head readiness probe has it: the agent's raylet health and
        # the GCS's; KubeRay makes the submitter only then.
        wait_for(
            lambda: (
                self.healthy(f"127.0.0.1:{self.agent_port}", "/api/local_raylet_healthz")
                and self.healthy(self.address, "/api/gcs_healthz")
            ),
            what="the Ray head's agent and GCS healthy on 127.0.0.1",
            timeout=420,  # about a minute alone; far more on shared cores
        )

    @property
    def address(self) -> str:
        """What KubeRay writes to status.dashboardURL (host:port, no scheme)."""
        return f"127.0.0.1:{self.dashboard_port}"

    @staticmethod
    def healthy(address: str, path: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def job(self, job_id: str) -> dict[str, Any] | None:
        found = self.get(f"/api/jobs/{job_id}")
        return found if isinstance(found, dict) else None

    def stop(self) -> None:
        # `ray start --block` stops its own processes on SIGTERM; `ray stop` would stop
        # every Ray on this machine.
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def ray_head(node: Node) -> Iterator[RayHead]:
    began = time.monotonic()
    head = RayHead(node)
    print(f"Ray head ready in {time.monotonic() - began:.1f}s")
    try:
        yield head
    finally:
        began = time.monotonic()
        head.stop()
        print(f"Ray head stopped in {time.monotonic() - began:.1f}s")


class KubeRay:
    """KubeRay's part for one RayJob, one attempt at a time."""

    def __init__(self, kubectl: Kubectl, head: RayHead, volumes: Node, rayjob: dict[str, Any]):
        self.kubectl, self.head, self.node = kubectl, head, volumes
        self.name = rayjob["metadata"]["name"]
        self.rayjob = rayjob
        self.failed = 0

    def status(self, **fields: Any) -> None:
        self.kubectl.run(
            "patch", "rayjob", self.name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": fields}),
        )  # fmt: skip

    def start_attempt(self) -> str:
        """Initializing: a job id, the dashboard URL, the submitter Job."""
        job_id = f"{self.name}-{secrets.token_hex(4)}"
        self.status(
            jobDeploymentStatus="Initializing",
            jobId=job_id,
            dashboardURL=self.head.address,
            rayClusterName=f"{self.name}-raycluster",
        )
        template = json.loads(json.dumps(self.rayjob["spec"]["submitterPodTemplate"]))
        container = template["spec"]["containers"][0]
        container["env"] = [
            *container.get("env", []),
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {"name": "RAY_DASHBOARD_ADDRESS", "value": self.head.address},
            {"name": "RAY_JOB_SUBMISSION_ID", "value": job_id},
        ]
        uid = self.kubectl.get("rayjob", self.name)["metadata"]["uid"]
        self.kubectl.create(json.dumps({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": self.name, "ownerReferences": [{
                "apiVersion": "ray.io/v1", "kind": "RayJob", "name": self.name, "uid": uid,
                "controller": True}]},
            "spec": {"backoffLimit": 2, "template": template},
        }))  # fmt: skip
        return job_id

    def run_submitter(self) -> list[Run]:
        """The kubelet's part: every Pod of the submitter Job until the Job is done."""
        runs: list[Run] = []
        while True:
            job = self.kubectl.get("job", self.name)
            done = {c["type"] for c in job.get("status", {}).get("conditions", [])
                    if c["status"] == "True"} & {"Complete", "Failed"}  # fmt: skip
            if done:
                return runs
            pod = running_pod(self.kubectl, self.name, timeout=90)
            runs.append(run_pod(self.kubectl, pod, self.node))
            # Shown with a failure: why a submitter Pod ended as it did.
            print(f"submitter pod exit {runs[-1].exit_code}:\n{runs[-1].log[-2000:]}")
            wait_for(
                lambda: self.kubectl.get("job", self.name).get("status", {}),
                lambda s: s.get("failed", 0) + s.get("succeeded", 0) >= len(runs),
                what=f"the Job controller saw {len(runs)} submitter pod(s) end",
            )

    def finish_attempt(self, job_id: str, backoff_limit: int) -> str:
        """What KubeRay writes once the submitter Job is done and the Ray job ended."""
        info = self.head.job(job_id) or {}
        job_status = info.get("status", "")
        submitter = self.kubectl.get("job", self.name)
        failed_job = any(c["type"] == "Failed" and c["status"] == "True"
                         for c in submitter.get("status", {}).get("conditions", []))  # fmt: skip
        if job_status == "SUCCEEDED" and not failed_job:
            self.status(jobStatus="SUCCEEDED", jobDeploymentStatus="Complete",
                        succeeded=1, failed=self.failed)  # fmt: skip
            return "Complete"
        self.failed += 1
        if self.failed < backoff_limit + 1:  # checkBackoffLimitAndUpdateStatusIfNeeded
            self.status(jobStatus=job_status or "FAILED", jobDeploymentStatus="Retrying",
                        failed=self.failed, reason="AppFailed")  # fmt: skip
            return "Retrying"
        self.status(
            jobStatus=job_status or "FAILED",
            jobDeploymentStatus="Failed",
            failed=self.failed,
            reason="AppFailed",
            message=info.get("message", ""),
        )
        return "Failed"

    def retry(self) -> None:
        """Retrying -> New: the submitter Job and cluster go, the job id is cleared."""
        self.kubectl.delete("job", self.name, "--cascade=foreground")
        self.status(jobDeploymentStatus="", jobStatus="", jobId="", dashboardURL="")


def prepare_inputs(kubectl: Kubectl, node: Node) -> None:
    """Data on the volume, both Datasets ingested and the FeatureView materialized by
    their real runtime Pods."""
    subprocess.run(
        [sys.executable, str(ROOT / "examples/quickstart/generate_data.py"), "--customers",
         "300", "--out", str(node.claim(CLAIM) / "data")],
        check=True, capture_output=True,
    )  # fmt: skip
    docs = []
    for name, file in (("customer-events", "customer_events"), ("churn-labels", "churn_labels")):
        ds = quickstart("Dataset", name)
        ds["spec"]["source"]["uri"] = f"pvc://{CLAIM}/data/{file}.csv"
        docs.append(ds)
    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    kubectl.apply(yaml.safe_dump_all([*docs, fv]))
    for job in wait_for(lambda: kubectl.items("job"), lambda j: len(j) == 2, what="ingests"):
        assert run_job(kubectl, job, node).exit_code == 0
    [materialize] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="the materialization Job",
        timeout=90,
    )
    assert run_job(kubectl, materialize, node).exit_code == 0
    kubectl.wait("--for=condition=Ready", "featureview/customer-features", timeout=60)


def trainingjob_manifest(**spec: Any) -> dict[str, Any]:
    tj = quickstart("TrainingJob", "churn-logistic")
    tj["spec"]["scaling"] = {"numWorkers": 1, "resourcesPerWorker": {"cpu": "1", "memory": "1Gi"}}
    tj["spec"]["hyperparameters"]["epochs"] = 6
    tj["spec"].update(spec)
    return tj


def rebuilt(kubectl: Kubectl, live: dict[str, Any]) -> dict[str, Any]:
    """The builder's RayJob for the live TrainingJob, with the operator's settings and the
    inputs it recorded in the runtime env."""
    owner = kubectl.get("trainingjob", "churn-logistic")
    env = yaml.safe_load(live["spec"]["runtimeEnvYAML"])["env_vars"]
    settings = Settings(runtime_image=PLAYED_IMAGE, artifact_root=f"pvc://{CLAIM}/")
    return trainingjob.build(
        owner,
        model(owner),
        settings,
        json.loads(env[entrypoints.INPUTS_ENV]),
        json.loads(env[entrypoints.INPUT_MANIFESTS_ENV]),
    )


def test_a_trainingjob_trains_on_ray_and_reports_its_model_version(
    kuberay_crds: None, runtime_operator: Operator, kubectl: Kubectl, node: Node,  # noqa: F811
    ray_head: RayHead,
) -> None:  # fmt: skip
    prepare_inputs(kubectl, node)
    kubectl.apply(yaml.safe_dump(trainingjob_manifest()))
    rayjob = wait_for(lambda: kubectl.items("rayjob"), what="the RayJob")[0]
    assert kuberay.pruned(rebuilt(kubectl, rayjob), rayjob) == []

    ray = KubeRay(kubectl, ray_head, node, rayjob)
    job_id = ray.start_attempt()
    runs: list[Run] = []
    submitter = threading.Thread(target=lambda: runs.extend(ray.run_submitter()))
    submitter.start()
    try:
        # KubeRay: RUNNING once the dashboard knows the job.
        wait_for(lambda: (ray_head.job(job_id) or {}).get("status"),
                 lambda s: s in ("RUNNING", "SUCCEEDED", "FAILED"),
                 what="the Ray job submitted", timeout=180)  # fmt: skip
        ray.status(jobStatus="RUNNING", jobDeploymentStatus="Running")
        # The operator reads the Ray job's log through dashboardURL: the Progress column.
        tj = wait_for(
            lambda: kubectl.get("trainingjob", "churn-logistic"),
            lambda o: (o.get("status", {}).get("progress") or "").startswith("epoch 6/6"),
            what="the TrainingJob showing the last epoch while the RayJob runs",
            timeout=300,
            summary=lambda o: o.get("status"),
        )
        assert tj["status"]["phase"] == "Running"
    finally:
        submitter.join(timeout=600)
    assert [r.exit_code for r in runs] == [0], [r.log[-3000:] for r in runs]
    info = ray_head.job(job_id) or {}
    # The submitter submitted the RayJob's own entrypoint and runtime environment.
    assert info["entrypoint"] == rayjob["spec"]["entrypoint"]
    env_vars = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])["env_vars"]
    assert info["runtime_env"]["env_vars"] == env_vars
    assert ray.finish_attempt(job_id, rayjob["spec"]["backoffLimit"]) == "Complete"

    kubectl.wait("--for=condition=Succeeded", "trainingjob/churn-logistic", timeout=60)
    status = kubectl.get("trainingjob", "churn-logistic")["status"]
    result = json.loads(runs[0].message)
    assert status["modelVersion"] == result["modelVersion"]
    assert status["metrics"] == result["metrics"] and 0.0 <= status["metrics"]["auc"] <= 1.0
    # The version is in the registry on the volume, where the Ray job wrote it.
    registry = node.claim(CLAIM) / "models" / "churn" / "versions" / status["modelVersion"]
    assert (registry / "metrics.json").is_file(), sorted(registry.parent.glob("*"))


def test_a_failed_gate_is_not_retried_and_a_broken_run_is_retried_per_backoff_limit(
    kuberay_crds: None, runtime_operator: Operator, kubectl: Kubectl, node: Node,  # noqa: F811
    ray_head: RayHead,
) -> None:  # fmt: skip
    prepare_inputs(kubectl, node)
    gated = trainingjob_manifest(backoffLimit=2)
    gated["spec"]["evaluation"]["gates"] = [{"metric": "auc", "min": 0.999}]
    kubectl.apply(yaml.safe_dump(gated))
    rayjob = wait_for(lambda: kubectl.items("rayjob"), what="the RayJob")[0]
    ray = KubeRay(kubectl, ray_head, node, rayjob)
    job_id = ray.start_attempt()
    runs = ray.run_submitter()
    # The gate's verdict is a finished Ray job and a submitter that exits 0: no retry.
    assert [r.exit_code for r in runs] == [0], [r.log[-3000:] for r in runs]
    assert ray.finish_attempt(job_id, 2) == "Complete"
    tj = wait_for(
        lambda: kubectl.get("trainingjob", "churn-logistic"),
        lambda o: o.get("status", {}).get("phase") == "Failed",
        what="the TrainingJob Failed",
        timeout=60,
    )
    cond = condition(tj, "Succeeded")
    assert cond["reason"] == "GateFailed" and "auc" in cond["message"], cond

    # A run that breaks (a model parameter the model does not take) is retried.
    kubectl.run("delete", "trainingjob", "churn-logistic", "--wait=true")
    wait_for(lambda: kubectl.items("rayjob"), lambda r: not r, what="the RayJob gone",
             timeout=120)  # fmt: skip
    broken = trainingjob_manifest(backoffLimit=1)
    broken["spec"]["model"] = {"type": "logistic", "params": {"no_such_param": 1}}
    kubectl.apply(yaml.safe_dump(broken))
    rayjob = wait_for(lambda: kubectl.items("rayjob"), what="the new RayJob")[0]
    ray = KubeRay(kubectl, ray_head, node, rayjob)
    outcomes = []
    for _ in range(2):
        job_id = ray.start_attempt()
        runs = ray.run_submitter()
        assert runs and all(r.exit_code != 0 for r in runs), [r.log[-2000:] for r in runs]
        outcomes.append(ray.finish_attempt(job_id, 1))
        if outcomes[-1] == "Retrying":
            # Not finished while KubeRay retries.
            tj = wait_for(
                lambda: kubectl.get("trainingjob", "churn-logistic"),
                lambda o: "retrying" in condition(o, "Succeeded").get("message", ""),
                what="the TrainingJob waiting for the retry",
                timeout=60,
            )
            assert tj["status"]["phase"] == "Pending"
            ray.retry()
    assert outcomes == ["Retrying", "Failed"]
    tj = wait_for(
        lambda: kubectl.get("trainingjob", "churn-logistic"),
        lambda o: o.get("status", {}).get("phase") == "Failed",
        what="the TrainingJob Failed after its retries",
        timeout=60,
    )
    cond = condition(tj, "Succeeded")
    assert cond["reason"] != "GateFailed" and cond["message"], cond
