"""Servers for the serving tests: an event loop in a thread, uvicorn and gRPC on it,
every one on 127.0.0.1 and a free port, and a small TorchScript model."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import torch
import uvicorn

from tests.components.conftest import free_port

T = TypeVar("T")


class Loop:
    """An asyncio loop running in a daemon thread; `run` calls a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Server:
    """uvicorn serving `app` on the loop; `url` once started."""

    def __init__(self, loop: Loop, app: Any, **options: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,  # a server whose requests hang on purpose stops too
            **options,
        )
        self.server = uvicorn.Server(config)
        self.loop = loop
        self.task = asyncio.run_coroutine_threadsafe(self.server.serve(), loop.loop)
        wait_for(lambda: self.server.started or self.task.done(), 30, "uvicorn to start")
        if self.task.done():
            self.task.result()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.task.result(30)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Linear(torch.nn.Module):
    """sigmoid(x . w + b): a score per row."""

    def __init__(self, weights: list[float], bias: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(weights).reshape(-1, 1))
        self.b = torch.nn.Parameter(torch.tensor([bias]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x @ self.w + self.b).reshape(-1)


def write_model(
    directory: Path, weights: list[float], bias: float = 0.0, features: list[str] | None = None
) -> Path:
    """A model artifact: a TorchScript `model.pt` (and `metadata.json` naming features)."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in torch 2.15
        torch.jit.script(Linear(weights, bias)).save(str(directory / "model.pt"))
    if features is not None:
        (directory / "metadata.json").write_text(json.dumps({"features": features}))
    return directory
