"""The one local Ray of a test session, shared by every test that needs Ray.

A process can hold only one Ray, so the training tests, the Ray Serve tests and the
benchmarks all take this fixture instead of starting their own. It is started on first use,
never joins another Ray on this machine, and serves its dashboard (Ray Serve's REST API)
on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import s3server

RAY_CPUS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _descendants(root: int) -> list[int]:
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


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start Ray once; yields its dashboard address."""
    import ray

    from flywheel.serving import rayserve
    from flywheel.training import cluster

    # Serve replicas inherit the environment of the process that starts Ray.
    os.environ[rayserve.STATE_DIR_ENV] = str(tmp_path_factory.mktemp("router-state"))
    # A local Ray, as `flywheel run` starts one: Ray Train gets the same settings
    # (no 2 s poll per epoch), so the benchmarks measure what a local run does.
    for name, value in cluster.LOCAL_TRAIN_ENV.items():
        os.environ.setdefault(name, value)
    for attempt in range(6):
        # A new port each time: a failed start can leave its dashboard holding the old one.
        dashboard_port = _free_port()
        try:
            ray.init(
                address="local",
                num_cpus=RAY_CPUS,
                include_dashboard=True,
                dashboard_host="127.0.0.1",
                dashboard_port=dashboard_port,
                configure_logging=False,
                log_to_driver=False,
            )
            break
        except Exception:
            # Ray gives its raylet a fixed 30 s to register; a busy machine can miss it,
            # and the failed start leaves its processes behind.
            ray.shutdown()
            for pid in _descendants(os.getpid()):
                with contextlib.suppress(OSError):
                    if b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.kill(pid, signal.SIGKILL)
            if attempt == 5:
                raise
    try:
        yield {"dashboard": f"http://127.0.0.1:{dashboard_port}"}
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[s3server.S3Server]:
    """A real S3-compatible server (moto, in its own venv) on 127.0.0.1, for the session;
    it refuses requests not signed with its one access key (tests/s3server.py)."""
    with s3server.running(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server
