"""The API client's retry policy against a real HTTP server that misbehaves on purpose."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client as k8s

from flywheel_operator.kube import client, retry


class Script:
    """Answers to give, in order: (status, headers, body)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.requests: list[tuple[str, str, str, bytes]] = []


@pytest.fixture
def api() -> Iterator[tuple[Script, client.Kube, list[float]]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.requests.append(
                (self.command, self.path, self.headers["Content-Type"] or "", body)
            )
            status, headers, payload = script.answers.pop(0)
            data = json.dumps(payload).encode()
            self.send_response(status)
            for k, v in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = k8s.Configuration(host=f"http://127.0.0.1:{server.server_port}")
    sleeps: list[float] = []
    kube = client.Kube(
        k8s.ApiClient(config), retry.Backoff(base=0.1, cap=1, attempts=4), sleeps.append
    )
    try:
        yield script, kube, sleeps
    finally:
        kube.api.close()
        server.shutdown()
        server.server_close()


JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ml"}}


def test_5xx_is_retried_with_backoff(api: tuple[Script, client.Kube, list[float]]) -> None:
    script, kube, sleeps = api
    script.answers = [(503, {}, {}), (500, {}, {}), (200, {}, {"metadata": {"name": "j"}})]
    assert kube.apply(JOB) == {"metadata": {"name": "j"}}
    assert sleeps == [0.1, 0.2]
    method, path, content_type, body = script.requests[-1]
    assert (method, content_type) == ("PATCH", "application/apply-patch+yaml")
    assert path == "/apis/batch/v1/namespaces/ml/jobs/j?fieldManager=flywheel-operator&force=true"
    assert json.loads(body) == JOB
    assert kube.writes == 1


def test_429_waits_as_long_as_the_server_says(api: tuple[Script, client.Kube, list[float]]) -> None:
    script, kube, sleeps = api
    script.answers = [(429, {"Retry-After": "3"}, {}), (200, {}, {})]
    kube.patch_status("Dataset", "ml", "d", {"phase": "Ready"})
    assert sleeps == [3.0]
    _, path, content_type, body = script.requests[-1]
    assert path == "/apis/flywheel.dev/v1alpha1/namespaces/ml/datasets/d/status"
    assert content_type == "application/merge-patch+json"
    assert json.loads(body) == {"status": {"phase": "Ready"}}


def test_409_goes_back_to_the_caller_and_a_create_is_idempotent(
    api: tuple[Script, client.Kube, list[float]],
) -> None:
    script, kube, _ = api
    script.answers = [(409, {}, {"reason": "AlreadyExists"})]
    assert (
        kube.create({**JOB, "kind": "TrainingJob", "apiVersion": "flywheel.dev/v1alpha1"}) is None
    )


def test_a_named_event_already_recorded_is_not_an_error(
    api: tuple[Script, client.Kube, list[float]],
) -> None:
    script, kube, _ = api
    owner = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "ml", "uid": "u"},
    }
    script.answers = [(201, {}, {}), (409, {}, {"reason": "AlreadyExists"})]
    for _ in range(2):
        kube.event(owner, "Normal", "Ready", "version v1", "2026-05-01T12:00:00Z", "d.abc")
    bodies = [json.loads(body) for *_, body in script.requests]
    assert [b["metadata"] for b in bodies] == [{"name": "d.abc", "namespace": "ml"}] * 2
    assert kube.writes == 1


def test_other_4xx_are_permanent_with_the_reason(
    api: tuple[Script, client.Kube, list[float]],
) -> None:
    script, kube, sleeps = api
    script.answers = [(422, {}, {"reason": "Invalid", "message": "spec.template: immutable"})]
    with pytest.raises(client.PermanentError) as err:
        kube.apply(JOB)
    assert (err.value.status, err.value.reason, err.value.message) == (
        422,
        "Invalid",
        "spec.template: immutable",
    )
    assert sleeps == []


def test_retries_give_up_after_the_last_attempt(
    api: tuple[Script, client.Kube, list[float]],
) -> None:
    script, kube, sleeps = api
    script.answers = [(500, {}, {})] * 4
    with pytest.raises(client.PermanentError):
        kube.get("Job", "ml", "j")
    assert len(sleeps) == 3


def test_not_found_reads_are_none_and_unknown_kinds_list_empty(
    api: tuple[Script, client.Kube, list[float]],
) -> None:
    script, kube, _ = api
    script.answers = [(404, {}, {}), (404, {}, {})]
    assert kube.get("Job", "ml", "j") is None
    assert kube.select("RayJob", "ml", {"a": "b"}) == []
