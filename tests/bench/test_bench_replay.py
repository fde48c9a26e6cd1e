"""The local replay's cost: `flywheel run` replays a ModelDeployment's rows through the
router on the event loop its servers run on, so the CPU the client takes is taken from
the servers it measures.

Side by side in one process, windows taking turns against one LocalDeployment (two v2
model servers and the router on 127.0.0.1, a 50/50 canary split): the replay as `flywheel
run` sends it, on the router's keep-alive client (flywheel.serving.httpclient), and the
same replay on httpx.AsyncClient, as it was sent before. Per replayed row (its predict
call and its label's feedback): wall time and the process's CPU (client, router and
servers), and new / httpx.

1. The client on the servers' loop, as `flywheel run` runs it, one call in flight (its
   CONCURRENCY) and eight.
2. The client on a loop of its own, in its own thread: each thread's CPU clock then tells
   the client's CPU from the servers'.

    FLYWHEEL_BENCH_SCALE=1 .venv/bin/pytest -m bench -s tests/bench/test_bench_replay.py
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from flywheel.api.modeldeployment import ModelDeployment
from flywheel.entrypoints import RunContext
from flywheel.local import deployment
from flywheel.local.servers import EventLoop
from flywheel.serving import httpclient
from flywheel.serving.versions import ServedVersion
from tests.bench.common import report, scaled
from tests.components.serving import support

pytestmark = pytest.mark.bench

FEATURES = ["a", "b", "c"]
ROUNDS = 3
WARMUP = 50


class HttpxReplay(deployment.Replay):
    """The same replay on httpx.AsyncClient, set up as the replay had it: a 30 s timeout
    (per phase), as many connections as calls in flight."""

    httpx_client: httpx.AsyncClient | None = None

    async def _call(self, method: str, path: str, doc: Any = None) -> httpclient.Reply:
        if self.httpx_client is None:
            limits = httpx.Limits(max_connections=self.concurrency)
            self.httpx_client = httpx.AsyncClient(
                base_url=self.url, timeout=self.timeout, limits=limits
            )
        reply = await self.httpx_client.request(method, path, json=doc)
        return httpclient.Reply(reply.status_code, dict(reply.headers), reply.content)

    def close(self) -> None:
        if self.httpx_client is not None:
            self.loop.run(self.httpx_client.aclose())
            self.httpx_client = None


@dataclasses.dataclass
class Totals:
    rows: int = 0
    wall: float = 0.0
    process_cpu: float = 0.0
    client_cpu: float = 0.0
    servers_cpu: float = 0.0
    failed: int = 0

    def per_row_us(self, seconds: float) -> str:
        return f"{seconds / self.rows * 1e6:.0f}"


def traffic(count: int) -> list[deployment.Row]:
    return [({"a": float(i), "b": 1.0, "c": -1.0}, i % 2, None) for i in range(count)]


def thread_cpu(loop: EventLoop) -> float:
    assert loop.thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(loop.thread.ident))


def timed_window(replay: deployment.Replay, rows: int, servers: EventLoop, into: Totals) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    client, served = thread_cpu(replay.loop), thread_cpu(servers)
    window = replay.send(rows)
    into.wall += time.perf_counter() - wall
    into.process_cpu += time.process_time() - cpu
    into.client_cpu += thread_cpu(replay.loop) - client
    into.servers_cpu += thread_cpu(servers) - served
    into.rows += rows
    into.failed += window.failed


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[deployment.LocalDeployment]:
    root = tmp_path_factory.mktemp("bench-replay")
    versions = []
    for name, weights in (("v1", [0.5, -0.25, 1.0]), ("v2", [0.5, -0.25, 1.1])):
        directory = root / "models" / "churn" / "versions" / name
        support.write_model(directory, weights, 0.1, FEATURES)
        versions.append(ServedVersion("churn", name, str(directory)))
    md = ModelDeployment.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "churn"},
            "spec": {
                "stable": {"modelName": "churn", "version": "v1"},
                "candidate": {"modelName": "churn", "version": "v2"},
                "rollout": {"strategy": "canary", "canary": {"steps": [{"weight": 50}]}},
            },
        }
    )
    stable, candidate = versions
    with deployment.LocalDeployment(md, stable, candidate, RunContext(artifact_root=root)) as local:
        local.apply("v1", "v2", {"v1": 50.0, "v2": 50.0})
        yield local


def side_by_side(
    served: deployment.LocalDeployment, client_loop: EventLoop, concurrency: int, rows: int
) -> dict[str, Totals]:
    """Windows of `rows` from each replay in turn, ROUNDS times; totals per client."""
    data = traffic(500)
    makers: dict[str, Callable[..., deployment.Replay]] = {
        "httpclient": deployment.Replay,
        "httpx": HttpxReplay,
    }
    replays = {
        name: make(served.url, "churn", data, client_loop, concurrency)
        for name, make in makers.items()
    }
    totals = {name: Totals() for name in replays}
    try:
        for replay in replays.values():
            replay.send(WARMUP)
        for _ in range(ROUNDS):
            for name, replay in replays.items():
                timed_window(replay, rows, served.loop, totals[name])
    finally:
        for replay in replays.values():
            replay.close()
    return totals


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def test_replay_cost_new_client_vs_httpx(served: deployment.LocalDeployment) -> None:
    rows = scaled(1000)
    started = load_average()
    table = []
    own_loop = EventLoop()
    try:
        runs = [
            ("servers' loop", served.loop, deployment.CONCURRENCY),
            ("servers' loop", served.loop, 8),
            ("own loop", own_loop, deployment.CONCURRENCY),
        ]
        for where, loop, concurrency in runs:
            totals = side_by_side(served, loop, concurrency, rows)
            new, old = totals["httpclient"], totals["httpx"]
            assert new.failed == old.failed == 0
            separate = loop is not served.loop
            for name, t in totals.items():
                table.append(
                    [where, str(concurrency), name,
                     f"{t.wall / t.rows * 1e3:.2f}", t.per_row_us(t.process_cpu),
                     t.per_row_us(t.client_cpu) if separate else "",
                     t.per_row_us(t.servers_cpu) if separate else ""]
                )  # fmt: skip
            ratios = [
                f"{new.wall / old.wall:.2f}x",
                f"{new.process_cpu / old.process_cpu:.2f}x",
                f"{new.client_cpu / old.client_cpu:.2f}x" if separate else "",
                f"{new.servers_cpu / old.servers_cpu:.2f}x" if separate else "",
            ]
            table.append([where, str(concurrency), "new / httpx", *ratios])
    finally:
        own_loop.close()
    report(
        f"Local replay, {ROUNDS} windows of {rows} rows per client, taking turns "
        f"(load average {started} -> {load_average()})",
        ["client runs on", "in flight", "client", "wall ms/row", "process CPU us/row",
         "client thread CPU us/row", "servers' thread CPU us/row"],
        table,
    )  # fmt: skip
    print("  a row: its predict call and its label's feedback (and a window's 2 metrics reads)")


def test_the_httpx_replay_sends_what_the_replay_sends(served: deployment.LocalDeployment) -> None:
    """The comparison is fair only if both clients make the same calls: every row
    answered, every label taken as feedback."""
    data = traffic(20)
    windows = []
    for make in (deployment.Replay, HttpxReplay):
        replay = make(served.url, "churn", data, served.loop)
        try:
            windows.append(replay.send(20))
        finally:
            replay.close()
    new, old = windows
    assert new.failed == old.failed == 0
    assert sum(new.answered.values()) == sum(old.answered.values()) == 20
    assert sum(n for n, _ in new.labelled.values()) == sum(n for n, _ in old.labelled.values())
