"""Version servers that misbehave on purpose: errors, latency, hangs, dropped connections."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flywheel.serving import modelserver, service


@dataclasses.dataclass
class Mode:
    kind: str = "ok"  # ok | error | slow | hang
    delay: float = 0.0
    error_every: int = 1  # with kind "error": every n-th request fails
    calls: int = 0


def faulty_app(server: modelserver.ModelServer, mode: Mode) -> Starlette:
    ok = {r.path: r for r in service.v2_routes(server)}
    never = asyncio.Event()

    async def infer(request: Request) -> Any:
        mode.calls += 1
        if mode.kind == "error" and mode.calls % mode.error_every == 0:
            return Response(b'{"error": "injected"}', 500, media_type="application/json")
        if mode.kind == "slow":
            await asyncio.sleep(mode.delay)
        if mode.kind == "hang":
            await never.wait()
        route = ok["/v2/models/{name}/infer"]
        return await route.endpoint(request)

    routes = [r for r in service.v2_routes(server) if r.path != "/v2/models/{name}/infer"]
    return Starlette(routes=[*routes, Route("/v2/models/{name}/infer", infer, methods=["POST"])])


async def start_dropper(port: int) -> asyncio.Server:
    """Accepts a connection, reads the request, closes without answering."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.transport.abort()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def stop_server(server: asyncio.Server) -> None:
    """Close a server on its own loop: `close` from another thread races the loop."""
    server.close()
    await server.wait_closed()
