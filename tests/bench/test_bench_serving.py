"""Serving: the router's cost and the policies' quality, printed side by side.

- router hop vs calling the model server directly (serial, and at fixed rates):
  p50/p99 and what the hop adds. Goal: added p99 <= 1 ms on the plain ASGI path.
- primary p99 with 0%, 10% and 100% shadow traffic. Goal: <= 5% inflation at 100%.
- bandit regret through the real policy code: arms converting at 0.10 and 0.12, 10,000
  requests, 1,000 seeds at scale 1: Thompson, epsilon-greedy, UCB1 and a fixed 50/50
  split. Goal: Thompson <= 0.25x the fixed split's regret.
- routing decision time (bandit and canary split). Goal: <= 20 us.

Servers are `flywheel serve model` and `flywheel serve router` processes on 127.0.0.1;
the load generator is an aiohttp client in this process, the same for the direct and the
routed path (FLYWHEEL_BENCH_CLIENT=httpx for the earlier one, which spends 1-2 ms of CPU
per request on this machine's two cores, beside the servers it measures). A routed
request takes turns with one straight to the model, and "added" is against that same
run's direct p99, so a busy moment of a shared machine lands on both. Where the time
goes: each server's CPU per request (utime + stime from /proc, over the requests sent).

    FLYWHEEL_BENCH_SCALE=0.1 .venv/bin/pytest -m bench -s tests/bench/test_bench_serving.py
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import pytest

from flywheel.serving.policies import bandit, split
from tests.bench.common import report, scaled
from tests.components.conftest import free_port
from tests.components.serving import support

pytestmark = pytest.mark.bench

BODY = json.dumps(
    {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
).encode()
FLYWHEEL = str(Path(sys.executable).parent / "flywheel")


@dataclasses.dataclass
class Running:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """utime + stime of the process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def process(args: list[str], port: int) -> Iterator[Running]:
    proc = subprocess.Popen(
        [FLYWHEEL, *args, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{args[:2]} exited with {proc.returncode}")
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        support.wait_for(ready, 120, f"{' '.join(args[:2])} to be ready")
        yield Running(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            raise AssertionError(f"{' '.join(args[:2])} did not exit after SIGTERM") from None


WARMUP = 50
# Serial (each request sent when the last is answered), and fixed rates to each path: at a
# low rate every process sleeps between requests, and waking costs on this VM.
REQUEST_RATES = (("serial", None), ("50 rps", 50.0), ("200 rps", 200.0))
ROUNDS = 3
PATH = "/v2/models/churn/infer"
Call = Callable[[], Awaitable[None]]


async def measure(urls: list[str], n: int, rate: float | None) -> list[np.ndarray]:
    """Latencies (ms) of n requests to each URL, the URLs taking turns request by request
    (so a busy moment of a shared machine lands on all alike): serial when `rate` is
    None, else `rate` requests a second to each, evenly offset."""
    headers = {"content-type": "application/json"}
    async with contextlib.AsyncExitStack() as stack:
        calls: list[Call] = []
        for url in urls:
            if os.environ.get("FLYWHEEL_BENCH_CLIENT") == "httpx":
                client = await stack.enter_async_context(httpx.AsyncClient(base_url=url))
                calls.append(_httpx_call(client, headers))
            else:
                # Keep-alive connections, as many as calls in flight (one when serial).
                connector = aiohttp.TCPConnector(limit=0)
                session = aiohttp.ClientSession(url, connector=connector)
                await stack.enter_async_context(session)
                calls.append(_aiohttp_call(session, headers))
        for _ in range(WARMUP):
            for call in calls:
                await call()
        return await _timed(calls, n, rate)


def _aiohttp_call(session: aiohttp.ClientSession, headers: dict[str, str]) -> Call:
    async def call() -> None:
        async with session.post(PATH, data=BODY, headers=headers) as reply:
            body = await reply.read()
            assert reply.status == 200, body

    return call


def _httpx_call(client: httpx.AsyncClient, headers: dict[str, str]) -> Call:
    async def call() -> None:
        reply = await client.post(PATH, content=BODY, headers=headers, timeout=30)
        assert reply.status_code == 200, reply.text

    return call


async def _timed(calls: list[Call], n: int, rate: float | None) -> list[np.ndarray]:
    out: list[list[float]] = [[] for _ in calls]

    async def one(k: int) -> None:
        start = time.perf_counter()
        await calls[k]()
        out[k].append((time.perf_counter() - start) * 1000)

    if rate is None:
        for _ in range(n):
            for k in range(len(calls)):
                await one(k)
    else:
        tasks = []
        t0 = time.perf_counter()
        for i in range(n):
            for k in range(len(calls)):
                delay = t0 + (i + k / len(calls)) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)
    return [np.array(o) for o in out]


def run_measured(
    urls: list[str], n: int, rate: float | None, servers: list[Running]
) -> tuple[list[np.ndarray], list[float]]:
    """Latencies per URL, and each server's CPU microseconds per round (one request to
    each URL) over the same requests."""
    before = [s.cpu_seconds() for s in servers]
    latencies = asyncio.run(measure(urls, n, rate))
    time.sleep(0.2)  # shadow calls still under way finish
    after = [s.cpu_seconds() for s in servers]
    per_round = [(a - b) / (n + WARMUP) * 1e6 for a, b in zip(after, before, strict=True)]
    return latencies, per_round


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bench-models")
    return {
        "v1": support.write_model(root / "v1", [0.5, -0.25, 1.0], 0.1),
        "v2": support.write_model(root / "v2", [0.5, -0.25, 1.1], 0.1),
    }


def router_config(tmp: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp / f"{name}.json"
    # Latency is measured here, not resilience: a slow moment must not become a 504.
    timeouts = {"callTimeoutMs": 30_000, "totalTimeoutMs": 30_000}
    path.write_text(json.dumps({"deployment": "churn", "stable": "v1", **timeouts, **doc}))
    return path


@pytest.mark.timeout(1800)
def test_router_hop_and_shadow_cost(models: dict[str, Path], tmp_path: Path) -> None:
    n = scaled(2000)
    p1, p2 = free_port(), free_port()
    model = ["serve", "model", "--name", "churn"]
    started = load_average()
    # (path, rate) -> one tuple per round: p50, p99, direct p99, added p99, p99 against
    # the no-shadow router's in the same round, router CPU, model CPU.
    found: dict[tuple[str, str], list[tuple[float, ...]]] = {}
    with (
        process([*model, "--version", "v1", "--uri", str(models["v1"])], p1) as v1,
        process([*model, "--version", "v2", "--uri", str(models["v2"])], p2) as v2,
        contextlib.ExitStack() as stack,
    ):
        endpoints = {"v1": v1.url, "v2": v2.url}
        configs: dict[str, dict[str, Any]] = {
            "router, no shadow": {"endpoints": endpoints},
            "router, shadow 10%": {
                "candidate": "v2", "strategy": "shadow", "endpoints": endpoints,
                "shadow": {"percent": 10, "timeoutMs": 1000, "queueSize": 1000},
            },
            "router, shadow 100%": {
                "candidate": "v2", "strategy": "shadow", "endpoints": endpoints,
                "shadow": {"percent": 100, "timeoutMs": 1000, "queueSize": 1000},
            },
        }  # fmt: skip
        routers = {}
        for name, doc in configs.items():
            port = free_port()
            cfg = router_config(tmp_path, name.replace(" ", "-").replace(",", ""), doc)
            state = tmp_path / f"{port}.db"
            args = ["serve", "router", "--config", str(cfg), "--state-file", str(state)]
            routers[name] = stack.enter_context(process(args, port))
        # Rounds, and in each the configs one after the other at one rate: a p99 is one
        # slow moment away from another figure, and the configs compared are measured
        # within a minute of each other.
        for _ in range(ROUNDS):
            for mode, rate in REQUEST_RATES:
                [direct], (model_cpu,) = run_measured([v1.url], n, rate, [v1])
                found.setdefault(("direct to model", mode), []).append(
                    (pct(direct, 50), pct(direct, 99), 0, 0, 0, 0, model_cpu)
                )
                baseline = 0.0
                for name, router in routers.items():
                    # Each routed request takes turns with one straight to the model.
                    (direct, lat), (router_cpu, shadow_cpu) = run_measured(
                        [v1.url, router.url], n, rate, [router, v2]
                    )
                    baseline = baseline or pct(lat, 99)
                    found.setdefault((name, mode), []).append(
                        (pct(lat, 50), pct(lat, 99), pct(direct, 99),
                         pct(lat, 99) - pct(direct, 99), pct(lat, 99) / baseline,
                         router_cpu, shadow_cpu)
                    )  # fmt: skip
    rows = []
    for (name, mode), rounds in found.items():
        p50, p99, direct99, added, inflation, router_cpu, model_cpu = np.median(rounds, axis=0)
        if name == "direct to model":
            rows.append(
                [name, mode, f"{p50:.2f}", f"{p99:.2f}", "", "", "", "", f"{model_cpu:.0f}"]
            )
            continue
        spread = [r[3] for r in rounds]
        ratios = [r[4] for r in rounds]
        rows.append(
            [name, mode, f"{p50:.2f}", f"{p99:.2f}", f"{direct99:.2f}",
             f"{added:+.2f} ({min(spread):+.2f}..{max(spread):+.2f})",
             f"{inflation:.2f}x ({min(ratios):.2f}..{max(ratios):.2f})",
             f"{router_cpu:.0f}", f"{model_cpu:.0f}"]
        )  # fmt: skip
    client = os.environ.get("FLYWHEEL_BENCH_CLIENT", "aiohttp")
    report(
        f"Router hop and shadow cost (median of {ROUNDS} rounds, {n} requests each; ms; "
        f"{client} client; load average {started} -> {load_average()})",
        ["path", "load", "p50", "p99", "direct p99, same run", "added p99 (rounds)",
         "p99 vs no shadow (rounds)", "router CPU us/req", "model CPU us/req"],
        rows,
    )  # fmt: skip
    print("  model CPU: v1 per request when direct; v2 (the shadow's) per routed request")
    print("  goals: added p99 <= 1 ms (plain ASGI path); 100% shadow p99 <= 1.05x no shadow")


def _row(lat: np.ndarray) -> list[str]:
    return [f"{pct(lat, 50):.2f}", f"{pct(lat, 99):.2f}"]


RATES = {"v1": 0.10, "v2": 0.12}


def regret(make: Any, seeds: int, steps: int) -> np.ndarray:
    """Expected regret per seed: sum over requests of (best rate - chosen arm's rate)."""
    best = max(RATES.values())
    out = np.zeros(seeds)
    for seed in range(seeds):
        rng = random.Random(seed)
        policy = make()
        total = 0.0
        for _ in range(steps):
            arm = policy.choose(rng)
            total += best - RATES[arm]
            policy.update(arm, 1.0 if rng.random() < RATES[arm] else 0.0)
        out[seed] = total
    return out


class Fixed:
    """The fixed 50/50 split, through the real canary split code."""

    def __init__(self) -> None:
        self.split = split.WeightedSplit({"v1": 50, "v2": 50})

    def choose(self, rng: random.Random) -> str:
        return self.split.choose(rng.random())

    def update(self, arm: str, reward: float) -> None:
        return None


def test_bandit_regret_and_decision_time() -> None:
    seeds, steps = scaled(1000), 10_000
    arms = ["v1", "v2"]
    policies: dict[str, Any] = {
        "fixed 50/50": Fixed,
        "thompson (floor 0.05)": lambda: bandit.make("thompson", arms, "v1", floor=0.05),
        "thompson (floor 0)": lambda: bandit.make("thompson", arms, "v1", floor=0.0),
        "epsilon-greedy 0.1 (floor 0)": lambda: bandit.make(
            "epsilon-greedy", arms, "v1", floor=0.0, epsilon=0.1
        ),
        "ucb1 (floor 0)": lambda: bandit.make("ucb", arms, "v1", floor=0.0),
    }
    results = {name: regret(make, seeds, steps) for name, make in policies.items()}
    fixed = results["fixed 50/50"].mean()
    rows = [
        [name, f"{r.mean():.1f}", f"{np.percentile(r, 90):.1f}", f"{r.mean() / fixed:.3f}x"]
        for name, r in results.items()
    ]
    report(
        f"Bandit regret: arms at 0.10 and 0.12, {steps} requests, {seeds} seeds",
        ["policy", "mean regret", "p90 regret", "vs fixed split"],
        rows,
    )
    print("  goal: thompson <= 0.25x the fixed split")

    rng = random.Random(0)
    decisions = []
    for name, make in (
        ("thompson choose", lambda: bandit.make("thompson", arms, "v1")),
        ("epsilon-greedy choose", lambda: bandit.make("epsilon-greedy", arms, "v1")),
        ("ucb1 choose", lambda: bandit.make("ucb", arms, "v1")),
        ("canary split choose", Fixed),
    ):
        policy = make()
        for arm in arms:
            for _ in range(100):
                policy.update(arm, float(rng.random() < RATES[arm]))
        n = scaled(200_000)
        start = time.perf_counter()
        for _ in range(n):
            policy.choose(rng)
        decisions.append([name, f"{(time.perf_counter() - start) / n * 1e6:.2f}"])
    sticky = split.WeightedSplit({"v1": 90, "v2": 10})
    keys = [f"customer-{i}" for i in range(1000)]
    n = scaled(200_000)
    start = time.perf_counter()
    for i in range(n):
        sticky.choose_key(keys[i % 1000])
    decisions.append(["sticky split choose_key", f"{(time.perf_counter() - start) / n * 1e6:.2f}"])
    report("Routing decision time", ["decision", "us per call"], decisions)
    print("  goal: <= 20 us")
