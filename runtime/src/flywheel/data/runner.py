"""The Dataset entrypoint: spec + context -> a published snapshot and its status.

Used by `flywheel run` (through the local executor) and by `flywheel dataset ingest`,
which is what a Job runs in a cluster.
"""

from __future__ import annotations

import os
import posixpath
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from pyarrow import fs as pafs

from flywheel import redaction
from flywheel.api import conditions
from flywheel.api.dataset import Dataset, DatasetStatus, OnError
from flywheel.data import ingest, snapshots
from flywheel.data.errors import IngestError
from flywheel.entrypoints import RunContext
from flywheel.storage import credentials, publish, uris
from flywheel.storage.uris import Location

# Set by Kubernetes in every Pod: there, a path means the Pod's own filesystem.
IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"


def dataset_root(dataset: Dataset, context: RunContext) -> Location:
    """Where the versions of a Dataset live: spec.destination, or the artifact root."""
    if dataset.spec.destination:
        return uris.resolve(dataset.spec.destination, context.base_dir)
    namespace = dataset.metadata.namespace or context.namespace
    path = uris.inside(context.artifact_root, "datasets", namespace, dataset.name)
    return uris.resolve(str(path))


def source_location(dataset: Dataset, context: RunContext) -> Location:
    ref = dataset.spec.source.credentials_secret_ref
    secret = credentials.secret_path(ref.name, ref.key) if ref else None
    return uris.resolve(dataset.spec.source.uri, context.base_dir, secret)


def owner(dataset: Dataset, context: RunContext) -> publish.Owner:
    return publish.Owner("Dataset", dataset.metadata.namespace or context.namespace, dataset.name)


def run_dataset(
    dataset: Dataset,
    context: RunContext,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> DatasetStatus:
    now = datetime.now(UTC)
    previous = dataset.status or DatasetStatus()
    generation = dataset.metadata.generation
    root: Location | None = None
    try:
        try:
            root = dataset_root(dataset, context)
            source = source_location(dataset, context)
        except ValueError as exc:
            raise IngestError(str(exc), reason="InvalidLocation") from None
        check_locations(dataset, source, root, context)
        publish.claim(root, owner(dataset, context))
        cleaned = publish.clean_staging(root)
        result = ingest.ingest(
            dataset.spec, source, root, checkpoint, owner=owner(dataset, context)
        )
    except (IngestError, publish.OwnershipError, ValueError, OSError) as exc:
        try:
            status = _published_status(root, previous) if root else DatasetStatus()
        except OSError:  # the store is unreachable: what was published is unknown here
            status = DatasetStatus(last_ingested=previous.last_ingested)
        status.phase = "Failed"
        reason = getattr(exc, "reason", None) or _reason(exc)
        message = str(exc)
        if isinstance(exc, OSError):
            message = (
                f"{exc}; fix: check that the store is reachable from here (for S3-compatible "
                "stores, $FLYWHEEL_S3_ENDPOINT) and that the credentials are valid"
            )
        status.conditions = conditions.set_condition(
            previous.conditions,
            "Ready",
            False,
            reason,
            redaction.condition_message(message),
            now,
            generation,
        )
        return status
    status = status_from_result(result, root)
    report = result.report
    warn = report.bad_rows and dataset.spec.validation.on_error == OnError.WARN
    reason = "PublishedWithBadRows" if warn else "Published"
    message = f"version {result.version}: {report.summary()}"
    if cleaned:
        message += (
            f"; removed {len(cleaned)} staging directories a killed run left "
            f"({', '.join(cleaned[:3])}{', ...' if len(cleaned) > 3 else ''})"
        )
    status.phase = "Ready"
    status.last_ingested = now
    status.observed_generation = generation
    status.conditions = conditions.set_condition(
        previous.conditions,
        "Ready",
        True,
        reason,
        redaction.condition_message(message),
        now,
        generation,
    )
    return status


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return "StorageUnavailable"
    return "IngestFailed"


def check_locations(
    dataset: Dataset, source: Location, root: Location, context: RunContext
) -> None:
    """Refuse what would lose or leak data before anything is read or written.

    - in a Pod, a local source path that is not there names what a Pod can read;
    - a local destination stays inside the artifact root (checked after resolving);
    - the destination is not inside the source (a later ingest would read its output),
      nor the source inside the destination.
    """
    uri = dataset.spec.source.uri
    local_source = urlparse(uri).scheme in ("", "file")
    if local_source and os.environ.get(IN_CLUSTER_ENV) and not os.path.lexists(source.path):
        raise IngestError(
            "a local path in a Pod means the Pod's own filesystem, where the source is not",
            file=redaction.redact(uri),
            fix="put the data where Pods read it: pvc://<claim>/<path>, s3://, gs:// or http(s)://",
            reason="SourceNotReachable",
        )
    destination = dataset.spec.destination
    if destination and urlparse(destination).scheme in ("", "file"):
        resolved = Path(os.path.realpath(root.path))
        artifacts = Path(os.path.realpath(context.artifact_root))
        if not resolved.is_relative_to(artifacts):
            raise IngestError(
                f"spec.destination resolves to {resolved}, outside the artifact root {artifacts}",
                file=redaction.redact(destination),
                fix="leave spec.destination out (snapshots go under the artifact root), "
                "or use a path inside it, a pvc://, s3:// or gs:// URI",
                reason="DestinationOutsideRoot",
            )
    if source.is_http or type(source.filesystem) is not type(root.filesystem):
        return
    source_path, root_path = _comparable(source), _comparable(root)
    if source_path == root_path or _below(root_path, source_path):
        raise IngestError(
            "the destination is inside the source directory: every later ingest would "
            "read its own output",
            file=redaction.redact(root.uri),
            fix="give spec.destination a path outside spec.source.uri",
            reason="DestinationInsideSource",
        )
    if _below(source_path, root_path):
        raise IngestError(
            "the source is inside the destination: the snapshot store is not a source",
            file=redaction.redact(uri),
            fix="read the published snapshot through a FeatureView, or give the Dataset "
            "another source",
            reason="SourceInsideDestination",
        )


def _comparable(location: Location) -> str:
    """The directory part of a location (a glob's base), resolved where it is local."""
    path = location.path.split("*", 1)[0]
    path = path if location.path == path else posixpath.dirname(path)
    path = path.rstrip("/")
    if isinstance(location.filesystem, pafs.LocalFileSystem):
        return os.path.realpath(path)
    return path


def _below(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


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
