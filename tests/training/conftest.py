"""One small local Ray for the whole session, and one synthetic world per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.entrypoints import RunContext
from tests.training import world


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    # A Ray node gives its agents 15 s to start; on a crowded machine that can pass, and
    # the next attempt usually finds the imports warm.
    for attempt in range(3):
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False
            )
            break
        except Exception:
            if attempt == 2:
                raise
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def world_context(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    directory: Path = tmp_path_factory.mktemp("world")
    return world.build(directory)
