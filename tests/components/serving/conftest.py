"""Model servers on 127.0.0.1: Flywheel's own v2 server over HTTP and gRPC."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flywheel.serving import grpcserver, modelserver, predictor
from tests.components.conftest import free_port
from tests.components.serving import support

FEATURES = ["tenure", "charges", "calls"]


@pytest.fixture(scope="session")
def loop() -> Iterator[support.Loop]:
    loop = support.Loop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "v1": support.write_model(root / "v1", [0.5, -0.25, 1.0], 0.1, FEATURES),
        "v2": support.write_model(root / "v2", [0.5, -0.25, 1.1], 0.1, FEATURES),
    }


@dataclasses.dataclass
class Served:
    server: modelserver.ModelServer
    http: support.Server
    grpc_port: int
    grpc: Any

    @property
    def url(self) -> str:
        return self.http.url


def serve_model(loop: support.Loop, name: str, version: str, path: Path) -> Served:
    server = modelserver.ModelServer(name, version, predictor.load_predictor(str(path)))
    http = support.Server(loop, modelserver.app(server))
    port = free_port()
    grpc = loop.run(grpcserver.start(server, "127.0.0.1", port))
    return Served(server, http, port, grpc)


@pytest.fixture(scope="session")
def model_v1(loop: support.Loop, artifacts: dict[str, Path]) -> Iterator[Served]:
    served = serve_model(loop, "churn", "v1", artifacts["v1"])
    yield served
    served.http.stop()
    loop.run(served.grpc.stop(None))


@pytest.fixture(scope="session")
def model_v2(loop: support.Loop, artifacts: dict[str, Path]) -> Iterator[Served]:
    served = serve_model(loop, "churn", "v2", artifacts["v2"])
    yield served
    served.http.stop()
    loop.run(served.grpc.stop(None))
