"""Running an ASGI app on uvicorn with a graceful drain, and v2 gRPC beside it.

On SIGTERM (what the kubelet sends): readiness turns 503 so the Service stops sending
new requests, requests in flight finish (up to `drain_seconds`), then uvicorn closes
its connections and the process exits 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        drain_seconds: float,
        on_drain: Callable[[], None] | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.on_drain = on_drain
        self.in_flight = in_flight
        self.draining_since: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining_since is not None:
            self.force_exit = True
            self.should_exit = True
            return
        self.draining_since = time.monotonic()
        if self.on_drain is not None:
            self.on_drain()
        if sig not in (signal.SIGTERM, signal.SIGINT):
            super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.draining_since is not None and not self.should_exit:
            idle = self.in_flight is None or self.in_flight() == 0
            idle = idle and not self.server_state.tasks
            if idle or time.monotonic() - self.draining_since >= self.drain_seconds:
                self.should_exit = True
        return await super().on_tick(counter)


def run(
    app: Any,
    host: str,
    port: int,
    drain_seconds: float,
    service: Any = None,
    grpc_port: int | None = None,
    on_drain: Callable[[], None] | None = None,
    in_flight: Callable[[], int] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # Both are installed with uvicorn[standard]; named so a missing one fails loudly
        # instead of falling back to the pure-Python loop and parser (twice the CPU).
        loop="uvloop",
        http="httptools",
        log_level="info",
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(drain_seconds)),
        access_log=False,
    )
    server = DrainingServer(config, drain_seconds, on_drain, in_flight)

    async def main() -> None:
        grpc_server = None
        if grpc_port is not None and service is not None:
            from flywheel.serving import grpcserver

            grpc_server = await grpcserver.start(service, host, grpc_port)
        try:
            await server.serve()
        finally:
            if grpc_server is not None:
                await grpc_server.stop(drain_seconds)

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(main())
