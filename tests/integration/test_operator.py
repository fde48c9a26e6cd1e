"""The operator against the real local API server.

The operator runs as users run it (`python -m flywheel_operator`), watching the test's
namespace. The tests play the parts no real process plays here: kwok runs Pods to
completion, and the tests write what a runtime would report (the termination message of
a Pod) and what KubeRay would (RayJob / RayService status, under KubeRay's own CRDs).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import ControlPlane, Kubectl, crds_restored, kuberay, wait_for

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
INVALID = ROOT / "tests" / "manifests" / "invalid"


def quickstart(kind: str, name: str) -> dict[str, Any]:
    for path in sorted(QUICKSTART.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return dict(doc)
    raise KeyError(f"{kind}/{name}")


class Operator:
    def __init__(self, log: Path, metrics_port: int) -> None:
        self.log = log
        self.metrics_port = metrics_port

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def reconciles(self, kind: str) -> int:
        """Reconciles of objects of this kind finished so far, from the operator's metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        prefix = f'flywheel_reconcile_seconds_count{{kind="{kind}"}} '
        return sum(int(float(line[len(prefix) :])) for line in text.splitlines()
                   if line.startswith(prefix))  # fmt: skip

    def api_calls(self) -> int:
        """Requests the operator made to the API server so far (reads and writes)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        prefix = "flywheel_api_request_seconds_count{"
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith(prefix))  # fmt: skip

    def wait_for_reconciles(self, kind: str, count: int, timeout: float = 60) -> None:
        """Until `count` more reconciles of `kind` have finished than now."""
        start = self.reconciles(kind)
        wait_for(
            lambda: self.reconciles(kind) - start,
            lambda done: done >= count,
            what=f"{count} reconciles of {kind}",
            timeout=timeout,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_operator(
    control_plane: ControlPlane,
    namespace: str,
    log: Path,
    artifact_root: str,
    runtime_image: str = "flywheel/runtime:test",
    extra_env: dict[str, str] | None = None,
) -> Iterator[Operator]:
    """`python -m flywheel_operator` watching one namespace, resyncing every second, its
    metrics on a loopback port."""
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "FLYWHEEL_RESYNC_SECONDS": "1",
        "FLYWHEEL_RUNTIME_IMAGE": runtime_image,
        "FLYWHEEL_ARTIFACT_ROOT": artifact_root,
        **(extra_env or {}),
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flywheel_operator",
                "--standalone",
                "--namespace",
                namespace,
                f"--metrics-port={port}",
                "--metrics-address=127.0.0.1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    op = Operator(log, port)
    try:
        yield op
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)  # reaped: no process left running behind the test
        print(f"operator log tail:\n{op.tail()}")  # shown by pytest when the test fails


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, flywheel_crds: list[str], tmp_path: Path
) -> Iterator[Operator]:
    # A node-local root: a PVC root would need a volume provisioner to schedule Pods.
    with running_operator(
        control_plane, namespace, tmp_path / "operator.log", "file:///var/lib/flywheel/"
    ) as op:
        yield op


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def wait_condition(
    kubectl: Kubectl, ref: str, type_: str, status: str = "True", timeout: float = 60
) -> dict[str, Any]:
    kind, name = ref.split("/")
    obj: dict[str, Any] = wait_for(
        lambda: kubectl.get(kind, name),
        lambda o: condition(o, type_).get("status") == status,
        what=f"{ref} condition {type_}={status}",
        timeout=timeout,
    )
    return obj


def report(kubectl: Kubectl, job_name: str, result: dict[str, Any]) -> None:
    """What the runtime does at the end of a run: its result as the termination message."""
    pods = wait_for(
        lambda: kubectl.items("pod", "-l", f"batch.kubernetes.io/job-name={job_name}"),
        lambda items: any(
            (cs.get("state") or {}).get("terminated")
            for p in items
            for cs in p.get("status", {}).get("containerStatuses", [])
        ),
        what=f"a terminated pod of job {job_name}",
    )
    pod = pods[0]["metadata"]["name"]
    patch = [
        {
            "op": "add",
            "path": "/status/containerStatuses/0/state/terminated/message",
            "value": json.dumps(result),
        }
    ]
    kubectl.run("patch", "pod", pod, "--subresource=status", "--type=json", "-p", json.dumps(patch))


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    return any(
        r["uid"] == owner["metadata"]["uid"] and r["controller"]
        for r in obj["metadata"]["ownerReferences"]
    )


def assert_restricted(pod_spec: dict[str, Any]) -> None:
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in pod_spec["containers"] + pod_spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]


def columns(kubectl: Kubectl, kind: str) -> dict[str, str]:
    """`kubectl get <kind>` of one object as {COLUMN: value}."""
    header, row = kubectl.run("get", kind).stdout.splitlines()[:2]
    starts = [header.index(h) for h in header.split()]
    cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return dict(zip(header.split(), cells, strict=True))


# --- each kind --------------------------------------------------------------------------


def test_dataset_job_result_status_and_garbage_collection(
    operator: Operator, kubectl: Kubectl
) -> None:
    kubectl.apply(yaml.safe_dump(quickstart("Dataset", "churn-labels")))
    ds = kubectl.get("dataset", "churn-labels")
    job = wait_for(lambda: kubectl.items("job"), lambda j: len(j) == 1, what="the ingest Job")[0]
    assert owned_by(job, ds)
    assert job["metadata"]["labels"]["flywheel.dev/dataset"] == "churn-labels"
    assert_restricted(job["spec"]["template"]["spec"])
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["dataset", "ingest"]

    result = {
        "version": "sha256-5f1e",
        "rows": 12000,
        "bytes": 90210,
        "badRows": 0,
        "snapshotUri": "pvc://flywheel-artifacts/datasets/churn-labels/sha256-5f1e/",
    }
    report(kubectl, job["metadata"]["name"], result)
    kubectl.wait("--for=condition=Ready", "dataset/churn-labels", timeout=60)
    ds = kubectl.get("dataset", "churn-labels")
    assert ds["status"]["version"] == "sha256-5f1e" and ds["status"]["observedGeneration"] == 1
    assert columns(kubectl, "dataset") | {"AGE": ""} == {
        "NAME": "churn-labels",
        "PHASE": "Ready",
        "VERSION": "sha256-5f1e",
        "ROWS": "12000",
        "AGE": "",
    }
    events = kubectl.items("events", "--field-selector", "involvedObject.name=churn-labels")
    assert any(e["reason"] == "Ready" for e in events)

    kubectl.run("delete", "dataset", "churn-labels")
    # The garbage collector learns of new CRDs by periodic discovery (30 s): allow two rounds.
    wait_for(
        lambda: kubectl.items("job"), lambda j: not j, what="the Job garbage-collected", timeout=90
    )


def test_a_reconcile_with_nothing_to_change_makes_no_api_call(
    operator: Operator, kubectl: Kubectl
) -> None:
    """Owners and children come from the watches; a child that carries its desired hash
    is not applied again, an unchanged status is not written: the resyncs (every second
    here) of a settled Dataset read nothing from the API and write nothing."""
    kubectl.apply(yaml.safe_dump(quickstart("Dataset", "churn-labels")))
    job = wait_for(lambda: kubectl.items("job"), lambda j: len(j) == 1, what="the ingest Job")[0]
    report(kubectl, job["metadata"]["name"], {"version": "v1", "rows": 10})
    kubectl.wait("--for=condition=Ready", "dataset/churn-labels", timeout=60)
    kubectl.wait("--for=condition=Complete", f"job/{job['metadata']['name']}", timeout=60)
    operator.wait_for_reconciles("Dataset", 1)  # whatever the Job's completion caused
    calls = operator.api_calls()
    operator.wait_for_reconciles("Dataset", 3)
    assert operator.api_calls() == calls


def test_featureview_waits_for_its_dataset_then_materializes(
    operator: Operator, kubectl: Kubectl
) -> None:
    kubectl.apply(
        yaml.safe_dump_all(
            [
                quickstart("Dataset", "customer-events"),
                quickstart("FeatureView", "customer-features"),
            ]
        )
    )
    fv = wait_condition(kubectl, "featureview/customer-features", "Progressing", "False")
    assert condition(fv, "Ready")["reason"] == "WaitingForDependencies"
    assert "Dataset/customer-events" in condition(fv, "Ready")["message"]
    [ingest] = wait_for(lambda: kubectl.items("job"), lambda j: len(j) == 1, what="ingest Job")
    report(kubectl, ingest["metadata"]["name"], {"version": "v7", "rows": 192000, "badRows": 960})

    jobs = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="the materialization Job",
    )
    cron = kubectl.items("cronjob")
    assert [c["spec"]["schedule"] for c in cron] == ["0 * * * *"]
    inputs = {
        e["name"]: e["value"] for e in jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert json.loads(inputs["FLYWHEEL_INPUTS"])["Dataset/customer-events"]["version"] == "v7"
    report(
        kubectl,
        jobs[0]["metadata"]["name"],
        {"onlineRows": 4000, "lastMaterialized": "2026-05-01T12:00:00Z", "offlineVersion": "o1"},
    )
    kubectl.wait("--for=condition=Ready", "featureview/customer-features", timeout=60)
    assert columns(kubectl, "featureview")["ONLINE-ROWS"] == "4000"


def test_trainingjob_runs_as_a_rayjob(
    operator: Operator, kubectl: Kubectl, kuberay_crds: None
) -> None:
    for kind, name in (("Dataset", "customer-events"), ("Dataset", "churn-labels")):
        kubectl.apply(yaml.safe_dump(quickstart(kind, name)))
    for job in wait_for(lambda: kubectl.items("job"), lambda j: len(j) == 2, what="ingest Jobs"):
        report(kubectl, job["metadata"]["name"], {"version": "v1", "rows": 10})
    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    kubectl.apply(yaml.safe_dump(fv))
    [mat] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        what="materialize",
    )
    report(kubectl, mat["metadata"]["name"], {"lastMaterialized": "2026-05-01T00:00:00Z"})
    tj = quickstart("TrainingJob", "churn-mlp")
    tj["spec"]["scaling"]["resourcesPerWorker"].update(gpu=1, gpuType="NVIDIA-A10G")
    kubectl.apply(yaml.safe_dump(tj))

    rayjob = wait_for(lambda: kubectl.items("rayjob"), what="the RayJob")[0]
    assert owned_by(rayjob, kubectl.get("trainingjob", "churn-mlp"))
    worker = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert worker["replicas"] == 2
    assert (
        worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    )
    assert_restricted(worker["template"]["spec"])

    # KubeRay's part: a submitter Job of the RayJob's name, then the RayJob's status.
    name = rayjob["metadata"]["name"]
    submitter = rayjob["spec"]["submitterPodTemplate"]
    kubectl.create(
        json.dumps(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name},
                "spec": {"template": submitter},
            }
        )
    )
    status = {"status": {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}}
    kubectl.run(
        "patch", "rayjob", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    wait_condition(kubectl, "trainingjob/churn-mlp", "Running")
    report(
        kubectl,
        name,
        {
            "modelVersion": "churn-mlp-1",
            "artifactUri": "s3://m/models/churn/churn-mlp-1",
            "metrics": {"auc": 0.81},
            "primaryMetric": "auc=0.810",
            "progress": "30/30 epochs",
        },
    )
    status = {"status": {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}}
    kubectl.run(
        "patch", "rayjob", name, "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    kubectl.wait("--for=condition=Succeeded", "trainingjob/churn-mlp", timeout=60)
    cols = columns(kubectl, "trainingjob")
    assert (cols["PHASE"], cols["METRIC"], cols["MODEL-VERSION"]) == (
        "Succeeded",
        "auc=0.810",
        "churn-mlp-1",
    )


def test_modeldeployment_on_rayserve_canary(
    operator: Operator, kubectl: Kubectl, kuberay_crds: None
) -> None:
    md = quickstart("ModelDeployment", "churn")
    md["spec"]["stable"] = {"modelName": "churn", "version": "v1"}
    md["spec"]["candidate"] = {"modelName": "churn", "version": "v2"}
    kubectl.apply(yaml.safe_dump(md))
    svc = wait_for(lambda: kubectl.items("rayservice"), what="the RayService")[0]
    apps = {a["name"]: a for a in yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"]}
    assert sorted(apps) == ["churn", "churn-v1", "churn-v2"]  # the router, one per version
    # The candidate's application is not RUNNING yet: it is deployed with no weight.
    assert apps["churn"]["deployments"][0]["user_config"]["traffic"] == {"v1": 100.0, "v2": 0.0}
    # KubeRay reports every application RUNNING: the first step's weight goes out.
    running = {name: {"status": "RUNNING"} for name in apps}
    patch = {
        "status": {
            "activeServiceStatus": {"applicationStatuses": running},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ServeApplicationsReady",
                    "lastTransitionTime": "2026-05-01T00:00:00Z",
                    "message": "",
                }
            ],
        }
    }
    kubectl.run(
        "patch",
        "rayservice",
        svc["metadata"]["name"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    kubectl.wait("--for=condition=Ready", "md/churn", timeout=60)
    wait_for(
        lambda: columns(kubectl, "md")["TRAFFIC"],
        lambda traffic: traffic == "v1=90 v2=10",
        what="the first step's weight once the candidate runs",
        timeout=60,
    )
    cols = columns(kubectl, "md")
    assert {
        k: cols[k] for k in ("PHASE", "STABLE", "CANDIDATE", "STRATEGY", "TRAFFIC", "STEP")
    } == {
        "PHASE": "Progressing",
        "STABLE": "v1",
        "CANDIDATE": "v2",
        "STRATEGY": "canary",
        "TRAFFIC": "v1=90 v2=10",
        "STEP": "1/3",
    }
    # No router metrics: the analysis is inconclusive and never promotes.
    md_obj = kubectl.get("md", "churn")
    assert md_obj["status"]["lastAnalysis"]["decision"] == "Inconclusive"
    assert condition(md_obj, "Promoted")["status"] == "False"


def test_modeldeployment_on_triton(operator: Operator, kubectl: Kubectl) -> None:
    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {
        "backend": "triton",
        "stable": {"modelName": "churn", "version": "v1"},
        "triton": {"instanceCount": 2, "maxBatchSize": 16},
    }
    kubectl.apply(yaml.safe_dump(md))
    deployments = wait_for(
        lambda: kubectl.items("deployment"), lambda d: len(d) == 2, what="deployments"
    )
    assert sorted(d["metadata"]["name"] for d in deployments) == ["churn-router", "churn-v1"]
    for d in deployments:
        assert_restricted(d["spec"]["template"]["spec"])
    assert {s["metadata"]["name"] for s in kubectl.items("service")} == {"churn", "churn-v1"}
    config = kubectl.get("configmap", "churn-v1-config")["data"]["serving.pbtxt"]
    assert "count: 2 kind: KIND_CPU" in config
    # kwok runs the pods; the Deployments become available and the deployment Ready.
    kubectl.wait("--for=condition=Ready", "md/churn", timeout=90)
    assert columns(kubectl, "md")["TRAFFIC"] == "v1=100"


def test_driftmonitor_detects_drift_and_triggers_one_retrain(
    operator: Operator, kubectl: Kubectl, kuberay_crds: None
) -> None:
    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {"backend": "triton", "stable": {"modelName": "churn", "version": "v1"}}
    dm = quickstart("DriftMonitor", "churn-drift")
    dm["spec"]["reference"] = {"datasetRef": {"name": "churn-labels"}}
    # Short: a second retrain for the same run must be refused by more than the cooldown.
    dm["spec"]["action"]["retrain"]["cooldown"] = "1s"
    kubectl.apply(yaml.safe_dump_all([quickstart("Dataset", "churn-labels"), md, dm]))
    [ingest] = wait_for(lambda: kubectl.items("job"), what="ingest Job")
    report(kubectl, ingest["metadata"]["name"], {"version": "v1", "rows": 1})
    wait_for(lambda: kubectl.items("cronjob"), what="the monitor CronJob")
    kubectl.wait("--for=condition=Ready", "dm/churn-drift", timeout=60)
    kubectl.run("create", "job", "churn-drift-manual", "--from=cronjob/churn-drift-monitor")
    report(
        kubectl,
        "churn-drift-manual",
        {
            "lastRun": "2026-05-01T00:10:00Z",
            "samples": 2000,
            "driftedFeatures": ["plan"],
            "maxScore": 0.41,
            "scores": [
                {
                    "feature": "plan",
                    "method": "chi2",
                    "score": 0.999,
                    "threshold": 0.99,
                    "drifted": True,
                }
            ],
        },
    )
    dm_obj = wait_condition(kubectl, "dm/churn-drift", "DriftDetected")
    retrain = wait_for(lambda: kubectl.items("trainingjob"), what="the retrain TrainingJob")
    assert [t["metadata"]["name"] for t in retrain] == ["churn-drift-retrain-1"]
    assert owned_by(retrain[0], dm_obj)
    # Several resyncs well past the cooldown: the run that triggered a retrain triggers no other.
    operator.wait_for_reconciles("DriftMonitor", 4)
    assert len(kubectl.items("trainingjob")) == 1
    assert kubectl.get("dm", "churn-drift")["status"]["retrainsTriggered"] == 1


def test_entity_lookups_wait_for_the_feature_view(operator: Operator, kubectl: Kubectl) -> None:
    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {
        "backend": "triton",
        "stable": {"modelName": "churn", "version": "v1"},
        "featureViewRef": {"name": "customer-features"},
    }
    kubectl.apply(yaml.safe_dump(md))
    obj = wait_condition(kubectl, "md/churn", "Ready", "False")
    assert "FeatureView" in condition(obj, "Ready")["message"]
    assert kubectl.items("deployment") == []  # no router without its online store


def test_a_serving_version_reference_waits_for_no_reference_object(
    operator: Operator, kubectl: Kubectl
) -> None:
    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {"backend": "triton", "stable": {"modelName": "churn", "version": "v1"}}
    dm = quickstart("DriftMonitor", "churn-drift")
    assert dm["spec"]["reference"] == {"servingVersion": {}}  # the quickstart's, as written
    kubectl.apply(yaml.safe_dump_all([md, dm]))
    # The empty object is kept by the API server (not pruned), and the monitor runs: the
    # version it compares with is found per run, from the request log.
    assert kubectl.get("dm", "churn-drift")["spec"]["reference"] == {"servingVersion": {}}
    [cron] = wait_for(lambda: kubectl.items("cronjob"), what="the monitor CronJob")
    env = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    inputs = next(e["value"] for e in env if e["name"] == "FLYWHEEL_INPUT_MANIFESTS")
    assert '"ModelDeployment"' in inputs


# --- failure paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["12-bad-cron-field", "21-regex-does-not-compile", "28-unsafe-expression"]
)
def test_spec_the_schema_allows_but_the_models_reject_is_reported(
    operator: Operator, kubectl: Kubectl, case: str
) -> None:
    text = (INVALID / f"{case}.yaml").read_text()
    doc = yaml.safe_load(text)
    kubectl.apply(text)
    ref = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
    kind_top = "Ready"
    obj = wait_condition(kubectl, ref, kind_top, "False")
    cond = condition(obj, kind_top)
    assert cond["reason"] == "InvalidSpec", cond
    assert obj["status"]["phase"] == "InvalidSpec"
    assert cond["message"].startswith("spec.")


def test_without_kuberay_training_and_rayserve_say_how_to_install_it(
    no_kuberay_crds: None, operator: Operator, kubectl: Kubectl
) -> None:
    md = quickstart("ModelDeployment", "churn")
    md["spec"]["stable"] = {"modelName": "churn", "version": "v1"}
    md["spec"]["candidate"] = {"modelName": "churn", "version": "v2"}
    kubectl.apply(yaml.safe_dump_all([quickstart("TrainingJob", "churn-mlp"), md]))
    for ref, top in (("trainingjob/churn-mlp", "Succeeded"), ("md/churn", "Ready")):
        cond = condition(wait_condition(kubectl, ref, top, "False"), top)
        assert (
            cond["reason"] == "KubeRayNotInstalled"
            and "helm install kuberay-operator" in cond["message"]
        )


def test_a_child_the_api_refuses_is_apply_failed_until_it_is_allowed(
    operator: Operator, kubectl: Kubectl
) -> None:
    # The namespace's quota allows no Job: the API refuses the ingest Job (403 Forbidden),
    # as it would for a quota, an admission policy or RBAC.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-jobs"},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }
    kubectl.apply(json.dumps(quota))
    kubectl.apply(yaml.safe_dump(quickstart("Dataset", "churn-labels")))
    obj = wait_condition(kubectl, "dataset/churn-labels", "Ready", "False")
    cond = condition(obj, "Ready")
    assert cond["reason"] == "ApplyFailed" and obj["status"]["phase"] == "ApplyFailed", cond
    assert "Forbidden" in cond["message"] and "no-jobs" in cond["message"], cond
    assert not kubectl.items("job")
    events = kubectl.items("event", "--field-selector", "involvedObject.name=churn-labels")
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "ApplyFailed")]
    # Not for good: once the quota goes, a resync applies the Job.
    kubectl.delete("resourcequota", "no-jobs")
    wait_for(lambda: kubectl.items("job"), what="the ingest Job once allowed")
    wait_for(
        lambda: kubectl.get("dataset", "churn-labels"),
        lambda o: o["status"]["phase"] != "ApplyFailed",
        what="dataset/churn-labels past ApplyFailed",
        summary=lambda o: o.get("status"),
    )


@pytest.fixture
def lenient_crds(cluster_kubectl: Kubectl) -> Iterator[None]:
    """TrainingJob and ModelDeployment CRDs whose spec takes anything, as a CRD of an older
    release might: only the operator's models stand between a bad spec and its work."""
    names = ("trainingjobs.flywheel.dev", "modeldeployments.flywheel.dev")
    with crds_restored(cluster_kubectl, names):
        for name in names:
            crd = cluster_kubectl.get("crd", name)
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schema["properties"]["spec"] = {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                }
                schema.pop("x-kubernetes-validations", None)
            cluster_kubectl.run("replace", "-f", "-", input=json.dumps(crd))
            cluster_kubectl.wait("--for=condition=Established", f"crd/{name}", timeout=60)
        yield


