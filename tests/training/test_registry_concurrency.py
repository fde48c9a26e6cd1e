"""The registry's index under writers that register one model at the same moment."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.storage import publish, uris
from flywheel.training import registry

WRITERS = 8


def _register(root_path: str, local: str, number: int, start: Any, rejected: bool) -> None:
    """One training's last step, in its own process, released with the others at once."""
    root = uris.resolve(root_path)
    entry = {"model": "churn", "trainingJob": f"tj-{number}"}
    start.wait(timeout=120)
    now = datetime.now(UTC)
    if rejected:
        registry.reject(root, Path(local), entry, now)
    else:
        registry.register(root, Path(local), entry, now)


def test_writers_registering_at_once_all_find_their_versions(tmp_path: Path) -> None:
    root = tmp_path / "models" / "churn"
    locals_ = []
    for n in range(WRITERS):
        local = tmp_path / f"built-{n}"
        local.mkdir()
        (local / "metrics.json").write_text(f'{{"auc": 0.{n}}}')  # a version per writer
        locals_.append(local)
    # spawn, not fork: pyarrow's threads do not survive a fork.
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(WRITERS)
    procs = [
        ctx.Process(target=_register, args=(str(root), str(local), n, start, n % 4 == 3))
        for n, local in enumerate(locals_)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0] * WRITERS

    index = registry.read_index(uris.resolve(str(root)))
    jobs = {e["trainingJob"]: e["state"] for e in index["versions"].values()}
    expected = {
        f"tj-{n}": registry.REJECTED if n % 4 == 3 else registry.REGISTERED for n in range(WRITERS)
    }
    assert jobs == expected
    # Every registered version was published whole, and one of them is champion.
    location = uris.resolve(str(root))
    for version, entry in index["versions"].items():
        manifest = publish.read_json(
            registry.version_location(location, version).join(publish.MANIFEST)
        )
        assert (manifest is not None) == (entry["state"] == registry.REGISTERED), version
    assert index["aliases"][registry.CHAMPION]["version"] in index["versions"]
