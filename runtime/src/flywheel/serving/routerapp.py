"""The standalone router: Starlette on uvicorn, in front of the version servers.

    GET  /v2/health/live | /v2/health/ready (503 while draining)
    GET  /v2/models/{name}                  POST /v2/models/{name}/infer
    POST /v1/models/{name}/predict   {"instances": [{"tenure": 3, ...}]}
                                     or {"entities": [{"customer_id": "C1"}]}
         -> {"id": "<request id>", "version": "v2", "predictions": [0.12]}
    POST /v1/models/{name}/feedback  {"id": "<request id>", "reward": 1}  (or "label")
    GET  /v1/models/{name}/rollout   the rollout report (what the analysis needs)
    GET  /metrics                    Prometheus

Responses name the version that answered (`x-flywheel-version`) and the request id
(`x-request-id`); a sticky key comes in the configured header (`x-flywheel-key`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from flywheel.serving import oip, service
from flywheel.serving.configwatch import ConfigMapWatch
from flywheel.serving.router import Router
from flywheel.serving.service import ServiceError

log = logging.getLogger(__name__)

VERSION_HEADER = "x-flywheel-version"
REQUEST_ID_HEADER = "x-request-id"
TIMEOUT_HEADER = "x-flywheel-timeout-ms"


class RouterService:
    """The router as a v2 `InferenceService`: one model, named after the deployment."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self.router.draining

    def model_names(self) -> list[str]:
        return [self.router.config.deployment]

    def metadata(self, name: str) -> dict[str, Any]:
        cfg = self.router.config
        meta = oip.model_metadata(
            name,
            cfg.versions,
            [{"name": "features", "datatype": "FP32", "shape": [-1, len(cfg.features) or -1]}],
            [{"name": "scores", "datatype": "FP32", "shape": [-1]}],
            platform="flywheel-router",
        )
        if cfg.features:
            meta["parameters"] = {"features": list(cfg.features)}
        return meta

    async def infer(
        self, name: str, request: oip.InferRequest, headers: Mapping[str, str]
    ) -> tuple[oip.InferResponse, dict[str, str]]:
        if request.id is None and headers.get(REQUEST_ID_HEADER):
            request.id = headers[REQUEST_ID_HEADER]
        routed = await self.router.infer(
            request, key=headers.get(self.router.config.sticky_header), timeout=_timeout(headers)
        )
        return routed.response, {
            VERSION_HEADER: routed.version,
            REQUEST_ID_HEADER: routed.request_id,
        }


def _timeout(headers: Mapping[str, str]) -> float | None:
    value = headers.get(TIMEOUT_HEADER)
    try:
        return float(value) / 1000 if value else None
    except ValueError:
        return None