@pytest.mark.parametrize(
    ("case", "top"),
    [
        ("24-custom-model-without-import-path", "Succeeded"),
        ("35-min-replicas-over-max", "Ready"),
        ("04-canary-weights-not-increasing", "Ready"),
    ],
)
def test_invalid_trainingjob_and_modeldeployment_specs_are_reported(
    lenient_crds: None, operator: Operator, kubectl: Kubectl, case: str, top: str
) -> None:
    text = (INVALID / f"{case}.yaml").read_text()
    expected = text.splitlines()[0].removeprefix("# expect:").strip()
    doc = list(yaml.safe_load_all(text))[-1]
    kubectl.apply(yaml.safe_dump(doc))
    ref = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
    obj = wait_condition(kubectl, ref, top, "False")
    cond = condition(obj, top)
    assert cond["reason"] == "InvalidSpec" and obj["status"]["phase"] == "InvalidSpec", cond
    assert cond["message"].startswith("spec.") and expected in cond["message"], cond
    # Nothing was built from the bad spec.
    assert not kubectl.items("job") and not kubectl.items("deployment")


def test_kuberay_installed_after_the_operator_started(
    no_kuberay_crds: None, operator: Operator, kubectl: Kubectl, cluster_kubectl: Kubectl
) -> None:
    md = quickstart("ModelDeployment", "churn")
    md["spec"]["stable"] = {"modelName": "churn", "version": "v1"}
    md["spec"]["candidate"] = {"modelName": "churn", "version": "v2"}
    kubectl.apply(yaml.safe_dump(md))
    cond = condition(wait_condition(kubectl, "md/churn", "Ready", "False"), "Ready")
    assert cond["reason"] == "KubeRayNotInstalled", cond
    kuberay.install(cluster_kubectl)  # no_kuberay_crds removes them again afterwards
    # A later reconcile finds KubeRay (the operator caches the answer for 30 s) and builds
    # the RayService; no restart needed.
    wait_for(
        lambda: kubectl.get("md", "churn"),
        lambda o: condition(o, "Ready").get("reason") != "KubeRayNotInstalled",
        what="md/churn past KubeRayNotInstalled",
        timeout=90,
        summary=lambda o: o.get("status"),
    )
    wait_for(
        lambda: (kubectl.items("rayservice"), kubectl.get("md", "churn").get("status")),
        lambda seen: bool(seen[0]),
        what="the RayService",
        timeout=30,
    )


