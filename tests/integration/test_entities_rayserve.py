"""Entity lookups on the Ray Serve path, driven by the operator.

A ModelDeployment with `featureViewRef` on backend rayserve: the operator writes a
RayService whose Ray pods mount the FeatureView's Redis URL Secret and whose router
application's args carry the view. The test plays KubeRay (tests/integration/
test_rollout_rayserve.py) and the kubelet's part of the Ray pods: the Secret volume the
pod template declares is written from the API server's Secret under a local directory,
and the container's environment given to the router replicas with its paths there. A
predict by entity keys through Serve's proxy on 127.0.0.1 answers from the real Redis.
"""

from __future__ import annotations

import base64
import contextlib
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from flywheel import cli
from flywheel.serving import predictor, rayserve
from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.components.conftest import redis_url
from tests.components.serving.raycluster import serve_cluster
from tests.components.serving.support import write_model
from tests.components.serving.test_commands import MANIFESTS
from tests.integration.test_operator import running_operator
from tests.integration.test_rollout_rayserve import RAYSERVICE, KubeRay, http_options

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

__all__ = ["redis_url", "serve_cluster"]

FEATURES = ["charges", "log_charges", "calls_3d"]
SECRET = "online-redis"
STORE = f"onlineStore: {{type: redis, connectionSecretRef: {{name: {SECRET}, key: url}}}}"


class KubeRayWithPods(KubeRay):
    """Also plays the Ray pods' Secret volumes and environment, re-rooted under `root`
    (a Pod's /var/run/secrets/... is <root>/var/run/secrets/... here)."""

    def __init__(self, *args: Any, root: Path, kubectl: Kubectl) -> None:
        super().__init__(*args)
        self.root, self.kubectl = root, kubectl
        self.played: dict[str, str] = {}

    def play_pods(self, rayservice: dict[str, Any], config: dict[str, Any]) -> None:
        cluster = rayservice["spec"]["rayClusterConfig"]
        pod = cluster["workerGroupSpecs"][0]["template"]["spec"]
        [container] = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        for volume in pod["volumes"]:
            if "secret" not in volume:
                continue
            secret = self.kubectl.get("secret", volume["secret"]["secretName"])
            where = self.root / mounts[volume["name"]].lstrip("/")
            where.mkdir(parents=True, exist_ok=True)
            for item in volume["secret"]["items"]:
                (where / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))
        env = {
            e["name"]: str(self.root / e["value"].lstrip("/")) if e["value"].startswith("/")
            else e["value"]
            for e in container.get("env", [])
        }  # fmt: skip
        self.played = env
        # The router is what reads them; the model replicas need none.
        router = config["applications"][-1]
        router.setdefault("runtime_env", {}).setdefault("env_vars", {}).update(env)


@pytest.fixture
def materialized(tmp_path: Path, namespace: str, redis_url: str) -> dict[str, Any]:
    """The view's online store in the real Redis, and a model version over its features,
    under the artifact root the operator is given."""
    artifacts = tmp_path / "artifacts"
    manifests = MANIFESTS.replace("onlineStore: {type: sqlite}", STORE)
    (tmp_path / "flywheel.yaml").write_text(manifests)
    (tmp_path / "events.csv").write_text(
        "customer_id,event_time,charges,calls\n"
        "C1,2026-01-01 00:00:00,10.0,1\nC1,2026-01-02 00:00:00,20.0,2\n"
        "C2,2026-01-01 00:00:00,30.0,0\n"
    )
    common = ["-f", str(tmp_path / "flywheel.yaml"), "--artifact-root", str(artifacts)]
    common += ["--namespace", namespace]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FLYWHEEL_REDIS_URL", redis_url)
        assert cli.main(["dataset", "ingest", *common, "--name", "events"]) == 0
        assert cli.main(["features", "materialize", *common, "--name", "customer"]) == 0
    model = write_model(
        artifacts / "models" / "churn" / "versions" / "v1", [0.5, -0.25, 1.0], 0.1, FEATURES
    )
    view = yaml.safe_load(manifests.split("---", 1)[1])
    return {"artifacts": artifacts, "model": model, "view": view}


def test_a_predict_by_entity_keys_on_ray_serve_answers_from_the_mounted_store(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    kuberay_crds: None,
    serve_cluster: dict[str, str],
    materialized: dict[str, Any],
    redis_url: str,
    tmp_path: Path,
) -> None:
    serve = serve_cluster
    rayserve.deploy(serve["dashboard"], {"applications": [], "http_options": http_options(serve)})
    wait_for(
        lambda: not rayserve.status(serve["dashboard"]).get("applications"),
        what="Serve without applications",
        timeout=120,
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "stringData": {"url": redis_url},
    }
    md = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "backend": "rayserve",
            "stable": {"modelName": "churn", "version": "v1"},
            "resources": {"cpu": "250m"},
            "featureViewRef": {"name": "customer"},
        },
    }
    env = {"FLYWHEEL_ROUTER_URL": serve["http"], "FLYWHEEL_ROLLOUT_SECONDS": "1"}
    artifacts = str(materialized["artifacts"])
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            running_operator(
                control_plane, namespace, tmp_path / "operator.log", artifacts, extra_env=env
            )
        )
        kuberay = KubeRayWithPods(
            control_plane, namespace, serve, root=tmp_path / "pod", kubectl=kubectl
        )
        kuberay.start()
        stack.callback(kuberay.join, 10)
        stack.callback(kuberay.stop.set)
        # The view only (its Dataset was ingested above): any status of it will do.
        kubectl.apply(yaml.safe_dump_all([secret, materialized["view"], md]))

        rs = wait_for(
            lambda: kubectl.get("rayservice", RAYSERVICE), what="the RayService", timeout=120
        )
        cluster = rs["spec"]["rayClusterConfig"]
        for template in [cluster["headGroupSpec"]["template"]] + [
            g["template"] for g in cluster["workerGroupSpecs"]
        ]:
            [volume] = [v for v in template["spec"]["volumes"] if "secret" in v]
            assert volume["secret"] == {
                "secretName": SECRET,
                "items": [{"key": "url", "path": "url"}],
            }
        router_app = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"][-1]
        assert router_app["args"]["featureView"]["metadata"] == {
            "name": "customer",
            "namespace": namespace,
        }
        assert router_app["args"]["artifactRoot"] == artifacts

        rayserve.wait_running(serve["dashboard"], [rayserve.app_name("churn", "v1"), "churn"], 600)
        kubectl.wait("--for=condition=Ready", "md/churn", timeout=300)
        assert kuberay.played["FLYWHEEL_SECRETS_DIR"].startswith(str(tmp_path / "pod"))
        with httpx.Client(base_url=serve["http"], timeout=30) as client:
            body = {"entities": [{"customer_id": "C2"}, {"customer_id": "C1"}]}
            reply = client.post("/v1/models/churn/predict", json=body)
            assert reply.status_code == 200, reply.text
            # Windows are evaluated at the request time: the 3-day window of calls is empty.
            rows = [[30.0, math.log1p(30.0), 0.0], [20.0, math.log1p(20.0), 0.0]]
            model = predictor.load_predictor(str(materialized["model"]))
            expected = np.asarray(model.predict(np.array(rows, dtype=np.float32))).reshape(-1)
            np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-5)
            missing = client.post(
                "/v1/models/churn/predict", json={"entities": [{"customer_id": "C404"}]}
            )
            assert missing.status_code == 404 and "C404" in missing.text, missing.text
        assert kuberay.errors == [], kuberay.errors[:3]
