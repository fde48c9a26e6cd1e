"""The router's keep-alive HTTP client against real servers on 127.0.0.1: uvicorn, and
raw asyncio servers that close, hang or stream on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from flywheel.serving import httpclient
from tests.components.conftest import free_port
from tests.components.serving import support

pytestmark = pytest.mark.runtime

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[str]:
    """A server running `handle` per connection; every connection closed on exit."""
    writers: list[asyncio.StreamWriter] = []

    async def each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(each, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for w in writers:
            w.close()
        await asyncio.sleep(0.05)  # the handlers see their connections close


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length)


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


def app() -> Starlette:
    async def peer(request: Request) -> Response:
        # The client's port tells which connection carried the call.
        assert request.client is not None
        return Response(f"{request.client.port}:{(await request.body()).decode()}")

    async def chunked(_: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for part in (b"one,", b"two,", b"three"):
                yield part

        return StreamingResponse(parts())

    async def status(request: Request) -> Response:
        return Response(b'{"error": "no"}', int(request.path_params["code"]))

    return Starlette(
        routes=[
            Route("/peer", peer, methods=["POST"]),
            Route("/chunked", chunked),
            Route("/status/{code}", status, methods=["POST"]),
        ]
    )


def test_calls_share_a_kept_alive_connection_and_read_any_answer(loop: support.Loop) -> None:
    server = support.Server(loop, app())

    async def go() -> None:
        client = httpclient.HttpClient(server.url)
        try:
            replies = [
                await client.request("POST", "/peer", b"x%d" % i, {"x-a": "b"}) for i in range(20)
            ]
            assert {r.body.split(b":")[0] for r in replies} == {replies[0].body.split(b":")[0]}
            assert replies[7].body.endswith(b":x7") and replies[7].status == 200
            streamed = await client.request("GET", "/chunked")
            assert streamed.body == b"one,two,three"
            assert "content-length" not in streamed.headers  # it came chunked
            failed = await client.request("POST", "/status/500", b"{}")
            assert (failed.status, failed.text) == (500, '{"error": "no"}')
        finally:
            await client.close()

    loop.run(go())
    server.stop()


def test_a_pooled_connection_the_server_dropped_is_retried_once_on_a_new_one() -> None:
    """The server answers the first call of a connection, then closes it on the next
    without answering, as a server does with a connection it found idle too long."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(answer(b"ok"))
        await writer.drain()
        await read_request(reader)
        writer.transport.abort()

    async def go() -> list[bytes]:
        async with raw_server(handle) as url:
            client = httpclient.HttpClient(url)
            try:
                return [(await client.request("POST", "/", b"x", timeout=5)).body for _ in range(3)]
            finally:
                await client.close()

    assert asyncio.run(go()) == [b"ok", b"ok", b"ok"]
    assert len(connections) == 3  # each reuse failed once and was retried on a new one


def test_a_fresh_connection_closed_without_an_answer_is_an_error_not_a_retry() -> None:
    calls: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        calls.append(await read_request(reader))
        writer.transport.abort()

    async def go() -> httpclient.HttpError:
        async with raw_server(handle) as url:
            client = httpclient.HttpClient(url)
            try:
                with pytest.raises(httpclient.HttpError) as caught:
                    await client.request("POST", "/", b"x", timeout=5)
                return caught.value
            finally:
                await client.close()

    error = asyncio.run(go())
    assert not isinstance(error, httpclient.HttpTimeout)
    assert len(calls) == 1


def test_a_call_times_out_and_its_late_answer_is_never_read_as_the_next_ones() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            body = await read_request(reader)
            if body == b"slow":
                await asyncio.sleep(0.3)
            writer.write(answer(body))
            await writer.drain()

    async def go() -> tuple[float, bytes]:
        async with raw_server(handle) as url:
            client = httpclient.HttpClient(url)
            try:
                start = time.monotonic()
                with pytest.raises(httpclient.HttpTimeout):
                    await client.request("POST", "/", b"slow", timeout=0.05)
                waited = time.monotonic() - start
                await asyncio.sleep(0.4)  # the late answer has come by now
                return waited, (await client.request("POST", "/", b"fast", timeout=5)).body
            finally:
                await client.close()

    waited, body = asyncio.run(go())
    assert waited < 0.3 and body == b"fast"


def test_no_more_than_max_connections_are_open_and_waiting_calls_get_one() -> None:
    open_now, most = [0], [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        open_now[0] += 1
        most[0] = max(most[0], open_now[0])
        try:
            while True:
                body = await read_request(reader)
                await asyncio.sleep(0.02)
                writer.write(answer(body))
                await writer.drain()
        finally:
            open_now[0] -= 1

    async def go() -> list[bytes]:
        async with raw_server(handle) as url:
            client = httpclient.HttpClient(url, max_connections=2)
            try:
                calls = [client.request("POST", "/", b"%d" % i, timeout=5) for i in range(8)]
                return [r.body for r in await asyncio.gather(*calls)]
            finally:
                await client.close()

    assert asyncio.run(go()) == [b"%d" % i for i in range(8)]
    assert most[0] == 2


def test_unreachable_is_an_error_and_a_bad_url_is_refused() -> None:
    async def go() -> None:
        client = httpclient.HttpClient(f"http://127.0.0.1:{free_port()}")
        with pytest.raises(httpclient.HttpError, match="cannot connect"):
            await client.request("GET", "/", timeout=2)

    asyncio.run(go())
    with pytest.raises(ValueError, match="http://host"):
        httpclient.HttpClient("https://127.0.0.1:1")
