"""The session's Ray for training, and one synthetic world per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.entrypoints import RunContext
from tests.training import world


@pytest.fixture(scope="session")
def ray_cluster(ray_session: dict[str, str]) -> None:
    """The session's one Ray (tests/conftest.py)."""


@pytest.fixture(scope="module")
def world_context(tmp_path_factory: pytest.TempPathFactory) -> RunContext:
    directory: Path = tmp_path_factory.mktemp("world")
    return world.build(directory)
