"""What a v2 inference server is, and its HTTP routes (Starlette).

Both Flywheel's model server and the router implement `InferenceService`; `v2_routes`
turns one into the Open Inference Protocol v2 REST endpoints:

    GET  /v2/health/live            200 while the process serves
    GET  /v2/health/ready           200 when it can answer (503 while loading or draining)
    GET  /v2/models/{name}          model metadata
    GET  /v2/models/{name}/ready
    POST /v2/models/{name}/infer    (also /v2/models/{name}/versions/{version}/infer)

`with_fast_infer` puts the one hot endpoint, `POST /v2/models/{name}/infer`, in front
of the Starlette app as plain ASGI: same answers, a fraction of the CPU.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

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
        status, payload, headers = await answer(
            service, name, await request.body(), request.headers
        )
        return Response(payload, status, headers)

    return [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
    ]


async def answer(
    service: InferenceService, name: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    """One infer call: status, body and headers of the answer (errors as v2 errors)."""
    try:
        decoded = oip.decode_request(body, headers.get(oip.HEADER_LENGTH))
        response, extra = await service.infer(name, decoded, headers)
    except oip.ProtocolError as exc:
        return _error(400, str(exc))
    except ServiceError as exc:
        return _error(exc.status, str(exc), exc.retry_after)
    except Exception as exc:  # a model's own failure is the caller's 500, not a crash
        return _error(500, f"{type(exc).__name__}: {exc}")
    binary = bool(decoded.parameters.get("binary_data_output", False))
    payload, out = oip.encode_response(response, decoded.outputs, binary)
    return 200, payload, {**out, **extra}


def _error(
    status: int, message: str, retry_after: float | None = None
) -> tuple[int, bytes, dict[str, str]]:
    headers = {"content-type": "application/json"}
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return status, oip.error_body(message), headers


INFER_PREFIX, INFER_SUFFIX = "/v2/models/", "/infer"


def with_fast_infer(app: ASGIApp, service: InferenceService) -> ASGIApp:
    """`app`, with `POST /v2/models/{name}/infer` answered straight from the ASGI scope.

    The hot endpoint skips Starlette's middleware, route matching and its Request and
    Response objects; it answers exactly as the route in `v2_routes` does. Everything
    else (lifespan too) goes to `app`.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if path.startswith(INFER_PREFIX) and path.endswith(INFER_SUFFIX):
                name = path[len(INFER_PREFIX) : -len(INFER_SUFFIX)]
                if name and "/" not in name:
                    await _fast_infer(service, name, scope, receive, send)
                    return
        await app(scope, receive, send)

    return asgi


class _Disconnected(Exception):
    pass


async def _fast_infer(
    service: InferenceService, name: str, scope: Scope, receive: Receive, send: Send
) -> None:
    if name not in service.model_names():
        status, payload, headers = _error(404, f"no model {name!r}")
    else:
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        # ASGI names headers in lower case; the first of repeated ones wins, as in Starlette.
        given: dict[str, str] = {}
        for key, value in scope["headers"]:
            given.setdefault(key.decode("latin-1"), value.decode("latin-1"))
        status, payload, headers = await answer(service, name, body, _LowerKeys(given))
    raw = [(b"content-length", b"%d" % len(payload))]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class _LowerKeys(dict[str, str]):
    """Header lookups by any case of the name (ASGI gives them in lower case)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError as exc:
        raise ServiceError(400, f"the body is not JSON: {exc}") from None
