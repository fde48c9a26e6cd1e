"""`flywheel serve router` as a Pod runs it: the operator's argv, entity keys looked up in
a FeatureView's online store, and a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flywheel import cli
from flywheel.serving import commands, modelserver, predictor
from tests.components.conftest import free_port
from tests.components.serving import faults, support

pytestmark = pytest.mark.runtime

FLYWHEEL = str(Path(sys.executable).parent / "flywheel")
MANIFESTS = """
apiVersion: flywheel.dev/v1alpha1
kind: Dataset
metadata: {name: events}
spec:
  source: {uri: ./events.csv, format: csv}
  timestampColumn: event_time
  schema:
    columns:
      - {name: customer_id, type: string, nullable: false}
      - {name: event_time, type: timestamp, nullable: false}
      - {name: charges, type: float64}
      - {name: calls, type: int64}
---
apiVersion: flywheel.dev/v1alpha1
kind: FeatureView
metadata: {name: customer}
spec:
  entities: [{name: customer, joinKey: customer_id}]
  source: {datasetRef: {name: events}}
  timestampColumn: event_time
  ttl: 36500d
  onlineStore: {type: sqlite}
  features:
    - {name: charges, column: charges}
    - {name: log_charges, expression: log1p(charges)}
    - {name: calls_3d, aggregation: {column: calls, function: sum, window: 3d}}
"""


def test_the_operators_router_argv_parses() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        ["serve", "router", "--config", "/etc/flywheel/router.json", "--port", "8080"]
    )
    assert args.handler is commands.cmd_router and args.port == 8080


@pytest.fixture
def router_process(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(doc: dict[str, Any], *extra: str) -> tuple[subprocess.Popen[bytes], str]:
        config = tmp_path / "router.json"
        config.write_text(json.dumps({"deployment": "churn", "stable": "v1", **doc}))
        port = free_port()
        proc = subprocess.Popen(
            [
                FLYWHEEL,
                "serve",
                "router",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--state-file",
                str(tmp_path / "state.db"),
                *extra,
            ],
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        support.wait_for(ready, 60, "the router")
        return proc, url

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(30)
        if p.stderr is not None:
            p.stderr.close()


def test_entity_keys_are_looked_up_in_the_online_store(
    loop: support.Loop, tmp_path: Path, router_process: Any, artifacts: dict[str, Path]
) -> None:
    (tmp_path / "flywheel.yaml").write_text(MANIFESTS)
    (tmp_path / "events.csv").write_text(
        "customer_id,event_time,charges,calls\n"
        "C1,2026-01-01 00:00:00,10.0,1\nC1,2026-01-02 00:00:00,20.0,2\n"
        "C2,2026-01-01 00:00:00,30.0,0\n"
    )
    root = str(tmp_path / "artifacts")
    manifests = str(tmp_path / "flywheel.yaml")
    common = ["-f", manifests, "--artifact-root", root]
    assert cli.main(["dataset", "ingest", *common, "--name", "events"]) == 0
    assert cli.main(["features", "materialize", *common, "--name", "customer"]) == 0
    # A model that names the FeatureView's features: columns are matched by name.
    named = support.write_model(
        tmp_path / "model", [0.5, -0.25, 1.0], 0.1, ["charges", "log_charges", "calls_3d"]
    )
    model = modelserver.ModelServer("churn", "v1", predictor.load_predictor(str(named)))
    server = support.Server(loop, modelserver.app(model))
    try:
        _, url = router_process(
            {"endpoints": {"v1": server.url}},
            *common,
            "--feature-view",
            "customer",
        )
        reply = httpx.post(
            f"{url}/v1/models/churn/predict",
            json={"entities": [{"customer_id": "C1"}, {"customer_id": "C2"}]},
        )
        assert reply.status_code == 200, reply.text
        import math

        # Windows are evaluated at the request time: by now the 3-day window of calls holds
        # nothing (sum 0), while the ttl keeps the latest row's values.
        rows = [[20.0, math.log1p(20.0), 0.0], [30.0, math.log1p(30.0), 0.0]]
        import numpy as np

        expected = model.predictor.predict(np.array(rows, dtype=np.float32))
        np.testing.assert_allclose(reply.json()["predictions"], expected, rtol=1e-5)
        missing = httpx.post(
            f"{url}/v1/models/churn/predict", json={"entities": [{"customer_id": "C9"}]}
        )
        assert missing.status_code == 404
    finally:
        server.stop()


def test_sigterm_drains_requests_in_flight(
    loop: support.Loop, router_process: Any, artifacts: dict[str, Path]
) -> None:
    model = modelserver.ModelServer("churn", "v1", predictor.load_predictor(str(artifacts["v1"])))
    slow = support.Server(loop, faults.faulty_app(model, faults.Mode("slow", delay=1.5)))
    try:
        proc, url = router_process(
            {"endpoints": {"v1": slow.url}, "callTimeoutMs": 20000, "totalTimeoutMs": 20000},
            "--drain-seconds",
            "30",
        )
        body = {
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]
        }

        async def scenario() -> tuple[list[int], int]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                calls = [
                    asyncio.create_task(client.post("/v2/models/churn/infer", json=body))
                    for _ in range(5)
                ]
                deadline = asyncio.get_running_loop().time() + 30
                while True:
                    report = (await client.get("/v1/models/churn/rollout")).json()
                    if report["inFlight"].get("v1") == 5:
                        break
                    assert asyncio.get_running_loop().time() < deadline, report
                    await asyncio.sleep(0.01)
                proc.send_signal(signal.SIGTERM)
                while True:
                    ready = await client.get("/v2/health/ready")
                    if ready.status_code == 503:
                        break
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.01)
                replies = await asyncio.gather(*calls)
                return [r.status_code for r in replies], ready.status_code

        codes, ready_code = asyncio.run(scenario())
        assert codes == [200] * 5 and ready_code == 503
        assert proc.wait(60) == 0
    finally:
        slow.stop()