def test_a_spec_update_replaces_the_run_and_prunes_what_is_no_longer_desired(
    operator: Operator, kubectl: Kubectl
) -> None:
    ds = quickstart("Dataset", "churn-labels")
    ds["spec"]["refresh"] = {"schedule": "0 * * * *"}
    kubectl.apply(yaml.safe_dump(ds))
    [first] = wait_for(lambda: kubectl.items("job"), what="the first ingest Job")
    assert [c["metadata"]["name"] for c in kubectl.items("cronjob")] == ["churn-labels-refresh"]
    report(kubectl, first["metadata"]["name"], {"version": "v1", "rows": 10})
    kubectl.wait("--for=condition=Ready", "dataset/churn-labels", timeout=60)

    # A new policy and no refresh: a new ingest Job; the old Job and the CronJob go.
    ds["spec"]["validation"] = {"onError": "quarantine", "maxBadRowFraction": 0.1}
    del ds["spec"]["refresh"]
    kubectl.apply(yaml.safe_dump(ds))
    [second] = wait_for(
        lambda: kubectl.items("job"),
        lambda jobs: (
            [j["metadata"]["name"] for j in jobs] != [first["metadata"]["name"]] and len(jobs) == 1
        ),
        what="the old ingest Job replaced by a new one",
        timeout=60,
        summary=lambda jobs: [j["metadata"]["name"] for j in jobs],
    )
    assert second["metadata"]["name"].startswith("churn-labels-ingest-")
    wait_for(lambda: kubectl.items("cronjob"), lambda c: not c, what="the CronJob pruned")
    report(kubectl, second["metadata"]["name"], {"version": "v2", "rows": 20})
    obj = wait_for(
        lambda: kubectl.get("dataset", "churn-labels"),
        lambda o: (
            o.get("status", {}).get("version") == "v2"
            and o["status"].get("observedGeneration") == 2
        ),
        what="dataset/churn-labels at v2, generation 2",
        timeout=60,
    )
    assert condition(obj, "Ready")["status"] == "True"
