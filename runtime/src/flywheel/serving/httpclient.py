"""A small keep-alive HTTP/1.1 client: the router's calls to version servers, and the
local executor's replayed traffic to the router (flywheel.local.deployment).

    client = HttpClient("http://127.0.0.1:8000")
    reply = await client.request("POST", "/v2/models/churn/infer", body, headers, timeout=0.5)
    reply.status, reply.headers["content-type"], reply.body

The router makes one call per request to a server it knows, so this does only that: a
pool of persistent connections (asyncio protocols, responses parsed by httptools, the
parser uvicorn uses), one request at a time on each, a timeout per call. It costs about a
tenth of the CPU of a general client (httpx), which is most of the router's own work.

- A call that times out, is cancelled or fails closes its connection: a late answer
  must never be read as the next call's.
- A call on a pooled connection that the server closed while it was idle (uvicorn
  closes them after 5 s) is retried once on a new connection, when no byte of an
  answer came back; the call never reached the server's application.
- At most `max_connections` are open; more calls wait for one within their timeout.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httptools


class HttpError(Exception):
    """The server could not be reached, closed the connection, or answered nonsense."""


class HttpTimeout(HttpError):
    """No complete answer within the call's timeout."""


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class _Connection(asyncio.Protocol):
    """One connection; `call` sends a request and waits for its whole answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Reply] | None = None
        self.closed = False
        self.answering = False  # a byte of the current answer has come
        self.reusable = True
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answering = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"bad HTTP answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(HttpError(f"connection closed by the server{f': {exc}' if exc else ''}"))

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self._headers = {}
        self._chunks = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            waiter.set_result(Reply(self.parser.get_status_code(), self._headers, body))

    # --- use ---

    def call(self, data: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None
        self.answering = False
        self.waiter = self.loop.create_future()
        self.transport.write(data)
        return self.waiter

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Persistent connections to one server (`http://host:port`, no TLS)."""

    def __init__(self, url: str, max_connections: int = 256) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"the URL must be http://host[:port], not {url!r}")
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.max_connections = max_connections
        self._host_header = f"host: {parsed.netloc}\r\n".encode()
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Reply:
        """The server's answer, whatever its status; HttpError when there is none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        for name, value in (headers or {}).items():
            head.append(f"{name}: {value}\r\n".encode())
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        data = b"".join([*head, body])
        for attempt in (1, 2):
            conn, reused = await self._connection(loop, deadline)
            try:
                reply = await self._answer(loop, conn, data, deadline)
            except HttpTimeout:
                conn.close()
                self._release(conn)
                raise
            except HttpError:
                retry = reused and not conn.answering and attempt == 1
                conn.close()
                self._release(conn)
                if retry:
                    continue
                raise
            except BaseException:  # cancelled: the answer may still come; drop it
                conn.close()
                self._release(conn)
                raise
            self._release(conn)
            return reply
        raise AssertionError("unreachable")

    async def _answer(
        self, loop: asyncio.AbstractEventLoop, conn: _Connection, data: bytes, deadline: float
    ) -> Reply:
        waiter = conn.call(data)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    async def _connection(
        self, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> tuple[_Connection, bool]:
        """An idle connection (reused=True), or a new one once a slot is free."""
        if self._closed:
            raise HttpError("the client is closed")
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
            self._open -= 1
        while self._open >= self.max_connections:
            slot = loop.create_future()
            self._slot_waiters.append(slot)
            timer = loop.call_at(deadline, _expire, slot)
            try:
                await slot
            finally:
                timer.cancel()
            if self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
                self._open -= 1
        self._open += 1
        try:
            remaining = max(0.0, deadline - loop.time())
            async with asyncio.timeout(remaining):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(loop), self.host, self.port
                )
        except TimeoutError:
            self._open -= 1
            self._wake()
            raise HttpTimeout(f"no connection to {self.host}:{self.port} in time") from None
        except OSError as exc:
            self._open -= 1
            self._wake()
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        # uvloop may call connection_made only after create_connection has returned.
        conn.transport = transport
        return conn, False

    def _release(self, conn: _Connection) -> None:
        if conn.closed or not conn.reusable or self._closed:
            if not conn.closed:
                conn.close()
            self._open -= 1
        else:
            conn.waiter = None
            self._idle.append(conn)
        self._wake()

    def _wake(self) -> None:
        while self._slot_waiters:
            slot = self._slot_waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
            self._open -= 1


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpTimeout("no answer within the timeout"))
