"""Ray Serve: HTTP through the Flywheel router application vs HTTP straight to the bare
application of the same model, serial p50/p99, and where the router's time goes; and a
weight change (a `user_config` PUT) -> the first request routed with the new weights.

Goal: router app <= 1.3x the bare app at p50.

The two paths take turns, request by request, so a busy moment of a shared machine
lands on both alike. Where the time goes: the handle call as the router times it, and
the CPU each Serve process spends per request pair (utime + stime from /proc).

    .venv/bin/pytest -m bench -s tests/bench/test_bench_rayserve.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from flywheel.serving import rayserve
from tests.bench.common import report, scaled
from tests.components.serving import support
from tests.components.serving.raycluster import serve_cluster

__all__ = ["serve_cluster"]

pytestmark = [
    pytest.mark.bench,
    pytest.mark.timeout(3000),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


def alternating(client: httpx.Client, paths: list[str], n: int) -> list[np.ndarray]:
    """Latencies (ms) of n serial requests to each path, the paths taking turns."""
    for _ in range(20):
        for path in paths:
            client.post(path, json=BODY)
    out: list[list[float]] = [[] for _ in paths]
    for _ in range(n):
        for path, times in zip(paths, out, strict=True):
            start = time.perf_counter()
            reply = client.post(path, json=BODY)
            times.append((time.perf_counter() - start) * 1000)
            assert reply.status_code == 200, reply.text
    return [np.array(t) for t in out]


def serve_processes() -> dict[int, str]:
    """pid -> role of the Serve actors on this machine (proxy, replicas, controller)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        for prefix, role in (
            ("ray::ProxyActor", "proxy"),
            ("ray::ServeReplica:churn:Router", "router replica"),
            (f"ray::ServeReplica:{rayserve.app_name('churn', 'v1')}:", "model v1 replica"),
            ("ray::ServeController", "controller"),
        ):
            if name.startswith(prefix):
                found[int(entry.name)] = role
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_router_app_vs_bare_app(serve_cluster: dict[str, str], tmp_path: Path) -> None:
    models = {
        "v1": support.write_model(tmp_path / "v1", [0.5, -0.25, 1.0], 0.1),
        "v2": support.write_model(tmp_path / "v2", [0.5, -0.25, 1.1], 0.1),
    }
    dashboard, url = serve_cluster["dashboard"], serve_cluster["http"]

    def put(router: dict[str, Any]) -> None:
        versions = [{"model": "churn", "version": v, "uri": str(p)} for v, p in models.items()]
        http = {"host": "127.0.0.1", "port": int(serve_cluster["port"])}
        config = rayserve.serve_config("churn", versions, router, num_cpus=0.25, http_options=http)
        rayserve.deploy(dashboard, config)

    weights = {"stable": "v1", "candidate": "v2", "strategy": "canary"}
    put({**weights, "traffic": {"v1": 100, "v2": 0}})
    names = [rayserve.app_name("churn", v) for v in models] + ["churn"]
    rayserve.wait_running(dashboard, names)
    n = scaled(1000)
    with httpx.Client(base_url=url, timeout=30) as client:
        support.wait_for(
            lambda: client.post("/v2/models/churn/infer", json=BODY).status_code == 200,
            300,
            "the router app",
        )
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        processes = serve_processes()
        before = {pid: cpu_seconds(pid) for pid in processes}
        paths = [f"/{rayserve.app_name('churn', 'v1')}", "/v2/models/churn/infer"]
        bare, routed = alternating(client, paths, n)
        spent: dict[str, float] = {}
        for pid, role in processes.items():
            spent[role] = spent.get(role, 0.0) + (cpu_seconds(pid) - before[pid]) / n * 1e6
        inner = client.get("/v1/models/churn/rollout").json()["versions"]["v1"]
        rows = [
            ["bare model app", f"{np.percentile(bare, 50):.2f}", f"{np.percentile(bare, 99):.2f}"],
            ["router app", f"{np.percentile(routed, 50):.2f}", f"{np.percentile(routed, 99):.2f}"],
            [
                "  of which the handle call",
                f"{inner['p50LatencyMs']:.2f}",
                f"{inner['p99LatencyMs']:.2f}",
            ],
        ]
        ratio = np.percentile(routed, 50) / np.percentile(bare, 50)
        report(
            f"Ray Serve: serial HTTP, {n} requests each, taking turns (ms); "
            f"router/bare p50 = {ratio:.2f}x; load average {load}",
            ["path", "p50", "p99"],
            rows,
        )
        print("  goal: <= 1.3x; a naive router with one handle hop measured 1.86x here")
        report(
            "Ray Serve: CPU per pair of requests (one bare, one routed; us)",
            ["process", "CPU"],
            [[role, f"{us:.0f}"] for role, us in sorted(spent.items())],
        )

        times = []
        for i in range(5):
            target = "v2" if i % 2 == 0 else "v1"
            traffic = {"v1": 0 if target == "v2" else 100, "v2": 100 if target == "v2" else 0}
            start = time.perf_counter()
            put({**weights, "traffic": traffic})
            deadline = start + 120
            while True:
                reply = client.post("/v2/models/churn/infer", json=BODY)
                if reply.headers.get("x-flywheel-version") == target:
                    break
                assert time.perf_counter() < deadline, "the new weights never applied"
            times.append((time.perf_counter() - start) * 1000)
        report(
            "Ray Serve: weight change (PUT) -> first request on the new weights (ms)",
            ["p50 of 5", "min", "max"],
            [[f"{np.median(times):.0f}", f"{min(times):.0f}", f"{max(times):.0f}"]],
        )
