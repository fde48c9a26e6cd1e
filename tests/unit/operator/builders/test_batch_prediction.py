"""spec.batchPrediction -> the CronJob `<md>-batch` running `flywheel batch-predict`."""

from __future__ import annotations

import json
from typing import Any

from flywheel.serving.versions import ServedVersion
from flywheel_operator.builders import modeldeployment
from flywheel_operator.settings import Settings
from tests.unit.operator.conftest import owners

V1 = ServedVersion("churn", "v1", "pvc://models/churn/versions/v1")


def deployment() -> dict[str, Any]:
    body = owners()["ModelDeployment/churn"]
    body["spec"]["batchPrediction"] = {
        "schedule": "0 3 * * *",
        "featureViewRef": {"name": "customer-features"},
    }
    return body


def redis_view() -> dict[str, Any]:
    view = owners()["FeatureView/customer-features"]
    view["spec"]["onlineStore"] = {
        "type": "redis",
        "connectionSecretRef": {"name": "redis", "key": "url"},
    }
    return view


def test_the_batch_cronjob_runs_the_command_with_the_version_and_the_view(
    settings: Settings,
) -> None:
    view = redis_view()
    inputs = {"FeatureView/customer-features": {"offlineVersion": "f1"}}
    cron = modeldeployment.batch_cronjob(deployment(), settings, V1, inputs, [view])
    assert cron["kind"] == "CronJob" and cron["metadata"]["name"] == "churn-batch"
    assert cron["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    spec = cron["spec"]
    assert spec["schedule"] == "0 3 * * *" and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"][:5] == ["batch-predict", "--model", V1.artifact_uri,
                                     "--model-version", "v1"]  # fmt: skip
    assert "--result" in container["args"] and "--artifact-root" in container["args"]
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    # The FeatureView travels as an input manifest, its status as an input.
    assert '"customer-features"' in env["FLYWHEEL_INPUT_MANIFESTS"]
    assert json.loads(env["FLYWHEEL_INPUTS"]) == inputs
    # The redis URL Secret the FeatureView names is mounted, as its own Jobs mount it,
    # and so is the claim the model version lives on.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["secret-redis"]["secret"] == {
        "secretName": "redis",
        "items": [{"key": "url", "path": "url"}],
    }
    assert volumes["pvc-models"]["persistentVolumeClaim"] == {"claimName": "models"}
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert {"secret-redis", "pvc-models"} <= mounts


def test_a_new_stable_changes_the_template_not_the_schedule(settings: Settings) -> None:
    v2 = ServedVersion("churn", "v2", "s3://ml/flywheel/models/churn/versions/v2")
    first = modeldeployment.batch_cronjob(deployment(), settings, V1, {}, [])
    second = modeldeployment.batch_cronjob(deployment(), settings, v2, {}, [])
    assert first["metadata"]["name"] == second["metadata"]["name"]
    assert first["spec"]["schedule"] == second["spec"]["schedule"]
    args = second["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[2:5] == [v2.artifact_uri, "--model-version", "v2"]
