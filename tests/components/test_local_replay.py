"""The local replay's calls, against a real uvicorn server on 127.0.0.1 standing in for the
router's four endpoints: answers other than 200 count as failed, labels go back as
feedback, no more calls are in flight (or connections open) than its concurrency, and a
router that never answers is a timeout, not a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flywheel.local import deployment
from flywheel.local.servers import EventLoop, LocalServer
from flywheel.serving import httpclient

pytestmark = pytest.mark.runtime


class Router:
    """Answers predictions for even `a` (v1), 503 for odd; rewards a label of 1."""

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        # A hung answer waits for this, set when the test is done with the server.
        self.released = asyncio.Event()
        self.in_flight = self.most_in_flight = 0
        self.connections: set[int] = set()
        self.feedback: list[dict[str, Any]] = []
        self.registry = CollectorRegistry()
        labels = ["deployment", "version"]
        self.rewards = Counter("flywheel_router_rewards", "", labels, registry=self.registry)
        self.sums = Counter("flywheel_router_reward_sum", "", labels, registry=self.registry)

    def app(self) -> Starlette:
        async def predict(request: Request) -> Response:
            assert request.client is not None
            self.connections.add(request.client.port)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                body = await request.json()
                if self.hang:
                    await self.released.wait()
                else:
                    await asyncio.sleep(0.05)  # holds the call in flight, so calls overlap
            finally:
                self.in_flight -= 1
            a = body["instances"][0]["a"]
            if a % 2:
                return JSONResponse({"error": "no version answered"}, 503)
            return JSONResponse({"id": f"r{a}", "version": "v1", "predictions": [0.9]})

        async def feedback(request: Request) -> Response:
            body = await request.json()
            self.feedback.append(body)
            self.rewards.labels("churn", "v1").inc()
            self.sums.labels("churn", "v1").inc(body["label"])
            return JSONResponse({"id": body["id"], "version": "v1"})

        async def metrics(_: Request) -> Response:
            return Response(generate_latest(self.registry))

        async def rollout(_: Request) -> Response:
            return JSONResponse({"candidate": None})

        return Starlette(
            routes=[
                Route("/v1/models/churn/predict", predict, methods=["POST"]),
                Route("/v1/models/churn/feedback", feedback, methods=["POST"]),
                Route("/v1/models/churn/rollout", rollout),
                Route("/metrics", metrics),
            ]
        )


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    loop = EventLoop()
    yield loop
    loop.close()


def test_failures_are_counted_labels_fed_back_and_calls_kept_to_the_concurrency(
    loop: EventLoop,
) -> None:
    router = Router()
    server = LocalServer(loop, router.app())
    rows: list[deployment.Row] = [({"a": i}, i % 3 == 0, None) for i in range(12)]
    replay = deployment.Replay(server.url, "churn", rows, loop, concurrency=3)
    try:
        window = replay.send(12)
        assert replay.report() == {"candidate": None}
    finally:
        replay.close()
        server.stop()
    assert (window.requests, window.failed, window.answered) == (12, 6, {"v1": 6})
    # Labels of the answered rows only (0, 2, ..., 10), as numbers.
    assert sorted(f["id"] for f in router.feedback) == sorted(f"r{a}" for a in range(0, 12, 2))
    assert {f["label"] for f in router.feedback} == {0.0, 1.0}
    assert window.labelled == {"v1": (6, 2.0)}  # rows 0 and 6 have the label 1
    assert (replay.sent, replay.failed) == (12, 6)
    assert router.most_in_flight == 3 and len(router.connections) <= 3


def test_a_router_that_never_answers_is_a_timeout(loop: EventLoop) -> None:
    router = Router(hang=True)
    server = LocalServer(loop, router.app())
    replay = deployment.Replay(server.url, "churn", [({"a": 0}, 1, None)], loop, timeout=0.2)
    try:
        with pytest.raises(httpclient.HttpTimeout):
            replay.send(1)
    finally:
        replay.close()
        loop.loop.call_soon_threadsafe(router.released.set)
        server.stop()
