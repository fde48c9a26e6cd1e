"""Windows over the request log: by count, by time, both, and a version's first window."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.api.driftmonitor import Window
from flywheel.drift import window
from flywheel.storage import uris
from tests.unit.drift.logs import T0, customers, write_log


def _log(tmp_path: Path) -> uris.Location:
    rng = np.random.default_rng(0)
    # Two parts, one in a subdirectory; an hour of requests a minute apart, then v2.
    write_log(tmp_path / "log", customers(rng, 60), T0, timedelta(minutes=1), part="a")
    later = T0 + timedelta(hours=1)
    write_log(
        tmp_path / "log" / "d=2", customers(rng, 30), later, timedelta(minutes=1), "v2", part="b"
    )
    # A writer's file in progress is not read.
    write_log(tmp_path / "log", customers(rng, 5), T0, part="_tmp")
    return uris.resolve(str(tmp_path / "log"))


def test_count_window_takes_the_latest(tmp_path: Path) -> None:
    live = window.read_window(_log(tmp_path), Window(size=40), T0 + timedelta(days=1))
    assert live.rows == 40
    assert live.start == T0 + timedelta(minutes=50) and live.end == T0 + timedelta(minutes=89)
    assert live.main_version() == "v2"
    assert live.features == ["plan", "monthly_charges", "tenure_days"]


def test_time_window_and_now(tmp_path: Path) -> None:
    now = T0 + timedelta(minutes=70)
    live = window.read_window(_log(tmp_path), Window(duration="30m"), now)
    # (40m, 70m]: v1 at 41m..59m (19 requests), v2 at 60m..70m (11)
    assert live.rows == 30
    assert live.start == T0 + timedelta(minutes=41) and live.end == now
    both = window.read_window(_log(tmp_path), Window(size=10, duration="30m"), now)
    assert both.rows == 10 and both.start == T0 + timedelta(minutes=61)


def test_first_window_of_a_version(tmp_path: Path) -> None:
    now = T0 + timedelta(days=1)
    location = _log(tmp_path)
    first = window.read_window(location, Window(size=10), now, model_version="v1", first=True)
    assert first.rows == 10 and first.start == T0 and first.end == T0 + timedelta(minutes=9)
    by_time = window.read_window(location, Window(duration="5m"), now, None, "v2", first=True)
    assert by_time.rows == 5 and by_time.start == T0 + timedelta(hours=1)


def test_nothing_logged_is_an_empty_window(tmp_path: Path) -> None:
    live = window.read_window(uris.resolve(str(tmp_path / "none")), Window(size=10), T0)
    assert live.rows == 0 and live.start is None and live.main_version() is None


def test_columns_are_projected(tmp_path: Path) -> None:
    live = window.read_window(
        _log(tmp_path), Window(size=10), T0 + timedelta(days=1), columns=["time", "plan", "nope"]
    )
    assert live.table.column_names == ["time", "plan"]


def test_parts_with_other_columns_and_naive_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    first = customers(rng, 10)
    write_log(tmp_path / "log", first, T0, part="a")
    later = customers(rng, 10) | {"country": np.array(["DE"] * 10)}
    path = write_log(tmp_path / "log", later, T0 + timedelta(minutes=1), part="b")
    table = pq.read_table(path)
    naive = table.set_column(1, "time", table.column("time").cast(pa.timestamp("ms")))
    pq.write_table(naive, path)  # a writer that stores UTC without a zone, in ms
    live = window.read_window(
        uris.resolve(str(tmp_path / "log")), Window(size=15), T0 + timedelta(days=1)
    )
    assert live.rows == 15 and live.table.column("country").null_count == 5
    assert live.end == T0 + timedelta(minutes=1, seconds=9)


def test_a_log_without_times_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "log").mkdir()
    pq.write_table(pa.table({"plan": ["a"]}), tmp_path / "log" / "x.parquet")
    with pytest.raises(window.LogError, match=r"x\.parquet has no 'time' column"):
        window.read_window(uris.resolve(str(tmp_path / "log")), Window(size=10), T0)
