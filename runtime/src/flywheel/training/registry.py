"""The model registry: versions of a model, published atomically, and their aliases.

    <registry>/models/<name>/
        index.json                 versions (registered or rejected) and aliases, with
                                   when and why each was set
        current.json               the newest registered version (storage.publish)
        versions/<version>/        immutable; manifest.json lists every file
            model.pt2  preprocessing.json  signature.json  metrics.json  lineage.json
            config.json  card.json  card.html  reliability.png  slices.png
            reference.parquet      the training split's features: a drift reference
            triton/<name>/config.pbtxt  triton/<name>/1/model.pt

`<registry>` is `spec.output.registryUri`, else the artifact root. A version is the hash
of its files, so the same training gives the same version. A rejected version (a gate
failed) is only an entry of the index: nothing is published and no alias points to it.
Every change of the index is a read-modify-write under `index.json.lock`
(`publish.exclusive`), so jobs registering the same model at once on a local path or a
PVC all find their entries. On an object store there is no lock: the last of two
simultaneous writers wins, and the other's version directory stays without an entry.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from flywheel.api.trainingjob import TrainingJob
from flywheel.entrypoints import RunContext
from flywheel.storage import publish, uris
from flywheel.storage.uris import Location

INDEX = "index.json"
# The training split's raw features, read by DriftMonitors whose reference is
# servingVersion (flywheel.drift.reference reads the same name: the layout is a contract).
TRAINING_REFERENCE = "reference.parquet"
# At most this many training rows in it: a uniform sample keeps every distribution.
REFERENCE_ROWS = 200_000
CHAMPION = "champion"
CANDIDATE = "candidate"
REGISTERED = "registered"
REJECTED = "rejected"


def model_root(job: TrainingJob, context: RunContext, name: str | None = None) -> Location:
    """A model's root in the job's registry: the output model's, or another `name`'s."""
    name = name or job.spec.output.model_name
    if job.spec.output.registry_uri:
        return uris.resolve(job.spec.output.registry_uri, context.base_dir).join("models", name)
    return uris.resolve(str(context.artifact_root / "models" / name))


def read_index(root: Location) -> dict[str, Any]:
    found = publish.read_json(root.join(INDEX))
    return found or {"model": root.path.rsplit("/", 1)[-1], "versions": {}, "aliases": {}}


def version_location(root: Location, version: str) -> Location:
    return publish.version_location(root, version)


def version_metrics(root: Location, version: str) -> dict[str, float] | None:
    entry = read_index(root)["versions"].get(version)
    if entry is None or entry.get("state") != REGISTERED:
        return None
    metrics: dict[str, float] = entry.get("metrics", {})
    return metrics


def alias(root: Location, name: str) -> str | None:
    found: dict[str, Any] | None = read_index(root)["aliases"].get(name)
    return found["version"] if found else None


def stage(root: Location, local: Path) -> Location:
    """Copy a locally built version directory into the registry's staging area."""
    root.filesystem.create_dir(root.path, recursive=True)
    staging = publish.new_staging(root)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        target = staging.join(path.relative_to(local).as_posix())
        parent = target.path.rsplit("/", 1)[0]
        root.filesystem.create_dir(parent, recursive=True)
        with root.filesystem.open_output_stream(target.path) as f:
            f.write(path.read_bytes())
    return staging


def register(
    root: Location,
    local: Path,
    entry: dict[str, Any],
    now: datetime,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> tuple[str, Location, dict[str, Any]]:
    """Publish a version and give it an alias; returns (version, location, its aliases)."""
    staging = stage(root, local)
    # The commit too: two runs publishing the same version must not move it at once.
    with publish.exclusive(root.join(INDEX)):
        return _register(root, staging, entry, now, checkpoint)


def _register(
    root: Location,
    staging: Location,
    entry: dict[str, Any],
    now: datetime,
    checkpoint: publish.Checkpoint,
) -> tuple[str, Location, dict[str, Any]]:
    manifest = publish.commit(
        root, staging, metadata={"model": entry.get("model")}, checkpoint=checkpoint
    )
    version = manifest["version"]
    index = read_index(root)
    previous = index["versions"].get(version, {})
    index["versions"][version] = {
        **entry,
        "state": REGISTERED,
        "createdAt": previous.get("createdAt", now.isoformat()),
    }
    aliases = index["aliases"]
    given: dict[str, Any] = {}
    champion = aliases.get(CHAMPION)
    if champion is None:
        given[CHAMPION] = {
            "version": version,
            "setAt": now.isoformat(),
            "reason": "the first registered version of the model",
        }
    elif champion["version"] != version:
        given[CANDIDATE] = {
            "version": version,
            "setAt": now.isoformat(),
            "reason": f"passed its gates; champion is {champion['version']}",
        }
    aliases.update(given)
    publish.write_atomic(root.join(INDEX), publish.dumps(index))
    checkpoint("indexed")
    return version, version_location(root, version), given


def set_alias(
    root: Location,
    name: str,
    version: str,
    reason: str,
    now: datetime,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> dict[str, Any]:
    """Point alias `name` at a registered version (a promotion moves `champion`); returns
    the alias entry. The previous entry is kept in `history`, so the index is the lineage
    of every move. Setting the alias it already has changes nothing (a retried Job)."""
    with publish.exclusive(root.join(INDEX)):
        index = read_index(root)
        entry = index["versions"].get(version)
        if entry is None or entry.get("state") != REGISTERED:
            known = sorted(v for v, e in index["versions"].items() if e.get("state") == REGISTERED)
            raise ValueError(
                f"--version: {version!r} is not a registered version of model "
                f"{index['model']!r} under {root.uri} (registered: {', '.join(known) or 'none'})"
            )
        aliases = index["aliases"]
        current = aliases.get(name)
        if current is not None and current["version"] == version:
            return dict(current)
        moved: dict[str, Any] = {"version": version, "setAt": now.isoformat(), "reason": reason}
        if current is not None:
            moved["previous"] = current["version"]
        aliases[name] = moved
        index.setdefault("history", []).append({"alias": name, **moved})
        publish.write_atomic(root.join(INDEX), publish.dumps(index))
        checkpoint("indexed")
        return moved


def reject(root: Location, local: Path, entry: dict[str, Any], now: datetime) -> str:
    """Record a version that failed its gates: in the index only, with no alias."""
    staging = stage(root, local)
    try:
        version, _ = publish.content_version(staging)
    finally:
        publish.discard(staging)
    with publish.exclusive(root.join(INDEX)):
        index = read_index(root)
        index["versions"][version] = {**entry, "state": REJECTED, "createdAt": now.isoformat()}
        publish.write_atomic(root.join(INDEX), publish.dumps(index))
    return version


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
