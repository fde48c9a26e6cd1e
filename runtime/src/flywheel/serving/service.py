"""What a v2 inference server is, and its HTTP routes (Starlette).

Both Flywheel's model server and the router implement `InferenceService`; `v2_routes`
turns one into the Open Inference Protocol v2 REST endpoints:

    GET  /v2/health/live            200 while the process serves
    GET  /v2/health/ready           200 when it can answer (503 while loading or draining)
    GET  /v2/models/{name}          model metadata
    GET  /v2/models/{name}/ready
    POST /v2/models/{name}/infer    (also /v2/models/{name}/versions/{version}/infer)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flywheel.serving import oip


class ServiceError(Exception):
    """A failure with the HTTP status it answers (and Retry-After seconds, if any)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class InferenceService(Protocol):
    def live(self) -> bool: ...

    def ready(self) -> bool: ...

    def model_names(self) -> list[str]: ...

    def metadata(self, name: str) -> dict[str, Any]: ...

    async def infer(
        self, name: str, request: oip.InferRequest, headers: Mapping[str, str]
    ) -> tuple[oip.InferResponse, dict[str, str]]:
        """The response and extra headers to return (e.g. the version that answered)."""
        ...


def error_response(status: int, message: str, retry_after: float | None = None) -> Response:
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    return Response(oip.error_body(message), status, headers, "application/json")


def v2_routes(service: InferenceService) -> list[Route]:
    async def live(_: Request) -> Response:
        ok = service.live()
        return JSONResponse({"live": ok}, 200 if ok else 503)

    async def ready(_: Request) -> Response:
        ok = service.ready()
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    async def server_metadata(_: Request) -> Response:
        return JSONResponse({"name": "flywheel", "version": "2", "extensions": ["binary_tensor"]})

    async def model_metadata(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in service.model_names():
            return error_response(404, f"no model {name!r}")
        return JSONResponse(service.metadata(name))

    async def model_ready(request: Request) -> Response:
        name = request.path_params["name"]
        ok = name in service.model_names() and service.ready()
        return JSONResponse({"name": name, "ready": ok}, 200 if ok else 503)

    async def infer(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in service.model_names():
            return error_response(404, f"no model {name!r}")
        body = await request.body()
        try:
            decoded = oip.decode_request(body, request.headers.get(oip.HEADER_LENGTH))
            response, extra = await service.infer(name, decoded, request.headers)
        except oip.ProtocolError as exc:
            return error_response(400, str(exc))
        except ServiceError as exc:
            return error_response(exc.status, str(exc), exc.retry_after)
        except Exception as exc:  # a model's own failure is the caller's 500, not a crash
            return error_response(500, f"{type(exc).__name__}: {exc}")
        binary = bool(decoded.parameters.get("binary_data_output", False))
        payload, headers = oip.encode_response(response, decoded.outputs, binary)
        return Response(payload, 200, {**headers, **extra})

    return [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise ServiceError(400, f"the body is not JSON: {exc}") from None
