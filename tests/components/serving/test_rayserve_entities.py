"""Entity lookups on Ray Serve, deployed declaratively as KubeRay does: the router
application's args carry the FeatureView, its replica opens the real online store
(SQLite on the artifact root, then Redis through a mounted URL Secret) once, a predict by
entity keys answers with the model's score of the stored features, a missing entity is a
404 naming its key, and a weight change neither restarts the router nor reopens the store.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from flywheel import cli
from flywheel.serving import predictor, rayserve
from tests.components.serving import support
from tests.components.serving.raycluster import serve_cluster
from tests.components.serving.test_commands import MANIFESTS

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.slow,
    # Starting Ray and its replicas takes minutes on a busy two-core machine.
    pytest.mark.timeout(1500),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

__all__ = ["serve_cluster"]

FEATURES = ["charges", "log_charges", "calls_3d"]
# Windows are evaluated at the request time: by now the 3-day window of calls holds
# nothing (sum 0), while the ttl keeps each customer's latest values.
STORED = {"C1": [20.0, math.log1p(20.0), 0.0], "C2": [30.0, math.log1p(30.0), 0.0]}
REDIS_SECRET = ("online-redis", "url")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> dict[str, Any]:
    """Both views materialized under one artifact root: `customer` to SQLite, and
    `customer-redis` to Redis, whose URL is a Secret key as a Pod has it mounted."""
    root = tmp_path_factory.mktemp("entities")
    secrets = root / "secrets"
    (secrets / REDIS_SECRET[0]).mkdir(parents=True)
    (secrets / REDIS_SECRET[0] / REDIS_SECRET[1]).write_text(redis_url + "\n")
    on_redis = MANIFESTS.replace("name: customer}", "name: customer-redis}").replace(
        "onlineStore: {type: sqlite}",
        "onlineStore: {type: redis, connectionSecretRef: {name: online-redis, key: url}}",
    )
    view = MANIFESTS.split("---", 1)[1]
    (root / "flywheel.yaml").write_text(MANIFESTS + "---" + on_redis.split("---", 1)[1])
    (root / "events.csv").write_text(
        "customer_id,event_time,charges,calls\n"
        "C1,2026-01-01 00:00:00,10.0,1\nC1,2026-01-02 00:00:00,20.0,2\n"
        "C2,2026-01-01 00:00:00,30.0,0\n"
    )
    artifacts = root / "artifacts"
    common = ["-f", str(root / "flywheel.yaml"), "--artifact-root", str(artifacts)]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FLYWHEEL_SECRETS_DIR", str(secrets))
        assert cli.main(["dataset", "ingest", *common, "--name", "events"]) == 0
        for name in ("customer", "customer-redis"):
            assert cli.main(["features", "materialize", *common, "--name", name]) == 0
    models = {
        v: support.write_model(root / "models" / v, weights, 0.1, FEATURES)
        for v, weights in (("v1", [0.5, -0.25, 1.0]), ("v2", [0.1, 0.3, -1.0]))
    }
    return {
        "artifacts": str(artifacts),
        "secrets": str(secrets),
        "models": models,
        "views": {
            "customer": _manifest(view),
            "customer-redis": _manifest(on_redis.split("---", 1)[1]),
        },
    }


def _manifest(text: str) -> dict[str, Any]:
    """What the operator puts in the router's args: kind, name, namespace and spec."""
    doc: dict[str, Any] = yaml.safe_load(text)
    doc["metadata"]["namespace"] = "default"
    return doc


def config(
    cluster: dict[str, str], store: dict[str, Any], view: str, traffic: dict[str, float]
) -> dict[str, Any]:
    versions = [
        {"model": "churn", "version": v, "uri": str(store["models"][v])} for v in ("v1", "v2")
    ]
    candidate = {"candidate": "v2", "strategy": "canary"} if traffic.get("v2") else {}
    doc = rayserve.serve_config(
        "churn",
        versions,
        {"stable": "v1", **candidate, "traffic": traffic},
        num_cpus=0.25,
        http_options={"host": "127.0.0.1", "port": int(cluster["port"])},
        feature_view=store["views"][view],
        artifact_root=store["artifacts"],
    )
    # Playing the Ray pod: its containers' environment has where Secrets are mounted.
    env = doc["applications"][-1]["runtime_env"]["env_vars"]
    env["FLYWHEEL_SECRETS_DIR"] = store["secrets"]
    return doc


