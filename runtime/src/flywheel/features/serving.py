"""Online feature lookups: a Python API and a small HTTP endpoint.

`get_online_features` answers what a training set gives a label at `now`: the entity's
latest materialized row, if it is not older than the ttl, with its windows combined from
their tiles as of `now`. Entity values are read by the type of their key column, so
`{"id": "7"}` and `{"id": 7}` name the same entity when the column holds strings.

HTTP (Starlette on uvicorn):

    POST /v1/features/<view>   {"entities": [{"customer_id": "C000001"}], "at": "<ISO time>"?}
      -> 200 {"view": ..., "features": [{"plan": "basic", ...} | null per entity]}
    GET  /healthz              -> 200 {"status": "ok", "views": [...]}

Every request is bounded (`Limits`): a Content-Length that is not a number is a 400 (from
the HTTP parser), a body over the limit a 413 (announced or streamed), a body that stops
arriving a 408, too many entities a 400. A store that fails answers 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import socket
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flywheel.api.featureview import FeatureView
from flywheel.features import materialize, online, pit, tiles


@dataclasses.dataclass
class OnlineView:
    """An open online store and what is needed to answer lookups from it."""

    view: FeatureView
    store: online.OnlineStore
    # join key -> "string" | "integer" | "float" | "other": the key columns' types
    key_kinds: dict[str, str] = dataclasses.field(default_factory=dict)

    # Cached: parsed once per open view, not once per lookup.
    @functools.cached_property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.view.spec.features]

    @functools.cached_property
    def ttl_micros(self) -> int:
        return pit.duration_micros(self.view.spec.ttl)

    @functools.cached_property
    def windows(self) -> list[tiles.Window]:
        return tiles.of_spec(self.view.spec)

    def keys_of(self, entities: Sequence[online.Entity]) -> list[str]:
        join_keys = self.view.spec.join_keys
        missing = [k for k in join_keys for e in entities if k not in e]
        if missing:
            raise ValueError(f"entities must give {', '.join(join_keys)}; missing {missing[0]}")
        return [
            online.entity_key_json([key_value(e[k], self.key_kinds.get(k)) for k in join_keys])
            for e in entities
        ]

    def get(
        self, entities: Sequence[online.Entity], now: datetime | None = None
    ) -> list[online.Row | None]:
        """Per entity: {feature: value}, or None when unknown or older than the ttl."""
        now_micros = materialize.to_micros(now or datetime.now(UTC))
        documents = self.store.read(self.keys_of(entities))
        ttl, windows, names = self.ttl_micros, self.windows, self.feature_names
        rows = [online.decode(d, now_micros, ttl, windows) for d in documents]
        if not windows:  # stored in feature order already
            return rows
        return [None if r is None else {n: r[n] for n in names} for r in rows]

    def why_missing(self, entities: Sequence[online.Entity], now: datetime) -> list[str | None]:
        """Per entity without features at `now`: why (never stored, expired, or stored
        only later); None where there are features.

        The ttl is the view's, the same the point-in-time join applies.
        """
        now_micros = materialize.to_micros(now)
        times = self.store.event_times(self.keys_of(entities))
        ttl = self.ttl_micros
        out: list[str | None] = []
        for t in times:
            if t is None:
                out.append("no value stored for this entity (never seen, or not materialized)")
            elif t > now_micros:
                out.append(f"the first value stored is at {_iso(t)}, after {now.isoformat()}")
            elif now_micros - t > ttl:
                out.append(
                    f"expired: last value at {_iso(t)}, ttl {self.view.spec.ttl}, "
                    f"asked at {now.isoformat()}"
                )
            else:
                out.append(None)
        return out


def key_kind(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    return "other"


def key_value(value: Any, kind: str | None) -> Any:
    """An entity value as its key column holds it: text from a command line or JSON
    numbers become strings for a string column and numbers for a numeric one.

    >>> key_value(7, "string"), key_value("007", "integer"), key_value("007", "string")
    ('7', 7, '007')
    """
    if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if kind == "integer" and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an integer key") from None
    if kind == "float" and isinstance(value, str | int) and not isinstance(value, bool):
        return float(value)
    return value


def _iso(micros: int) -> str:
    return materialize.from_micros(micros).isoformat()


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may take."""

    max_body_bytes: int = 1 << 20
    max_entities: int = 1000
    # Between two parts of a body; a client that stops sending gets a 408.
    body_timeout_seconds: float = 10.0
    keep_alive_seconds: float = 5.0
    max_connections: int = 256
    max_header_bytes: int = 16 * 1024


