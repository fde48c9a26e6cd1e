"""Training/serving skew end to end: requests by entity key through the router (features
from the FeatureView's real online store), logged with their keys, then recomputed by the
point-in-time join and compared. A client that sends its own charges is caught."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.api.common import ConditionStatus
from flywheel.api.driftmonitor import DriftMonitor
from flywheel.drift import reference, runner
from flywheel.entrypoints import RunContext
from flywheel.features import runner as features
from flywheel.serving import commands, config, routerapp
from flywheel.serving import lookup as serving_lookup
from flywheel.serving.router import Router
from tests.components.test_featureview import ENTITIES, START, ctx, feature_view  # noqa: F401
from tests.unit.serving.test_router import Fake

pytestmark = pytest.mark.runtime

SERVED = ["plan", "charges", "log_charges"]


def _monitor(**skew: Any) -> DriftMonitor:
    return DriftMonitor.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "DriftMonitor",
            "metadata": {"name": "churn-drift"},
            "spec": {
                "deploymentRef": {"name": "churn"},
                "reference": {"featureViewRef": {"name": "customer"}},
                "window": {"size": 500},
                "prediction": False,
                "skew": {"featureViewRef": {"name": "customer"}, **skew},
            },
        }
    )


def _router(context: RunContext, view: Any) -> Router:
    doc = {
        "deployment": "churn",
        "stable": "v1",
        "endpoints": {"v1": "x"},
        "features": SERVED,
        "requestLogging": {
            "sampleRate": 1.0,
            "uri": str(context.artifact_root / "request-logs" / "default"),
        },
    }
    lookup = serving_lookup.open_view(view, context)  # as `serve router` opens it
    return Router(config.parse(doc), backend_factory=lambda cfg, v: Fake(v), features=lookup)


def _send(router: Router, bodies: list[dict[str, Any]]) -> None:
    async def go() -> None:
        for body in bodies:
            await routerapp.predict(router, body, {})

    asyncio.run(go())
    assert router.request_log is not None and router.request_log.flush() is not None


def test_features_a_client_computed_itself_are_reported_as_skew(ctx: RunContext) -> None:  # noqa: F811
    reference._MEMORY.clear()
    view = feature_view(ttl="1000d")  # online rows stay fresh until the requests
    context = ctx.replace(resources={**ctx.resources, view.key: view})
    assert features.run_featureview(view, context, now=START + timedelta(days=40)).phase == "Ready"
    router = _router(context, view)
    by_key = [{"entities": [{"customer_id": c}]} for c in ENTITIES]
    _send(router, by_key)
    # Some clients send their own features with the keys: a stale charge for 10 customers.
    online = features.get_online_features(view, [{"customer_id": c} for c in ENTITIES[:10]],
                                          context, datetime.now(UTC))  # fmt: skip
    own = [
        {"instances": [{**{n: row[n] for n in SERVED}, "charges": row["charges"] + 5.0}]}
        for row in online
        if row is not None
    ]
    _send(router, own)  # no keys logged: not checked

    clean = runner.run_driftmonitor(_monitor(), context)
    assert clean.skew is not None
    assert (clean.skew.requests, clean.skew.checked) == (len(ENTITIES), len(ENTITIES))
    assert clean.skew.features == [] and clean.skew.skewed_features == []
    skewed = {c.type: c for c in clean.conditions}["Skewed"]
    assert (skewed.status, skewed.reason) == (ConditionStatus.FALSE, "NoSkew")

    # The same stale charges, now logged with their keys (as a client-side feature
    # pipeline would be): the join recomputes them and finds the difference.
    with_keys = [
        {"entities": [{"customer_id": c}]} for c in ENTITIES[:10]
    ]  # served from the online store: consistent
    _send(router, with_keys)
    assert router.request_log is not None
    router.request_log.add(
        "own",
        "v1",
        [
            {"customer_id": c, **{n: r[n] for n in SERVED}, "charges": r["charges"] + 5.0}
            for c, r in zip(ENTITIES[:10], online, strict=True)
            if r is not None
        ],
        [[0.9]] * 10,
    )
    router.request_log.flush()
    found = runner.run_driftmonitor(_monitor(maxMismatchShare=0.05), context)
    assert found.skew is not None and found.skew.checked == len(ENTITIES) + 20
    [charges] = found.skew.features
    assert charges.feature == "charges" and charges.mismatches == 10
    assert charges.example is not None and "served" in charges.example
    assert found.skew.skewed_features == ["charges"]
    told = {c.type: c for c in found.conditions}["Skewed"]
    assert told.status == ConditionStatus.TRUE and "charges" in told.message


def test_a_log_without_keys_is_said_so(tmp_path: Path, ctx: RunContext) -> None:  # noqa: F811
    view = feature_view(ttl="1000d")
    context = ctx.replace(resources={**ctx.resources, view.key: view})
    assert features.run_featureview(view, context, now=START + timedelta(days=40)).phase == "Ready"
    router = _router(context, view)
    _send(router, [{"instances": [{"plan": "basic", "charges": 1.0, "log_charges": 0.69}]}])
    status = runner.run_driftmonitor(_monitor(), context)
    assert status.skew is not None and status.skew.checked == 0
    told = {c.type: c for c in status.conditions}["Skewed"]
    assert (told.status, told.reason) == (ConditionStatus.UNKNOWN, "NoKeyedRequests")


def test_the_router_finds_its_feature_view_where_the_operator_puts_it(
    ctx: RunContext,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import argparse
    import json

    view = feature_view(ttl="1000d")
    context = ctx.replace(resources={**ctx.resources, view.key: view})
    assert features.run_featureview(view, context, now=START + timedelta(days=40)).phase == "Ready"
    # What the operator gives the router's Pod: the view's manifest, no file.
    monkeypatch.setenv("FLYWHEEL_INPUT_MANIFESTS", json.dumps([view.to_wire()]))
    args = argparse.Namespace(
        filename=None, feature_view="customer", artifact_root=str(context.artifact_root)
    )
    lookup = commands._feature_lookup(args)
    [row] = lookup.get([{"customer_id": ENTITIES[0]}])
    assert row is not None and set(SERVED) <= set(row)
    monkeypatch.setenv("FLYWHEEL_INPUT_MANIFESTS", "[]")
    with pytest.raises(SystemExit, match="--feature-view customer: its manifest is not among"):
        commands._feature_lookup(args)