def router() -> Any:
    from ray import serve

    return serve.get_deployment_handle(rayserve.ROUTER_DEPLOYMENT, "churn")


def expected(store: dict[str, Any], version: str, customers: list[str]) -> list[float]:
    model = predictor.load_predictor(str(store["models"][version]))
    rows = np.array([STORED[c] for c in customers], dtype=np.float32)
    return [float(x) for x in np.asarray(model.predict(rows)).reshape(-1)]


def test_a_predict_by_entity_keys_answers_from_the_online_store(
    serve_cluster: dict[str, str], store: dict[str, Any]
) -> None:
    dashboard = serve_cluster["dashboard"]
    apps = [rayserve.app_name("churn", "v1"), rayserve.app_name("churn", "v2"), "churn"]
    rayserve.deploy(dashboard, config(serve_cluster, store, "customer", {"v1": 100}))
    rayserve.wait_running(dashboard, apps, 600)
    client = httpx.Client(base_url=serve_cluster["http"], timeout=30)

    def predict(*customers: str) -> httpx.Response:
        body = {"entities": [{"customer_id": c} for c in customers]}
        return client.post("/v1/models/churn/predict", json=body)

    def report() -> dict[str, Any]:
        reply = client.get("/v1/models/churn/rollout")
        return reply.json() if reply.status_code == 200 else {}

    try:
        support.wait_for(lambda: report().get("stable") == "v1", 120, "the router")
        reply = predict("C1", "C2")
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["version"] == "v1"
        np.testing.assert_allclose(answer["predictions"], expected(store, "v1", ["C1", "C2"]),
                                   rtol=1e-5)  # fmt: skip
        missing = predict("C1", "C9")
        assert missing.status_code == 404 and "C9" in missing.text, missing.text
        feature_rows = client.post(
            "/v1/models/churn/predict",
            json={"instances": [dict(zip(FEATURES, STORED["C2"], strict=True))]},
        )
        assert feature_rows.json()["predictions"] == pytest.approx(expected(store, "v1", ["C2"]))

        # A weight change is the router's user_config only: same replica, same store.
        pid = router().pid.remote().result(timeout_s=60)
        opened = router().lookup_opened_at.remote().result(timeout_s=60)
        assert opened is not None
        generation = report()["generation"]
        rayserve.deploy(dashboard, config(serve_cluster, store, "customer", {"v1": 50, "v2": 50}))
        support.wait_for(lambda: report()["generation"] > generation, 120, "the new weights")
        seen: dict[str, list[float]] = {}
        for _ in range(200):
            answer = predict("C2").json()
            seen[answer["version"]] = answer["predictions"]
            if len(seen) == 2:
                break
        assert set(seen) == {"v1", "v2"}, seen
        for version, predictions in seen.items():
            assert predictions == pytest.approx(expected(store, version, ["C2"]))
        assert router().pid.remote().result(timeout_s=60) == pid
        assert router().lookup_opened_at.remote().result(timeout_s=60) == opened
        model_pids = {a: rayserve_pid(a) for a in apps[:2]}

        # Another view is another args: Serve restarts the router (only), which opens the
        # Redis store through the mounted URL Secret.
        rayserve.deploy(dashboard, config(serve_cluster, store, "customer-redis", {"v1": 100}))
        support.wait_for(
            lambda: _opened_at() not in (None, opened), 300, "the router on the Redis view"
        )
        rayserve.wait_running(dashboard, apps, 600)
        support.wait_for(lambda: report().get("candidate") is None, 120, "v1 alone")
        reply = predict("C2", "C1")
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == pytest.approx(expected(store, "v1", ["C2", "C1"]))
        assert predict("C7").status_code == 404
        assert {a: rayserve_pid(a) for a in apps[:2]} == model_pids
    finally:
        client.close()
    print(f"figures: router pid {pid}; model pids {model_pids}")


def rayserve_pid(app: str) -> int:
    from ray import serve

    handle = serve.get_deployment_handle(rayserve.MODEL_DEPLOYMENT, app)
    return int(handle.pid.remote().result(timeout_s=60))


def _opened_at() -> float | None:
    try:
        value: float | None = router().lookup_opened_at.remote().result(timeout_s=10)
    except Exception:  # the replica is being replaced
        return None
    return value
