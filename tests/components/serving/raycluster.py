"""Ray Serve on the session's Ray, for one test module at a time.

Each module that serves gets Serve on a fresh loopback port and shuts Serve down when it
ends, so its replicas do not hold CPUs that the training tests of the same session need.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def serve_cluster(ray_session: dict[str, str]) -> Iterator[dict[str, str]]:
    from ray import serve

    from tests.components.conftest import free_port

    http_port = free_port()
    try:
        yield {
            "dashboard": ray_session["dashboard"],
            "http": f"http://127.0.0.1:{http_port}",
            "port": str(http_port),
        }
    finally:
        serve.shutdown()
