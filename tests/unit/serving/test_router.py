"""The router core with in-process backends: routing, fallback, ejection, feedback."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flywheel.serving import config, oip, router, routerapp, state
from flywheel.serving.backends import BackendError
from flywheel.serving.service import ServiceError


class Fake:
    """A version answering `score` for every row, or failing as told."""

    def __init__(self, version: str, score: float = 0.9) -> None:
        self.version = version
        self.score = score
        self.fail: str | None = None  # "error" | "timeout"
        self.calls = 0
        self.closed = False

    async def infer(self, request: oip.InferRequest, timeout: float) -> oip.InferResponse:
        self.calls += 1
        if self.fail:
            raise BackendError(f"{self.version}: injected", timeout=self.fail == "timeout")
        rows = request.input().data.shape[0]
        return oip.InferResponse("m", [oip.Tensor("scores", np.full(rows, self.score, np.float32))])

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        self.closed = True


def make(
    doc: dict[str, Any], store: state.PolicyStore | None = None
) -> tuple[router.Router, dict[str, Fake]]:
    fakes: dict[str, Fake] = {}

    def factory(cfg: config.RouterConfig, version: str) -> Fake:
        fakes[version] = Fake(version)
        return fakes[version]

    base = {"deployment": "churn", "stable": "v1", "endpoints": {"v1": "x", "v2": "y"}}
    r = router.Router(config.parse({**base, **doc}), backend_factory=factory, store=store, seed=1)
    return r, fakes


def request() -> oip.InferRequest:
    return oip.InferRequest([oip.Tensor("features", np.ones((1, 3), np.float32))])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_canary_split_and_sticky_keys() -> None:
    r, _ = make({"candidate": "v2", "strategy": "canary", "traffic": {"v1": 70, "v2": 30}})

    async def go() -> tuple[list[str], set[str]]:
        chosen = [(await r.infer(request())).version for _ in range(2000)]
        sticky = {(await r.infer(request(), key="customer-7")).version for _ in range(50)}
        return chosen, sticky

    chosen, sticky = run(go())
    assert abs(chosen.count("v2") / len(chosen) - 0.3) < 0.05
    assert len(sticky) == 1


def test_a_failing_candidate_falls_back_to_stable_and_is_counted_then_ejected() -> None:
    r, fakes = make(
        {
            "candidate": "v2",
            "strategy": "canary",
            "traffic": {"v1": 50, "v2": 50},
            "ejectAfterErrors": 3,
            "ejectSeconds": 60,
        }
    )
    fakes["v2"].fail = "error"

    async def go() -> list[str]:
        return [(await r.infer(request())).version for _ in range(200)]

    assert set(run(go())) == {"v1"}
    report = r.rollout_report()["candidate"]
    assert report["errors"] == report["requests"] == 3  # ejected after three
    assert r.ejector.ejections("v2") == 1


def test_a_failing_stable_is_the_callers_error() -> None:
    r, fakes = make({})
    fakes["v1"].fail = "timeout"
    with pytest.raises(ServiceError) as caught:
        run(r.infer(request()))
    assert caught.value.status == 504


def test_feedback_credits_the_answering_version_and_bandit_state_persists(tmp_path: Path) -> None:
    bandit = {"algorithm": "thompson", "floor": 0.05, "minSamples": 10}
    doc = {"candidate": "v2", "strategy": "bandit", "bandit": bandit}
    store = state.StateStore(tmp_path / "s.db")
    r, _ = make(doc, store)

    async def go(rt: router.Router) -> None:
        for i in range(600):
            routed = await rt.infer(request())
            rt.feedback(routed.request_id, reward=float(routed.version == "v2" or i % 10 == 0))

    run(go(r))
    weights = r.current_weights()
    assert weights["v2"] > 0.8 and weights["v1"] >= 0.05
    r.tick()
    restarted, _ = make(doc, state.StateStore(tmp_path / "s.db"))
    assert restarted.bandit is not None and r.bandit is not None
    assert restarted.bandit.state() == r.bandit.state()
    with pytest.raises(ServiceError, match="unknown"):
        restarted.feedback("nope", reward=1)
    assert restarted.feedback("nope", reward=1, version="v2") == "v2"


def test_labels_reward_a_matching_prediction() -> None:
    r, _ = make({})
    routed = run(r.infer(request()))  # scores 0.9: the positive class
    r.feedback(routed.request_id, label=1)
    r.feedback(routed.request_id, label=0)
    text = r.metrics.registry.get_sample_value(
        "flywheel_router_reward_sum_total", {"deployment": "churn", "version": "v1"}
    )
    assert text == 1.0


def test_a_bad_config_keeps_the_old_one_and_is_counted() -> None:
    r, _ = make({"candidate": "v2", "strategy": "canary", "traffic": {"v1": 90, "v2": 10}})
    generation = r.generation
    assert not r.apply({"deployment": "churn", "stable": "v1", "traffic": {"v1": -1}})
    assert not r.apply(b"{not json")
    assert not r.apply({"deployment": "churn", "stable": "v3"})  # v3 has no endpoint
    assert r.generation == generation and r.config.traffic == {"v1": 90, "v2": 10}
    errors = r.metrics.registry.get_sample_value(
        "flywheel_router_config_errors_total", {"deployment": "churn"}
    )
    assert errors == 3
    assert r.config_error is not None
    backends = dict(r.backends)
    assert r.apply(
        json.dumps(
            {
                "deployment": "churn",
                "stable": "v1",
                "candidate": "v2",
                "endpoints": {"v1": "x", "v2": "y"},
                "strategy": "canary",
                "traffic": {"v1": 50, "v2": 50},
            }
        )
    )
    assert r.backends == backends  # same endpoints: the same clients, no reconnect
    assert r.current_weights() == {"v1": 0.5, "v2": 0.5}


def test_overload_answers_429_when_the_queue_is_full_and_503_after_waiting() -> None:
    r, fakes = make({"maxConcurrency": 1, "maxQueue": 1, "queueTimeoutMs": 50})
    gate = asyncio.Event()
    original = fakes["v1"].infer

    async def slow(req: oip.InferRequest, timeout: float) -> oip.InferResponse:
        await gate.wait()
        return await original(req, timeout)

    fakes["v1"].infer = slow  # type: ignore[method-assign,assignment]

    async def go() -> list[Any]:
        tasks = [asyncio.create_task(r.infer(request())) for _ in range(3)]
        done = await asyncio.wait_for(asyncio.gather(*tasks[1:], return_exceptions=True), 5)
        gate.set()
        return [*done, await tasks[0]]

    queued, rejected, first = run(go())
    assert {queued.status, rejected.status} == {429, 503}
    assert queued.retry_after and rejected.retry_after
    assert first.version == "v1"


def test_a_dominant_arm_is_reported_for_promotion_after_the_hold() -> None:
    now = [0.0]
    bandit = {"algorithm": "thompson", "floor": 0.05, "minSamples": 50, "promoteThreshold": 0.9}
    fakes: dict[str, Fake] = {}

    def factory(cfg: config.RouterConfig, version: str) -> Fake:
        fakes[version] = Fake(version)
        return fakes[version]

    doc = {
        "deployment": "churn",
        "stable": "v1",
        "candidate": "v2",
        "strategy": "bandit",
        "bandit": bandit,
        "promoteHoldSeconds": 30,
        "endpoints": {"v1": "x", "v2": "y"},
    }
    r = router.Router(config.parse(doc), backend_factory=factory, clock=lambda: now[0], seed=3)

    async def go() -> None:
        for _ in range(400):
            routed = await r.infer(request())
            r.feedback(routed.request_id, reward=float(routed.version == "v2"))

    run(go())
    r.tick()
    assert r.promote is None  # dominant, but not for long enough yet
    now[0] = 31.0
    r.tick()
    assert r.promote == "v2"
    assert r.rollout_report()["bandit"]["promote"] == "v2"


def test_the_shadow_starts_after_the_primarys_answer_is_sent() -> None:
    r, fakes = make({"candidate": "v2", "strategy": "shadow", "shadow": {"percent": 100}})
    events: list[str] = []
    original = fakes["v2"].infer

    async def shadow(req: oip.InferRequest, timeout: float) -> oip.InferResponse:
        events.append("shadow called")
        return await original(req, timeout)

    fakes["v2"].infer = shadow  # type: ignore[method-assign,assignment]
    app = routerapp.app(r, lifespan=False)
    body = json.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    ).encode()
    scope = {"type": "http", "method": "POST", "path": "/v2/models/churn/infer", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        events.append(message["type"])

    async def go() -> None:
        await app(scope, receive, send)
        for _ in range(10):
            await asyncio.sleep(0)
        await r.close()

    run(go())
    assert events == ["http.response.start", "http.response.body", "shadow called"]
    assert r.shadow_stats.compared == 1


@pytest.mark.parametrize("endpoint", ["churn-v2:8000", "https://churn-v2:8443", "http://"])
def test_a_bad_endpoint_names_its_field_and_keeps_the_running_config(endpoint: str) -> None:
    good: dict[str, Any] = {
        "deployment": "churn",
        "model": "churn",
        "stable": "v1",
        "backend": "http",
        "traffic": {"v1": 100},
        "endpoints": {"v1": "http://127.0.0.1:9"},
    }
    r = router.Router(config.parse(good))
    bad = {
        **good,
        "candidate": "v2",
        "endpoints": {**good["endpoints"], "v2": endpoint},
    }
    with pytest.raises(ValueError, match=r"router config: endpoints\.v2: "):
        router.Router(config.parse(bad))
    assert not r.apply(bad)
    assert "endpoints.v2" in (r.config_error or "")
    assert list(r.backends) == ["v1"]


def test_request_ids_are_distinct_random_and_uuid_sized() -> None:
    ids = router.RequestIds()
    drawn = [ids.next() for _ in range(3 * router.RequestIds.BATCH + 5)]
    assert len(set(drawn)) == len(drawn)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in drawn)
    # Neighbours share nothing a client could count on (no common prefix, no counter).
    assert all(a[:16] != b[:16] and a[16:] != b[16:] for a, b in itertools.pairwise(drawn))
    assert router.RequestIds().next() not in drawn