async def predict(router: Router, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ServiceError(400, "the body must be a JSON object")
    rows = body.get("instances")
    entities = body.get("entities")
    if (rows is None) == (entities is None):
        raise ServiceError(400, "give either 'instances' (feature rows) or 'entities' (keys)")
    if entities is not None:
        if router.features is None:
            raise ServiceError(400, "this router has no FeatureView to look entities up in")
        if not isinstance(entities, list) or not entities:
            raise ServiceError(400, "'entities' must be a non-empty list of key objects")
        lookup = router.features
        try:
            found = await asyncio.to_thread(lookup.get, entities)
        except ValueError as exc:
            raise ServiceError(400, str(exc)) from None
        missing = [e for e, r in zip(entities, found, strict=True) if r is None]
        if missing:
            raise ServiceError(404, f"no fresh online features for {missing[0]}")
        rows = [r for r in found if r is not None]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ServiceError(400, "'instances' must be a non-empty list of feature objects")
    names = list(router.config.features) or (
        router.features.feature_names if router.features else []
    )
    names = names or list(rows[0])
    request = oip.InferRequest(column_tensors(rows, names), id=_text(body.get("id")))
    key = _text(body.get("key")) or headers.get(router.config.sticky_header)
    logged = [{n: r[n] for n in names} for r in rows]
    if entities is not None:
        # The keys too: a DriftMonitor's skew check recomputes these rows' features offline.
        logged = [{**e, **row} for e, row in zip(entities, logged, strict=True)]
    routed = await router.infer(request, key=key, timeout=_timeout(headers), rows=logged)
    scores = np.asarray(routed.response.output().data)
    if scores.ndim == 2 and scores.shape[1] == 1:  # [rows, 1]: one score per row
        scores = scores.reshape(-1)
    return {"id": routed.request_id, "version": routed.version, "predictions": scores.tolist()}


def column_tensors(rows: list[dict[str, Any]], names: list[str]) -> list[oip.Tensor]:
    """JSON rows -> one v2 input per raw feature column, as the version servers take them.

    The router sends features untransformed: each version applies its own fitted
    preprocessing. Numbers (null -> NaN) go as FP64, text (null -> "") as BYTES.
    """
    tensors = []
    for name in names:
        try:
            values = [r[name] for r in rows]
        except KeyError:
            raise ServiceError(400, f"a row has no feature {name!r}; expected {names}") from None
        if all(v is None or isinstance(v, int | float) for v in values):
            data = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        elif all(v is None or isinstance(v, str) for v in values):
            data = np.array([(v or "").encode() for v in values], dtype=np.object_)
        else:
            raise ServiceError(
                400, f"feature {name!r} mixes numbers and text (or holds lists): give one type"
            )
        tensors.append(oip.Tensor(name, data))
    return tensors


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def app(
    router: Router,
    config_path: Path | None = None,
    reload_interval: float = 1.0,
    lifespan: bool = True,
    configmap: ConfigMapWatch | None = None,
) -> ASGIApp:
    """The router's ASGI app. `lifespan=False` where the host runs the background work
    (Ray Serve: `Router.start_background` from `reconfigure`). `configmap`: the config
    comes from the API server (configwatch.py); the file is then only the one it started
    with."""
    svc = RouterService(router)

    def ours(request: Request) -> None:
        if request.path_params["name"] != router.config.deployment:
            raise ServiceError(404, f"no model {request.path_params['name']!r}")

    async def predict_route(request: Request) -> Response:
        try:
            ours(request)
            result = await predict(router, await service.json_body(request), request.headers)
        except ServiceError as exc:
            return service.error_response(exc.status, str(exc), exc.retry_after)
        headers = {VERSION_HEADER: result["version"], REQUEST_ID_HEADER: result["id"]}
        return JSONResponse(result, headers=headers)

    async def feedback_route(request: Request) -> Response:
        try:
            ours(request)
            body = await service.json_body(request)
            if not isinstance(body, dict) or not body.get("id"):
                raise ServiceError(400, "give the request 'id' and a 'reward' or 'label'")
            version = router.feedback(
                str(body["id"]),
                reward=_number(body.get("reward")),
                label=_number(body.get("label")),
                version=_text(body.get("version")),
            )
        except ServiceError as exc:
            return service.error_response(exc.status, str(exc))
        return JSONResponse({"id": body["id"], "version": version})

    async def rollout_route(request: Request) -> Response:
        try:
            ours(request)
        except ServiceError as exc:
            return service.error_response(exc.status, str(exc))
        return JSONResponse(router.rollout_report())

    async def metrics_route(_: Request) -> Response:
        return Response(generate_latest(router.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def run(_: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(router.run_background())]
        if configmap is not None:
            tasks.append(asyncio.create_task(configmap.run()))
        elif config_path is not None:
            tasks.append(asyncio.create_task(watch_config(router, config_path, reload_interval)))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await router.close()

    routes = [
        *service.v2_routes(svc),
        Route("/v1/models/{name}/predict", predict_route, methods=["POST"]),
        Route("/v1/models/{name}/feedback", feedback_route, methods=["POST"]),
        Route("/v1/models/{name}/rollout", rollout_route),
        Route("/metrics", metrics_route),
    ]
    return service.with_fast_infer(
        Starlette(routes=routes, lifespan=run if lifespan else None), svc
    )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ServiceError(400, f"not a number: {value!r}") from None


async def watch_config(router: Router, path: Path, interval: float) -> None:
    """Re-read the config file when its bytes change (a ConfigMap update swaps a symlink,
    so content, not mtime, is what tells). A bad file keeps the running config."""
    seen = _digest(path)
    while True:
        await asyncio.sleep(interval)
        digest = _digest(path)
        if digest is None or digest == seen:
            continue
        seen = digest
        if router.apply(path.read_bytes()):
            log.info("router config reloaded from %s (generation %d)", path, router.generation)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
