"""The standalone router over real v2 model servers: tritonclient through it, shadows
that fail, canary analysis inputs, overload, config reload, request logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from flywheel.api.modeldeployment import Analysis, AnalysisDecision
from flywheel.serving import (
    config,
    grpcserver,
    modelserver,
    predictor,
    rollout,
    routerapp,
    state,
)
from flywheel.serving.router import Router
from tests.components.conftest import free_port
from tests.components.serving import faults, support
from tests.components.serving.conftest import FEATURES, Served

pytestmark = pytest.mark.runtime

ROWS = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)


class RouterUnderTest:
    def __init__(self, loop: support.Loop, doc: dict[str, Any], tmp: Path, **kw: Any) -> None:
        self.loop = loop
        self.doc = doc
        self.config_path = tmp / "router.json"
        self.config_path.write_text(json.dumps(doc))
        self.router = Router(config.parse(doc), store=state.StateStore(tmp / "state.db"), **kw)
        app = routerapp.app(self.router, self.config_path, reload_interval=0.05)
        self.http = support.Server(loop, app)
        self.client = httpx.Client(base_url=self.http.url, timeout=20)

    def infer(self, rows: np.ndarray = ROWS, **headers: str) -> httpx.Response:
        body = {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": list(rows.shape),
                    "data": rows.reshape(-1).tolist(),
                }
            ]
        }
        return self.client.post("/v2/models/churn/infer", json=body, headers=headers)

    def report(self) -> dict[str, Any]:
        reply = self.client.get("/v1/models/churn/rollout")
        assert reply.status_code == 200
        result: dict[str, Any] = reply.json()
        return result

    def close(self) -> None:
        self.client.close()
        self.http.stop()


@pytest.fixture
def make_router(loop: support.Loop, tmp_path: Path) -> Iterator[Any]:
    made: list[RouterUnderTest] = []

    def make(doc: dict[str, Any], **kw: Any) -> RouterUnderTest:
        r = RouterUnderTest(loop, {"deployment": "churn", "stable": "v1", **doc}, tmp_path, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def two_versions(v1: Served, v2: Served, **doc: Any) -> dict[str, Any]:
    return {"candidate": "v2", "endpoints": {"v1": v1.url, "v2": v2.url}, **doc}


def test_tritonclient_http_and_grpc_through_the_router(
    loop: support.Loop, make_router: Any, model_v1: Served, model_v2: Served
) -> None:
    r = make_router(
        two_versions(model_v1, model_v2, strategy="canary", traffic={"v1": 50, "v2": 50})
    )
    port = free_port()
    grpc = loop.run(grpcserver.start(routerapp.RouterService(r.router), "127.0.0.1", port))
    try:
        expected = {
            v: s.server.predictor.predict(ROWS) for v, s in (("v1", model_v1), ("v2", model_v2))
        }
        http = httpclient.InferenceServerClient(r.http.url.removeprefix("http://"))
        assert http.is_server_ready() and http.get_model_metadata("churn")["name"] == "churn"
        g = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
        assert g.is_server_ready() and g.is_model_ready("churn")
        seen = set()
        for _ in range(20):
            x = httpclient.InferInput("features", [1, 3], "FP32")
            x.set_data_from_numpy(ROWS)
            result = http.infer("churn", [x])
            scores = result.as_numpy("scores")
            match = [v for v, e in expected.items() if np.allclose(scores, e)]
            assert match
            seen.update(match)
            gx = grpcclient.InferInput("features", [1, 3], "FP32")
            gx.set_data_from_numpy(ROWS)
            gscores = g.infer("churn", [gx]).as_numpy("scores")
            assert any(np.allclose(gscores, e) for e in expected.values())
        assert seen == {"v1", "v2"}
    finally:
        loop.run(grpc.stop(None))


def test_the_router_speaks_to_versions_through_tritonclient_grpc(
    make_router: Any, model_v1: Served
) -> None:
    doc = {"backend": "triton-grpc", "endpoints": {"v1": f"127.0.0.1:{model_v1.grpc_port}"}}
    r = make_router(doc)
    reply = r.infer()
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-flywheel-version"] == "v1"
    np.testing.assert_allclose(
        reply.json()["outputs"][0]["data"], model_v1.server.predictor.predict(ROWS), rtol=1e-6
    )


@pytest.mark.parametrize("fault", ["hang", "error", "drop"])
def test_a_failing_shadow_never_fails_or_waits_the_primary(
    loop: support.Loop, make_router: Any, model_v1: Served, artifacts: dict[str, Path], fault: str
) -> None:
    dropper = None
    shadow_server = None
    if fault == "drop":
        port = free_port()
        dropper = loop.run(faults.start_dropper(port))
        url = f"http://127.0.0.1:{port}"
    else:
        server = modelserver.ModelServer(
            "churn", "v2", predictor.load_predictor(str(artifacts["v2"]))
        )
        shadow_server = support.Server(loop, faults.faulty_app(server, faults.Mode(fault)))
        url = shadow_server.url
    shadow = {"percent": 100, "timeoutMs": 60_000, "queueSize": 8}
    r = make_router(
        {
            "candidate": "v2",
            "strategy": "shadow",
            "shadow": shadow,
            "endpoints": {"v1": model_v1.url, "v2": url},
        }
    )
    try:
        codes = [r.infer().status_code for _ in range(100)]
        report = r.report()
        assert codes == [200] * 100
        s = report["shadow"]
        assert s["mirrored"] + s["dropped"] == 100
        if fault == "hang":
            # Every primary answered while every mirrored call was still waiting.
            assert s["compared"] == s["errors"] == s["timeouts"] == 0
            assert s["dropped"] > 0
        else:
            support.wait_for(lambda: r.report()["shadow"]["errors"] > 0, 30, "shadow errors")
        assert report["versions"]["v1"]["errors"] == 0
        assert "v2" not in report["versions"]
    finally:
        if dropper is not None:
            loop.run(faults.stop_server(dropper))
        if shadow_server is not None:
            shadow_server.stop()


def test_a_healthy_shadow_is_compared(make_router: Any, model_v1: Served, model_v2: Served) -> None:
    shadow = {"percent": 100, "timeoutMs": 5000, "queueSize": 1000}
    r = make_router(two_versions(model_v1, model_v2, strategy="shadow", shadow=shadow))
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert r.infer(rng.normal(size=(4, 3)).astype(np.float32)).status_code == 200
    support.wait_for(lambda: r.report()["shadow"]["compared"] == 50, 30, "50 comparisons")
    s = r.report()["shadow"]
    assert 0.5 < s["agreement"] <= 1 and 0 < s["meanDelta"] < 0.2
    metrics = r.client.get("/metrics").text
    assert (
        'flywheel_router_shadow_total{deployment="churn",outcome="agree",version="v2"}' in metrics
    )


def analyse(report: dict[str, Any], analysis: Analysis) -> AnalysisDecision:
    c = report["candidate"]
    metrics = rollout.Metrics(
        requests=c["requests"],
        errors=c["errors"],
        p99_latency_ms=c["p99LatencyMs"],
        agreement=c["agreement"],
    )
    decision: AnalysisDecision = rollout.analyse(analysis, metrics)[0]
    return decision


@pytest.mark.parametrize("fault", ["error", "slow"])
def test_canary_faults_reach_the_analysis_and_rollback_restores_stable(
    loop: support.Loop, make_router: Any, model_v1: Served, artifacts: dict[str, Path], fault: str
) -> None:
    server = modelserver.ModelServer("churn", "v2", predictor.load_predictor(str(artifacts["v2"])))
    mode = faults.Mode(fault, delay=0.3, error_every=3)
    candidate = support.Server(loop, faults.faulty_app(server, mode))
    try:
        doc = {
            "candidate": "v2",
            "strategy": "canary",
            "traffic": {"v1": 50, "v2": 50},
            "endpoints": {"v1": model_v1.url, "v2": candidate.url},
            "ejectAfterErrors": 1000,
        }
        r = make_router(doc)
        analysis = Analysis(min_requests=20, max_error_rate=0.05, max_p99_latency_ms=150)
        assert analyse(r.report(), analysis) == AnalysisDecision.INCONCLUSIVE
        codes = [r.infer().status_code for _ in range(80)]
        assert codes == [200] * 80  # candidate failures are answered by stable
        report = r.report()
        assert analyse(report, analysis) == AnalysisDecision.ROLLBACK
        if fault == "error":
            assert report["candidate"]["errors"] >= 5
        else:
            assert report["candidate"]["p99LatencyMs"] > analysis.max_p99_latency_ms
        # Rolled back: stable takes 100%, and the router follows its file.
        r.config_path.write_text(json.dumps({**r.doc, "traffic": {"v1": 100}}))
        support.wait_for(lambda: r.report()["weights"] == {"v1": 1.0}, 30, "the reload")
        assert {r.infer().headers["x-flywheel-version"] for _ in range(30)} == {"v1"}
    finally:
        candidate.stop()


def test_overload_answers_429_or_503_and_never_hangs(
    loop: support.Loop, make_router: Any, artifacts: dict[str, Path]
) -> None:
    server = modelserver.ModelServer("churn", "v1", predictor.load_predictor(str(artifacts["v1"])))
    slow = support.Server(loop, faults.faulty_app(server, faults.Mode("slow", delay=2.0)))
    try:
        doc = {
            "endpoints": {"v1": slow.url},
            "maxConcurrency": 2,
            "maxQueue": 2,
            "queueTimeoutMs": 200,
            "callTimeoutMs": 5000,
            "totalTimeoutMs": 5000,
        }
        r = make_router(doc)

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=r.http.url, timeout=15) as client:
                body = {
                    "inputs": [
                        {"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}
                    ]
                }
                calls = [client.post("/v2/models/churn/infer", json=body) for _ in range(12)]
                return list(await asyncio.gather(*calls))

        replies = asyncio.run(burst())
        codes = sorted(reply.status_code for reply in replies)
        assert codes.count(200) == 2
        assert 429 in codes and 503 in codes
        assert all(
            reply.headers.get("retry-after") for reply in replies if reply.status_code != 200
        )
        metrics = r.client.get("/metrics").text
        assert 'flywheel_router_rejected_total{code="429",deployment="churn"}' in metrics
    finally:
        slow.stop()


def test_predict_with_features_feedback_and_the_request_log(
    make_router: Any, model_v1: Served, model_v2: Served, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    bandit = {"algorithm": "thompson", "floor": 0.1, "minSamples": 10}
    doc = two_versions(
        model_v1,
        model_v2,
        strategy="bandit",
        bandit=bandit,
        features=FEATURES,
        requestLogging={"sampleRate": 1.0, "uri": logs.as_uri()},
    )
    r = make_router(doc)
    row = {"tenure": 1.0, "charges": 2.0, "calls": 3.0}
    served = []
    for _ in range(40):
        reply = r.client.post("/v1/models/churn/predict", json={"instances": [row]})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        served.append(body["version"])
        reward = 1.0 if body["version"] == "v2" else 0.0
        fb = r.client.post("/v1/models/churn/feedback", json={"id": body["id"], "reward": reward})
        assert fb.status_code == 200 and fb.json()["version"] == body["version"]
    assert (
        r.client.post("/v1/models/churn/predict", json={"instances": [{"x": 1}]}).status_code == 400
    )
    assert (
        r.client.post("/v1/models/churn/feedback", json={"id": "nope", "reward": 1}).status_code
        == 404
    )
    bandit_report = r.report()["bandit"]
    assert bandit_report["arms"]["v2"]["n"] == served.count("v2")
    assert bandit_report["shares"]["v2"] > 0.5
    support.wait_for(lambda: list(logs.rglob("*.parquet")), 30, "a request log file")
    support.wait_for(
        lambda: sum(pq.read_table(p).num_rows for p in logs.rglob("*.parquet")) >= 40, 30, "rows"
    )
    table = pq.read_table(next(logs.rglob("*.parquet")))
    first = table.to_pylist()[0]
    assert {k: first[k] for k in row} == row and first["model_version"] in ("v1", "v2")
    assert isinstance(first["prediction"], float) and first["request_id"]
