"""The continual-learning loop in the cluster: drift -> retrain -> canary by alias ->
promoted -> the champion alias moved, with the user's ModelDeployment spec never written.

The operator runs against the real API server with the claim of tests.cluster.kubelet's
node as its artifact root. The model registry on that claim is a real one, with two
registered versions (what two trainings leave). The test plays the parts no real process
plays here: KubeRay (a RayJob's status) and the runs whose work is not the subject (an
ingest, a materialization, a monitor run, a training: the result each writes to its
termination message). The Job that moves the `champion` alias runs its real command
(`flywheel registry alias set`) as the kubelet would, on the claim.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from flywheel.serving.versions import ServedVersion
from flywheel.storage import uris
from flywheel.training import registry
from flywheel_operator import labels
from tests.cluster import Kubectl, wait_for
from tests.cluster.kubelet import ARTIFACT_CLAIM, Node, run_pod, running_pod
from tests.integration.test_operator import Operator, columns, condition, quickstart
from tests.integration.test_operator_runtime import runtime_operator  # noqa: F401 (fixture)

CLAIM = ARTIFACT_CLAIM
MODELS = f"pvc://{CLAIM}/models/churn"
# The operator resyncs every second; a busy shared machine can take a while to get there.
WAIT = 90.0


def registered_versions(node: Node, tmp_path: Path) -> tuple[str, str]:
    """Two registered versions of model churn on the claim: the first is champion, the
    second candidate, as the registry gives them."""
    root = uris.resolve(str(node.claim(CLAIM) / "models" / "churn"))
    versions = []
    for n in range(2):
        built = tmp_path / f"built-{n}"
        built.mkdir()
        (built / "metrics.json").write_text(json.dumps({"auc": 0.7 + n / 10}))
        version, _, _ = registry.register(root, built, {"model": "churn"}, datetime.now(UTC))
        versions.append(version)
    return versions[0], versions[1]


def finish(kubectl: Kubectl, job_name: str, result: dict[str, Any]) -> None:
    """What a run does at its end: its result as the termination message, exit code 0."""
    pod = running_pod(kubectl, job_name)
    [container] = pod["spec"]["containers"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(result),
                  "startedAt": now, "finishedAt": now}  # fmt: skip
    status = {
        "phase": "Succeeded",
        "containerStatuses": [
            {"name": container["name"], "image": container["image"], "imageID": "",
             "ready": False, "restartCount": 0, "started": False,
             "state": {"terminated": terminated}},
        ],
    }  # fmt: skip
    kubectl.run(
        "patch", "pod", pod["metadata"]["name"], "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def train(kubectl: Kubectl, name: str, version: str, aliases: list[str]) -> None:
    """KubeRay and the training's runtime for TrainingJob `name`: it registered `version`,
    which got `aliases`."""
    [rayjob] = wait_for(
        lambda: kubectl.items("rayjob", "-l", f"flywheel.dev/trainingjob={name}"),
        timeout=WAIT,
        what=f"the RayJob of tj/{name}",
    )
    job = rayjob["metadata"]["name"]
    kubectl.create(json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job},
        "spec": {"template": rayjob["spec"]["submitterPodTemplate"]},
    }))  # fmt: skip
    finish(kubectl, job, {
        "phase": "Succeeded", "modelName": "churn", "modelVersion": version,
        "aliases": aliases, "artifactUri": f"{MODELS}/versions/{version}",
        "metrics": {"auc": 0.8}, "primaryMetric": "auc=0.800",
    })  # fmt: skip
    done = {"status": {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}}
    kubectl.run("patch", "rayjob", job, "--subresource=status", "--type=merge",
                "-p", json.dumps(done))  # fmt: skip
    kubectl.wait("--for=condition=Succeeded", f"trainingjob/{name}", timeout=60)


def inputs_ready(kubectl: Kubectl) -> None:
    """The Datasets and the FeatureView every training of the quickstart reads."""
    fv = quickstart("FeatureView", "customer-features")
    del fv["spec"]["materialization"]
    datasets = [quickstart("Dataset", n) for n in ("customer-events", "churn-labels")]
    kubectl.apply(yaml.safe_dump_all([*datasets, fv]))
    ingests = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=ingest"),
        lambda jobs: len(jobs) == 2,
        timeout=WAIT,
        what="the ingest Jobs",
    )
    for job in ingests:
        finish(kubectl, job["metadata"]["name"], {"version": "v1", "rows": 10})
    [materialize] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=materialize"),
        timeout=WAIT,
        what="the materialization Job",
    )
    finish(kubectl, materialize["metadata"]["name"], {"lastMaterialized": "2026-05-01T00:00:00Z"})
    kubectl.wait("--for=condition=Ready", "featureview/customer-features", timeout=60)


def spec_writers(obj: dict[str, Any]) -> list[str]:
    """The managers that own a field of the spec (managedFields, server-side field sets)."""
    return sorted(
        m["manager"]
        for m in obj["metadata"].get("managedFields", [])
        if "f:spec" in (m.get("fieldsV1") or {})
    )


def test_drift_retrains_canaries_by_alias_promotes_and_moves_champion(
    runtime_operator: Operator,  # noqa: F811
    kubectl: Kubectl,
    node: Node,
    kuberay_crds: None,
    tmp_path: Path,
) -> None:
    v1, v2 = registered_versions(node, tmp_path)
    inputs_ready(kubectl)
    kubectl.apply(yaml.safe_dump(quickstart("TrainingJob", "churn-logistic")))
    train(kubectl, "churn-logistic", v1, ["champion"])

    md = quickstart("ModelDeployment", "churn")
    md["spec"] = {
        "backend": "triton",
        "stable": {"modelName": "churn", "alias": "champion"},
        "candidate": {"modelName": "churn", "alias": "candidate"},
        "rollout": {"strategy": "canary", "canary": {"steps": [{"weight": 10}, {"weight": 50}]}},
    }
    # The quickstart's monitor as written: it compares with the serving version's training
    # set, so it waits for no reference object.
    dm = quickstart("DriftMonitor", "churn-drift")
    assert dm["spec"]["reference"] == {"servingVersion": {}}
    kubectl.apply(yaml.safe_dump_all([md, dm]))
    # Stable by alias; no version holds `candidate` yet, so stable serves alone.
    md_obj = wait_for(
        lambda: kubectl.get("md", "churn"),
        lambda o: (
            o.get("status", {}).get("stableVersion") == v1
            and condition(o, "CandidateAvailable").get("reason") == "NoCandidate"
        ),
        timeout=WAIT,
        what="md/churn serving the champion alone",
    )
    written = (md_obj["metadata"]["generation"], spec_writers(md_obj))

    # A monitor run finds drift: one retrain, naming the drift event that caused it.
    wait_for(lambda: kubectl.items("cronjob"), timeout=WAIT, what="the monitor CronJob")
    kubectl.wait("--for=condition=Ready", "dm/churn-drift", timeout=60)
    kubectl.run("create", "job", "churn-drift-manual", "--from=cronjob/churn-drift-monitor")
    finish(kubectl, "churn-drift-manual", {
        "lastRun": "2026-05-01T00:10:00Z", "samples": 2000, "verdict": "Drift",
        "driftedFeatures": ["plan"],
        "scores": [{"feature": "plan", "method": "chi2", "score": 0.4, "pValue": 0.0001,
                    "threshold": 0.01, "drifted": True}],
    })  # fmt: skip
    [retrain] = wait_for(lambda: kubectl.items("trainingjob", "-l", "flywheel.dev/driftmonitor"),
                         timeout=WAIT, what="the retrain TrainingJob")  # fmt: skip
    assert retrain["metadata"]["name"] == "churn-drift-retrain-1"
    cause = json.loads(retrain["metadata"]["annotations"]["flywheel.dev/drift-event"])
    assert cause == {"monitor": "churn-drift", "time": "2026-05-01T00:10:00Z",
                     "driftedFeatures": ["plan"]}  # fmt: skip

    # It passes its gates: the registry gives it `candidate`, its status says so.
    train(kubectl, "churn-drift-retrain-1", v2, ["candidate"])
    assert kubectl.get("tj", "churn-drift-retrain-1")["status"]["aliases"] == ["candidate"]

    # The deployment resolves the candidate by alias and canaries it.
    md_obj = wait_for(
        lambda: kubectl.get("md", "churn"),
        lambda o: o.get("status", {}).get("candidateVersion") == v2,
        timeout=WAIT,
        what="md/churn canarying the retrained version",
    )
    assert condition(md_obj, "CandidateAvailable")["message"] == f"churn@candidate is {v2}"
    assert columns(kubectl, "md")["STEP"] == "1/2"
    dm_obj = wait_for(
        lambda: kubectl.get("dm", "churn-drift"),
        lambda o: condition(o, "RetrainPromoted").get("reason") == "Canary",
        timeout=WAIT,
        what="dm/churn-drift following the canary",
    )
    assert dm_obj["status"]["lastRetrainVersion"] == v2

    # The canary is promoted (here by the user, `kubectl flywheel rollout promote`).
    kubectl.run("annotate", "md", "churn", "flywheel.dev/rollout-action=promote@t1")
    kubectl.wait("--for=condition=Promoted", "md/churn", timeout=60)

    # The promotion moves `champion`: a Job runs the registry command, on the claim.
    [move] = wait_for(
        lambda: kubectl.items("job", "-l", "app.kubernetes.io/component=alias"),
        timeout=WAIT,
        what="the Job moving champion",
    )
    assert move["metadata"]["annotations"]["flywheel.dev/version"] == v2
    run = run_pod(kubectl, running_pod(kubectl, move["metadata"]["name"]), node)
    assert run.exit_code == 0, run.log[-3000:]
    root = uris.resolve(str(node.claim(CLAIM) / "models" / "churn"))
    assert registry.alias(root, "champion") == v2
    moved = registry.read_index(root)["aliases"]["champion"]
    assert moved["previous"] == v1 and moved["reason"].startswith("promoted by md/churn")

    # Champion names the promoted version now: stable by alias, no candidate left.
    md_obj = wait_for(
        lambda: kubectl.get("md", "churn"),
        lambda o: (
            o.get("status", {}).get("stableVersion") == v2
            and o["status"].get("candidateVersion") is None
            and condition(o, "Progressing").get("reason") == "NoCandidate"
        ),
        timeout=WAIT,
        what="md/churn serving the new champion",
    )
    assert condition(md_obj, "Promoted")["status"] == "True"
    assert condition(md_obj, "ChampionMoved")["reason"] == "AliasMoved"
    dm_obj = wait_for(
        lambda: kubectl.get("dm", "churn-drift"),
        lambda o: condition(o, "RetrainPromoted").get("status") == "True",
        timeout=WAIT,
        what="dm/churn-drift RetrainPromoted",
    )
    reasons = {e["reason"] for e in kubectl.items("event")}
    assert {"RetrainRegistered", "RetrainPromoted", "AliasMoving"} <= reasons, reasons

    # The user's spec was never written: same generation, same writers of spec fields.
    md_obj = kubectl.get("md", "churn")
    assert (md_obj["metadata"]["generation"], spec_writers(md_obj)) == written
    assert "flywheel-operator" not in spec_writers(md_obj)

    # The stable of before keeps its servers for previousStableWindow, though the spec
    # no longer names it (champion moved off it): an undo is instant.
    v1_servers = labels.child_name("churn", ServedVersion("churn", v1, "").key)
    assert kubectl.exists("deployment", v1_servers)
    assert md_obj["status"]["previousStableVersion"] == v1
    assert md_obj["status"]["previousStableArtifact"].endswith(f"/versions/{v1}")

    # `kubectl flywheel rollout undo md/churn`: v1 serves again at once, and champion
    # goes back to it in the registry (a Job of its own, the real command).
    kubectl.run("annotate", "md", "churn", "--overwrite", "flywheel.dev/rollout-action=undo@t2")
    md_obj = wait_for(
        lambda: kubectl.get("md", "churn"),
        lambda o: condition(o, "RolledBack").get("status") == "True",
        timeout=WAIT,
        what="md/churn undone",
    )
    assert md_obj["status"]["stableVersion"] == v1
    assert md_obj["status"]["traffic"] == {v1: 100.0}
    assert md_obj["status"]["lastAction"] == "undo@t2"
    undo = wait_for(
        lambda: [j for j in kubectl.items("job", "-l", "app.kubernetes.io/component=alias")
                 if j["metadata"]["annotations"]["flywheel.dev/version"] == v1],
        timeout=WAIT,
        what="the Job moving champion back",
    )[0]  # fmt: skip
    run = run_pod(kubectl, running_pod(kubectl, undo["metadata"]["name"]), node)
    assert run.exit_code == 0, run.log[-3000:]
    assert registry.alias(root, "champion") == v1
    back = registry.read_index(root)["aliases"]["champion"]
    assert back["previous"] == v2 and back["reason"].startswith("undone by md/churn")
    # With champion back on v1 the spec resolves to what the undo serves: it stays so.
    md_obj = wait_for(
        lambda: kubectl.get("md", "churn"),
        lambda o: (
            condition(o, "ChampionMoved").get("reason") == "AliasMoved"
            and f"-> {v1} " in condition(o, "ChampionMoved").get("message", "")
        ),
        timeout=WAIT,
        what="md/churn seeing champion back on v1",
    )
    assert md_obj["status"]["stableVersion"] == v1 and md_obj["status"]["phase"] == "RolledBack"
    assert md_obj["status"]["traffic"] == {v1: 100.0}
    assert kubectl.exists("deployment", v1_servers)
