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

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def world_context(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    directory: Path = tmp_path_factory.mktemp("world")
    return world.build(directory)
