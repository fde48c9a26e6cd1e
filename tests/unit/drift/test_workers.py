"""A run's features on a thread per usable CPU: results in order, the CPU count bounded
by the container's limit."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from flywheel.drift import workers


def test_results_keep_the_order_of_the_features() -> None:
    assert workers.map_features(lambda i: i * i, range(50)) == [i * i for i in range(50)]
    assert workers.map_features(lambda i: i, []) == []


def test_features_run_on_as_many_threads_as_usable_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers, "usable_cpus", lambda: 2)
    both = threading.Barrier(2, timeout=10)  # passes only if two features run at once

    def work(i: int) -> str:
        both.wait()
        return threading.current_thread().name

    names = workers.map_features(work, range(4))
    assert len(set(names)) == 2 and all(n.startswith("drift") for n in names)


@pytest.mark.parametrize(
    ("text", "limit"), [("max 100000", None), ("150000 100000", 2), ("50000 100000", 1)]
)
def test_the_containers_cpu_limit_bounds_the_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, limit: int | None
) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text + "\n")
    monkeypatch.setattr(workers, "CPU_MAX", cpu_max)
    assert workers._cgroup_limit() == limit
    assert 1 <= workers.usable_cpus() <= (limit or 1024)


def test_no_cgroup_file_means_no_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "CPU_MAX", tmp_path / "absent")
    assert workers._cgroup_limit() is None
    assert workers.usable_cpus() >= 1
