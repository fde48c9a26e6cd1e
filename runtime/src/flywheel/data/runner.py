"""The Dataset entrypoint: spec + context -> a published snapshot and its status.

Used by `flywheel run` (through the local executor) and by `flywheel dataset ingest`,
which is what a Job runs in a cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flywheel.api import conditions
from flywheel.api.dataset import Dataset, DatasetStatus, OnError
from flywheel.data import ingest, snapshots
from flywheel.data.errors import IngestError
from flywheel.entrypoints import RunContext
from flywheel.storage import credentials, publish, uris
from flywheel.storage.uris import Location


def dataset_root(dataset: Dataset, context: RunContext) -> Location:
    """Where the versions of a Dataset live: spec.destination, or the artifact root."""
    if dataset.spec.destination:
        return uris.resolve(dataset.spec.destination, context.base_dir)
    namespace = dataset.metadata.namespace or context.namespace
    return uris.resolve(str(context.artifact_root / "datasets" / namespace / dataset.name))


def source_location(dataset: Dataset, context: RunContext) -> Location:
    ref = dataset.spec.source.credentials_secret_ref
    secret = credentials.secret_path(ref.name, ref.key) if ref else None
    return uris.resolve(dataset.spec.source.uri, context.base_dir, secret)


def run_dataset(
    dataset: Dataset,
    context: RunContext,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> DatasetStatus:
    root = dataset_root(dataset, context)
    now = datetime.now(UTC)
    previous = dataset.status or DatasetStatus()
    generation = dataset.metadata.generation
    try:
        result = ingest.ingest(dataset.spec, source_location(dataset, context), root, checkpoint)
    except IngestError as exc:
        status = _published_status(root, previous)
        status.phase = "Failed"
        status.conditions = conditions.set_condition(
            previous.conditions, "Ready", False, exc.reason, str(exc), now, generation
        )
        return status
    status = status_from_result(result, root)
    report = result.report
    warn = report.bad_rows and dataset.spec.validation.on_error == OnError.WARN
    reason = "PublishedWithBadRows" if warn else "Published"
    message = f"version {result.version}: {report.summary()}"
    status.phase = "Ready"
    status.last_ingested = now
    status.observed_generation = generation
    status.conditions = conditions.set_condition(
        previous.conditions, "Ready", True, reason, message[:4000], now, generation
    )
    return status


def status_from_result(result: ingest.Result, root: Location) -> DatasetStatus:
    manifest = result.manifest
    version = result.location
    data_bytes = sum(f["bytes"] for f in manifest["files"] if f["path"].startswith("data/"))
    has_quarantine = any(f["path"].startswith("quarantine/") for f in manifest["files"])
    return DatasetStatus(
        version=result.version,
        rows=manifest["rows"],
        bytes=data_bytes,
        bad_rows=manifest["badRows"],
        snapshot_uri=version.join("data").uri,
        profile_uri=version.join(snapshots.PROFILE_FILE).uri,
        quarantine_uri=version.join("quarantine").uri if has_quarantine else None,
    )


def _published_status(root: Location, previous: DatasetStatus) -> DatasetStatus:
    """After a failed run the last published version is still the one readers get."""
    manifest = publish.current(root)
    if manifest is None:
        return DatasetStatus(last_ingested=previous.last_ingested)
    version = publish.version_location(root, manifest["version"])
    result = ingest.Result(manifest, version, ingest.Report())
    status = status_from_result(result, root)
    status.last_ingested = previous.last_ingested
    return status