def app(views: dict[str, OnlineView], limits: Limits | None = None) -> ASGIApp:
    """The feature server as an ASGI application."""
    limits = limits or Limits()

    async def healthz(request: Request) -> Response:
        return _json(200, {"status": "ok", "views": sorted(views)})

    async def features(request: Request) -> Response:
        name = request.path_params["view"]
        opened = views.get(name)
        if opened is None:
            return _json(404, {"error": f"unknown view {name!r}; served: {sorted(views)}"})
        body = await request.body()
        try:
            entities, now = parse_request(body, limits.max_entities)
            rows = await run_in_threadpool(opened.get, entities, now)
        except ValueError as exc:
            return _json(400, {"error": f"bad request: {exc}"})
        except online.StoreError as exc:
            return _json(503, {"error": f"online store unavailable: {exc}"})
        return _json(200, {"view": name, "features": rows})

    async def not_found(request: Request, exc: Exception) -> Response:
        return _json(404, {"error": "not found; POST /v1/features/<view>"})

    async def wrong_method(request: Request, exc: Exception) -> Response:
        return _json(405, {"error": "POST /v1/features/<view>, GET /healthz"})

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/features/{view}", features, methods=["POST"]),
    ]
    inner = Starlette(routes=routes, exception_handlers={404: not_found, 405: wrong_method})
    return _BoundedBody(inner, limits)


def parse_request(body: bytes, max_entities: int) -> tuple[list[online.Entity], datetime | None]:
    """The entities and the time of a lookup request; ValueError says what is wrong.

    >>> parse_request(b'{"entities": [{"id": 1}], "at": "2026-01-01T00:00:00Z"}', 10)
    ([{'id': 1}], datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))
    """
    try:
        request = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(request, dict) or "entities" not in request:
        raise ValueError('expected {"entities": [{<join key>: <value>, ...}, ...]}')
    entities = request["entities"]
    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise ValueError("entities must be a list of objects")
    if len(entities) > max_entities:
        raise ValueError(f"{len(entities)} entities; at most {max_entities} per request")
    at = request.get("at")
    return entities, parse_time(at) if at is not None else None


def parse_time(text: Any) -> datetime:
    """An ISO 8601 time; a time without a zone is UTC."""
    if not isinstance(text, str):
        raise ValueError(f"'at' must be an ISO 8601 time string, not {type(text).__name__}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'at' is not an ISO 8601 time: {text[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _json(code: int, body: Any) -> Response:
    data = json.dumps(body, default=str).encode()
    return Response(data, status_code=code, media_type="application/json")


class _BoundedBody:
    """ASGI middleware: the body is read here, bounded in size and in time, before the
    application sees it; a body over the limit or one that stops arriving is answered
    here and never reaches a handler."""

    def __init__(self, inner: ASGIApp, limits: Limits) -> None:
        self.inner = inner
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        limit = self.limits.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _send_error(send, 400, "Content-Length must be a non-negative integer")
            return
        if declared is not None and int(declared) > limit:
            await _send_error(send, 413, f"the body is over {limit} bytes")
            return
        parts: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.limits.body_timeout_seconds)
            except TimeoutError:
                await _send_error(send, 408, "the body stopped arriving")
                return
            if message["type"] != "http.request":  # the client went away
                return
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > limit:
                await _send_error(send, 413, f"the body is over {limit} bytes")
                return
            more = message.get("more_body", False)
        body = b"".join(parts)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.inner(scope, replay, send)


async def _send_error(send: Send, code: int, error: str) -> None:
    data = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class FeatureServer:
    """uvicorn serving `app` on a socket bound at construction (port 0 picks one).

    `serve_forever()` blocks until `shutdown()`, from any thread.
    """

    def __init__(self, asgi: ASGIApp, host: str, port: int, limits: Limits) -> None:
        import uvicorn

        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self.socket = socket.socket(family, kind, proto)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(address)
        self.socket.listen(128)
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        config = uvicorn.Config(
            asgi,
            http="h11",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_keep_alive=int(max(1, limits.keep_alive_seconds)),
            limit_concurrency=limits.max_connections,
            h11_max_incomplete_event_size=limits.max_header_bytes,
        )
        self._server = uvicorn.Server(config)
        self._started = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        self._started.set()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._server.should_exit = True
        if self._started.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        self.socket.close()


def serve(
    views: dict[str, OnlineView], host: str, port: int, limits: Limits | None = None
) -> FeatureServer:
    """A bound-but-not-running server; call `serve_forever()` on it."""
    limits = limits or Limits()
    return FeatureServer(app(views, limits), host, port, limits)
