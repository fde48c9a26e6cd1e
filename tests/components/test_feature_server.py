"""The feature server over real HTTP on 127.0.0.1: answers, and bounded bad requests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flywheel.api.featureview import FeatureView
from flywheel.features import materialize, online, serving

pytestmark = pytest.mark.runtime

T = datetime(2026, 1, 10, tzinfo=UTC)


def view() -> FeatureView:
    return FeatureView.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "FeatureView",
            "metadata": {"name": "customer"},
            "spec": {
                "entities": [{"name": "customer", "joinKey": "customer_id"}],
                "source": {"datasetRef": {"name": "events"}},
                "timestampColumn": "event_time",
                "ttl": "5d",
                "features": [{"name": "plan", "column": "plan"}],
            },
        }
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, serving.OnlineView]]:
    store = online.SQLiteStore(tmp_path / "online.sqlite", "customer")
    t = materialize.to_micros(T)
    store.write([(online.entity_key_json(["C1"]), t, online.encode(t, {"plan": "basic"}))])
    opened = serving.OnlineView(view(), store)
    limits = serving.Limits(max_body_bytes=256, max_entities=3, body_timeout_seconds=0.2)
    running = serving.serve({"customer": opened}, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running.server_address[1], opened
    finally:
        running.shutdown()
        running.server_close()
        thread.join()
        store.close()


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    """Send raw bytes; the status code and body of the answer (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def post(port: int, body: bytes, headers: str = "", path: str = "/v1/features/customer") -> bytes:
    length = "" if "Content-Length" in headers or "chunked" in headers else f"{len(body)}"
    line = f"Content-Length: {length}\r\n" if length else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{line}{headers}\r\n"
    ).encode() + body


def lookup(port: int, payload: Any, path: str = "/v1/features/customer") -> tuple[int, Any]:
    code, body = exchange(port, post(port, json.dumps(payload).encode(), path=path))
    return code, json.loads(body)


def test_a_lookup_answers_what_the_online_view_answers(
    server: tuple[int, serving.OnlineView],
) -> None:
    port, opened = server
    at = "2026-01-11T00:00:00+00:00"
    entities = [{"customer_id": "C1"}, {"customer_id": "C2"}]
    code, answer = lookup(port, {"entities": entities, "at": at})
    assert code == 200
    assert answer == {
        "view": "customer",
        "features": opened.get(entities, datetime.fromisoformat(at)),
    }
    assert answer["features"][0] == {"plan": "basic"}


def test_health_and_unknown_paths(server: tuple[int, serving.OnlineView]) -> None:
    port, _ = server
    code, body = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (code, json.loads(body)) == (200, {"status": "ok", "views": ["customer"]})
    assert lookup(port, {"entities": []}, path="/v1/features/nope")[0] == 404
    assert exchange(port, b"GET /v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 404


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " "])
def test_a_content_length_that_is_not_a_size_is_a_400(
    server: tuple[int, serving.OnlineView], length: str
) -> None:
    port, _ = server
    code, _ = exchange(port, post(port, b"{}", headers=f"Content-Length: {length}\r\n"))
    assert code == 400


def test_a_body_over_the_limit_is_a_413_announced_or_streamed(
    server: tuple[int, serving.OnlineView],
) -> None:
    port, _ = server
    announced = post(port, b"", headers="Content-Length: 1000000000\r\n")
    assert exchange(port, announced)[0] == 413
    chunk = b"x" * 200
    chunked = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(2))
    streamed = post(port, chunked + b"0\r\n\r\n", headers="Transfer-Encoding: chunked\r\n")
    assert exchange(port, streamed)[0] == 413


def test_a_body_that_stops_arriving_is_a_408_not_a_hang(
    server: tuple[int, serving.OnlineView],
) -> None:
    port, _ = server
    assert exchange(port, post(port, b"{", headers="Content-Length: 100\r\n"))[0] == 408


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"entities": {"customer_id": "C1"}}',
        b'{"entities": [1, 2]}',
        b'{"entities": [{"customer_id": "C1"}], "at": "yesterday"}',
        b'{"entities": [{"customer_id": "C1"}], "at": 5}',
        b'{"entities": [{"other": "C1"}]}',
        b'{"entities": [{}, {}, {}, {}]}',
    ],
)
def test_a_bad_request_is_a_400_that_says_why(
    server: tuple[int, serving.OnlineView], payload: bytes
) -> None:
    port, _ = server
    code, body = exchange(port, post(port, payload))
    assert code == 400
    assert json.loads(body)["error"].startswith("bad request: ")
