"""Ray Serve, deployed declaratively through the dashboard's REST API as KubeRay does:
a rollout step (a weight change, a new candidate, removing the old stable) restarts no
model replica and fails no request of a steady stream."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from flywheel.serving import rayserve
from tests.components.serving import support
from tests.components.serving.raycluster import serve_cluster

pytestmark = [
    pytest.mark.runtime,
    pytest.mark.slow,
    # Starting Ray and its replicas takes minutes on a busy two-core machine.
    pytest.mark.timeout(1500),
    # Ray's own modules still use pydantic v1-style fields and deprecated APIs.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

__all__ = ["serve_cluster"]

BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


def replica_pids(app: str) -> set[int]:
    """The process of each replica of the application (one replica each here)."""
    from ray import serve

    deployment = rayserve.ROUTER_DEPLOYMENT if app == "churn" else rayserve.MODEL_DEPLOYMENT
    handle = serve.get_deployment_handle(deployment, app)
    return {int(handle.pid.remote().result(timeout_s=60))}


class Traffic:
    """A steady stream through the Serve proxy, bounded in count and time."""

    def __init__(self, url: str, limit: int = 20_000, seconds: float = 600) -> None:
        self.url, self.limit, self.seconds = url, limit, seconds
        self.codes: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        import time

        deadline = time.monotonic() + self.seconds
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for _ in range(self.limit):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    reply = client.post("/v2/models/churn/infer", json=BODY)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.codes[reply.status_code] += 1
                if reply.status_code == 200:
                    self.versions[reply.headers["x-flywheel-version"]] += 1
                else:
                    self.failures.append(reply.text[:300])

    def seen(self) -> int:
        return sum(self.codes.values())

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(60)


def config(
    cluster: dict[str, str], artifacts: dict[str, Path], versions: list[str], router: dict[str, Any]
) -> dict[str, Any]:
    return rayserve.serve_config(
        "churn",
        [{"model": "churn", "version": v, "uri": str(artifacts[v])} for v in versions],
        router,
        num_cpus=0.25,
        http_options={"host": "127.0.0.1", "port": int(cluster["port"])},
    )


def test_a_rollout_step_restarts_no_model_replica(
    serve_cluster: dict[str, str], artifacts: dict[str, Path]
) -> None:
    dashboard, url = serve_cluster["dashboard"], serve_cluster["http"]
    client = httpx.Client(base_url=url, timeout=30)

    def report() -> dict[str, Any]:
        reply = client.get("/v1/models/churn/rollout")
        return reply.json() if reply.status_code == 200 else {}

    def put(versions: list[str], router: dict[str, Any]) -> None:
        rayserve.deploy(dashboard, config(serve_cluster, artifacts, versions, router))

    v1 = rayserve.app_name("churn", "v1")
    v2 = rayserve.app_name("churn", "v2")
    put(["v1"], {"stable": "v1", "traffic": {"v1": 100}})
    rayserve.wait_running(dashboard, [v1, "churn"])
    support.wait_for(lambda: report().get("stable") == "v1", 120, "the router")
    before = {"v1": replica_pids(v1), "router": replica_pids("churn")}
    assert all(len(p) == 1 for p in before.values()), before

    traffic = Traffic(url)
    try:
        support.wait_for(lambda: traffic.seen() >= 20, 120, "traffic")

        # 1. A candidate joins with no weight: its own application, nothing else restarts.
        put(
            ["v1", "v2"],
            {
                "stable": "v1",
                "candidate": "v2",
                "strategy": "canary",
                "traffic": {"v1": 100, "v2": 0},
            },
        )
        rayserve.wait_running(dashboard, [v1, v2, "churn"])
        support.wait_for(lambda: report().get("candidate") is not None, 120, "the candidate")
        after_add = {"v1": replica_pids(v1), "router": replica_pids("churn")}
        assert after_add == before
        before["v2"] = replica_pids(v2)

        # 2. A weight change: the router's user_config only.
        generation = report()["generation"]
        put(
            ["v1", "v2"],
            {
                "stable": "v1",
                "candidate": "v2",
                "strategy": "canary",
                "traffic": {"v1": 50, "v2": 50},
            },
        )
        support.wait_for(lambda: report()["generation"] > generation, 120, "the new weights")
        seen = traffic.seen()
        support.wait_for(
            lambda: traffic.versions["v2"] > 0 and traffic.seen() > seen + 20, 120, "traffic on v2"
        )
        assert {
            k: replica_pids(v1 if k == "v1" else v2 if k == "v2" else "churn") for k in before
        } == before

        # 3. Promote and remove the old stable: weight 0, drain, then drop its application.
        put(["v1", "v2"], {"stable": "v2", "traffic": {"v2": 100}})
        support.wait_for(lambda: report().get("stable") == "v2", 120, "v2 as stable")
        support.wait_for(lambda: not report()["inFlight"].get("v1"), 60, "v1 drained")
        put(["v2"], {"stable": "v2", "traffic": {"v2": 100}})
        support.wait_for(
            lambda: v1 not in rayserve.status(dashboard).get("applications", {}), 120, "v1 gone"
        )
        seen = traffic.seen()
        support.wait_for(lambda: traffic.seen() > seen + 20, 120, "traffic after removal")
        assert replica_pids(v2) == before["v2"]
        assert replica_pids("churn") == before["router"]
    finally:
        traffic.finish()
        client.close()
    assert traffic.failures == [], traffic.failures[:3]
    assert set(traffic.codes) == {200}
    assert traffic.versions["v1"] > 0 and traffic.versions["v2"] > 0


def test_a_bad_router_config_keeps_the_router_serving(
    serve_cluster: dict[str, str], artifacts: dict[str, Path]
) -> None:
    dashboard, url = serve_cluster["dashboard"], serve_cluster["http"]
    good = config(serve_cluster, artifacts, ["v2"], {"stable": "v2", "traffic": {"v2": 100}})
    rayserve.deploy(dashboard, good)
    # The model's application too: on a fresh cluster it starts after the router's.
    rayserve.wait_running(dashboard, [rayserve.app_name("churn", "v2"), "churn"])
    router_pids = replica_pids("churn")
    bad = config(serve_cluster, artifacts, ["v2"], {"stable": "v2", "traffic": {"v2": -5}})
    rayserve.deploy(dashboard, bad)
    with httpx.Client(base_url=url, timeout=30) as client:
        support.wait_for(
            lambda: client.get("/v1/models/churn/rollout").json().get("configError") or "",
            120,
            "the refused config to be reported",
        )
        assert client.post("/v2/models/churn/infer", json=BODY).status_code == 200
        # A request the model refuses is the caller's 400, not the version's 502: the
        # replica's error comes back through the handle as its own type.
        cube = {"inputs": [{**BODY["inputs"][0], "shape": [1, 1, 3]}]}
        refused = client.post("/v2/models/churn/infer", json=cube)
        assert refused.status_code == 400 and "expected [rows, features]" in refused.text
    assert replica_pids("churn") == router_pids
    rayserve.wait_running(dashboard, ["churn"])
