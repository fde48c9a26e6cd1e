"""Two router replicas share one bandit through a real Redis (and through one SQLite file):
each adds its counts to the shared totals, routes on the totals, and a restarted replica
starts from them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flywheel.serving import router, state
from flywheel.serving.policies import bandit
from tests.unit.serving.test_router import make, request, run

BANDIT = {"algorithm": "thompson", "floor": 0.05, "minSamples": 10}
DOC = {"candidate": "v2", "strategy": "bandit", "bandit": BANDIT}


def _feed(r: router.Router, requests: int, good: str) -> None:
    """Requests through `r`, rewarded 1 when `good` answered (and 1 in 10 otherwise)."""

    async def go() -> None:
        for i in range(requests):
            routed = await r.infer(request())
            r.feedback(routed.request_id, reward=float(routed.version == good or i % 10 == 0))

    run(go())


def _counts(r: router.Router) -> dict[str, tuple[int, int]]:
    assert r.bandit is not None
    return {a: (arm.pulls, arm.n) for a, arm in r.bandit.arms.items()}


@pytest.fixture(params=["redis", "sqlite"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], state.PolicyStore]:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        # A key of its own per test: the session's Redis is shared.
        deployment = f"churn-{tmp_path.name}"
        state.RedisStateStore(url).client.delete(
            state.RedisStateStore._key(deployment, "bandit", "counts")
        )
        return lambda: state.open_store(url)
    return lambda: state.open_store(tmp_path / "shared.db")


def test_replicas_route_on_the_counts_of_all_of_them(
    open_store: Callable[[], state.PolicyStore], tmp_path: Path
) -> None:
    deployment = {"deployment": f"churn-{tmp_path.name}"}
    a, _ = make({**DOC, **deployment}, open_store())
    b, _ = make({**DOC, **deployment}, open_store())
    _feed(a, 300, good="v2")
    _feed(b, 200, good="v2")
    alone_a, alone_b = _counts(a), _counts(b)
    a.tick()
    b.tick()
    a.tick()  # a takes b's counts in
    assert _counts(a) == _counts(b)
    total = {v: (alone_a[v][0] + alone_b[v][0], alone_a[v][1] + alone_b[v][1]) for v in alone_a}
    assert _counts(a) == total
    assert sum(n for _, n in total.values()) == 500
    # Both prefer v2 on what both saw; counted once each, however often they sync.
    for _ in range(3):
        a.tick()
        b.tick()
    assert _counts(b) == total
    assert a.current_weights()["v2"] > 0.8

    restarted, _ = make({**DOC, **deployment}, open_store())
    assert _counts(restarted) == total


def test_counts_saved_whole_by_an_earlier_router_become_the_totals(tmp_path: Path) -> None:
    store = state.StateStore(tmp_path / "old.db")
    old = bandit.make("thompson", ["v1", "v2"], "v1")
    old.restore({"v1": {"pulls": 40, "n": 30, "total": 3.0}, "v2": {"pulls": 60, "n": 50}})
    store.save("churn", "bandit", old.state())
    r, _ = make(DOC, store)
    assert _counts(r) == {"v1": (40, 30), "v2": (60, 50)}
    assert store.add_counts("churn", "bandit", {})["v2"]["n"] == 50


def test_an_unreachable_redis_is_named_without_its_password() -> None:
    with pytest.raises(state.StateError) as caught:
        state.open_store("redis://:s3cret@127.0.0.1:1/0")
    assert "127.0.0.1:1/0" in str(caught.value) and "s3cret" not in str(caught.value)
