"""One local Ray per test session, with its dashboard (for Serve's REST API) on
127.0.0.1 and a free port."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel.serving import rayserve


def descendants(root: int) -> list[int]:
    """Every process below `root` (from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# Shared by every module that imports the fixture: pytest makes one fixture per module,
# but a process can hold only one Ray.
_cluster: dict[str, str] = {}
_users = [0]


@pytest.fixture(scope="session")
def serve_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not _cluster:
        _cluster.update(_start(tmp_path_factory))
    _users[0] += 1
    try:
        yield dict(_cluster)
    finally:
        _users[0] -= 1
        if _users[0] == 0:
            import ray
            from ray import serve

            serve.shutdown()
            ray.shutdown()
            _cluster.clear()


def _start(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    import ray

    from tests.components.conftest import free_port

    os.environ[rayserve.STATE_DIR_ENV] = str(tmp_path_factory.mktemp("router-state"))
    http_port = free_port()
    for attempt in range(6):
        # A new port each time: a failed start can leave its dashboard holding the old one.
        dashboard_port = free_port()
        try:
            ray.init(
                address="local",  # never join another Ray on this machine
                num_cpus=2,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=dashboard_port,
                log_to_driver=False,
            )
            break
        except Exception:
            # Ray gives its raylet a fixed 30 s to register; a busy machine can miss it,
            # and the failed start leaves its processes behind.
            ray.shutdown()
            for pid in descendants(os.getpid()):
                with contextlib.suppress(OSError):
                    if b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
            if attempt == 5:
                raise
    return {
        "dashboard": f"http://127.0.0.1:{dashboard_port}",
        "http": f"http://127.0.0.1:{http_port}",
        "port": str(http_port),
    }
