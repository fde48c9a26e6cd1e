"""The session's Ray for training, and one synthetic world per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.entrypoints import RunContext
from tests.training import world

# Ray Train settings for a test session, read from the driver's environment when a trainer
# starts and passed on to its controller and workers:
# - The controller polls its workers every 2 s, and a worker's report waits in a one-slot
#   queue for that poll: every epoch costs at least 2 s, whatever it computes. A poll that
#   misses its window is retried; only one hanging for 10 min fails a worker.
# - Each fit starts a preemption watcher actor (one more process importing Ray Train) to
#   see cloud nodes being drained; this machine's one local node never is.
RAY_TRAIN_TEST_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}


@pytest.fixture(scope="module", autouse=True)
def quick_ray_train() -> Iterator[None]:
    """Every training module's fits run with RAY_TRAIN_TEST_ENV. Module-scoped, so that
    module fixtures that train see it, and undone after, so that nothing outside
    tests/training (the benchmarks of the product's Ray Train overhead) inherits it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in RAY_TRAIN_TEST_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def ray_cluster(ray_session: dict[str, str]) -> None:
    """The session's one Ray (tests/conftest.py)."""


@pytest.fixture(scope="module")
def world_context(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    directory: Path = tmp_path_factory.mktemp("world")
    return world.build(directory)
