"""URIs -> (pyarrow filesystem, path).

Relative paths resolve against a base directory (the manifest's directory when run
locally, the working directory in a pod). `pvc://claim/path` is a PersistentVolumeClaim
mounted at `$FLYWHEEL_PVC_ROOT/claim` (default /mnt/pvc/claim), as the operator mounts it.
`s3://` and `gs://` take credentials from the environment or from a mounted secret file
(see `credentials`). `http(s)://` sources are read-only single files.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs as pafs

from flywheel import entrypoints
from flywheel.entrypoints import DEFAULT_PVC_ROOT, PVC_ROOT_ENV
from flywheel.storage import credentials


@dataclasses.dataclass(frozen=True)
class Location:
    """A path on a filesystem. `uri` is how the location is reported back to users."""

    filesystem: Any  # pyarrow.fs.FileSystem, or None for http(s)
    path: str
    uri: str

    @property
    def is_http(self) -> bool:
        return self.filesystem is None

    def join(self, *parts: str) -> Location:
        path = posixpath.join(self.path, *parts)
        return Location(self.filesystem, path, self.uri.rstrip("/") + "/" + "/".join(parts))


def resolve(uri: str, base_dir: Path | None = None, secret_file: Path | None = None) -> Location:
    """The filesystem and path of a URI or path.

    >>> resolve("./data/x.csv", Path("/srv/manifests")).path
    '/srv/manifests/data/x.csv'
    """
    parsed = urlparse(uri)
    scheme = parsed.scheme
    if scheme in ("", "file"):
        raw = parsed.path if scheme == "file" else uri
        path = Path(raw)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        path = Path(os.path.normpath(path))
        return Location(pafs.LocalFileSystem(), path.as_posix(), local_uri(path))
    if scheme == "pvc":
        root = Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT))
        path = root / parsed.netloc / parsed.path.lstrip("/")
        return Location(pafs.LocalFileSystem(), path.as_posix(), uri)
    if scheme == "s3":
        options = credentials.s3_options(secret_file)
        return Location(pafs.S3FileSystem(**options), _bucket_path(parsed), uri)
    if scheme == "gs":
        options = credentials.gcs_options(secret_file)
        return Location(pafs.GcsFileSystem(**options), _bucket_path(parsed), uri)
    if scheme in ("http", "https"):
        return Location(None, uri, uri)
    raise ValueError(
        f"unsupported URI scheme {scheme!r} in {uri!r}; use a path, file://, "
        "pvc://, s3://, gs://, http:// or https://"
    )


def inside(root: Path, *parts: str) -> Path:
    """`root/parts...`, refused unless it stays inside `root` once resolved (links too).

    >>> inside(Path("/srv/a"), "datasets", "ns", "x").as_posix()
    '/srv/a/datasets/ns/x'
    >>> inside(Path("/srv/a"), "datasets", "../../..", "x")
    Traceback (most recent call last):
    ...
    ValueError: datasets/../../../x leads outside /srv/a
    """
    path = root.joinpath(*parts)
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        raise ValueError(f"{'/'.join(parts)} leads outside {root}")
    return path


def local_uri(path: Path) -> str:
    """file:///..., or pvc://claim/... for a path on a claim mounted under $FLYWHEEL_PVC_ROOT
    (set in Pods that mount claims), so that another Pod can find the same data."""
    root = os.environ.get(PVC_ROOT_ENV)
    if root:
        try:
            relative = path.relative_to(Path(root))
        except ValueError:
            return path.as_uri()
        if relative.parts:
            return "pvc://" + relative.as_posix()
    return path.as_uri()


def local_directory(uri: str, base_dir: Path | None = None) -> Path:
    """A path, file:// or pvc:// URI as a local directory (the artifact root)."""
    return entrypoints.local_directory(uri, base_dir)


def _bucket_path(parsed: Any) -> str:
    return f"{parsed.netloc}/{parsed.path.lstrip('/')}".rstrip("/")
