"""Atomic, content-addressed publishing of a directory of files.

    <root>/owner.json                 the one object that publishes here (`claim`)
    <root>/_staging/<run-id>/...      written first, verified, then moved
    <root>/versions/<version>/...     immutable once its manifest.json exists
    <root>/current.json               the one commit: {"version": ...}

A reader follows `current.json` to a version whose `manifest.json` lists its files, so it
sees the old version or the new one, never a partial one. A crash at any point leaves
`current.json` as it was; a re-run writes the same version (the content hash) and
finishes the job. The same content always gives the same version, so publishing twice
is a no-op.

A root belongs to one object: two objects sharing it would make readers of one get the
other's data, so a second owner is refused. Staging directories left by a killed run are
removed by the next run once they are old and no live run holds them (`clean_staging`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from pyarrow import fs as pafs

from flywheel.storage.uris import Location

CURRENT = "current.json"
MANIFEST = "manifest.json"
OWNER = "owner.json"
STAGING = "_staging"
VERSIONS = "versions"
VERSION_CHARS = 16  # of the sha256 hex digest: short for humans, ample against collisions
# A staging directory untouched this long, and held by no live run, was left by a crash.
STALE_STAGING_SECONDS = 6 * 3600

# Called with the name of each phase as it is reached; tests inject crashes through it.
Checkpoint = Callable[[str], None]


def no_checkpoint(phase: str) -> None:
    """The default: nothing happens between phases."""


@dataclasses.dataclass(frozen=True)
class Owner:
    """The object a store root belongs to."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class OwnershipError(Exception):
    """The root belongs to another object; nothing was written."""

    reason = "StoreOwnedByAnother"  # for the Ready condition

    def __init__(self, root: Location, owner: Owner, claimed_by: Owner | None) -> None:
        self.root = root
        self.owner = owner
        self.claimed_by = claimed_by
        who = str(claimed_by) if claimed_by else "a publisher that records no owner"
        super().__init__(
            f"{root.uri} belongs to {owner}; {who} cannot publish there "
            "(one store root per object: give each its own destination or store uri)"
        )


def owner_of(root: Location) -> Owner | None:
    recorded = read_json(root.join(OWNER))
    if not isinstance(recorded, dict):
        return None
    return Owner(str(recorded["kind"]), str(recorded["namespace"]), str(recorded["name"]))


def claim(root: Location, owner: Owner) -> None:
    """Record `owner` in the root, or refuse if another object owns it."""
    recorded = owner_of(root)
    if recorded is None:
        root.filesystem.create_dir(root.path, recursive=True)
        write_atomic(root.join(OWNER), dumps(dataclasses.asdict(owner)))
    elif recorded != owner:
        raise OwnershipError(root, recorded, owner)


# Staging directories this process is writing, with the lock file descriptor that says so.
_held: dict[str, int] = {}


def new_staging(root: Location) -> Location:
    staging = root.join(STAGING, uuid.uuid4().hex)
    root.filesystem.create_dir(staging.path, recursive=True)
    if isinstance(root.filesystem, pafs.LocalFileSystem):
        # Beside the directory, not in it: everything inside is hashed into the version.
        fd = os.open(staging.path + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        _held[staging.path] = fd
    return staging


def _release(staging: Location) -> None:
    fd = _held.pop(staging.path, None)
    if fd is not None:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging.path + ".lock")


def clean_staging(
    root: Location, max_age_seconds: float = STALE_STAGING_SECONDS, now: float | None = None
) -> list[str]:
    """Remove staging directories a killed run left: untouched for `max_age_seconds` and,
    where the filesystem has locks, held by no live run. Returns their names."""
    fs = root.filesystem
    base = root.join(STAGING)
    now = time.time() if now is None else now
    children = fs.get_file_info(pafs.FileSelector(base.path, allow_not_found=True))
    removed = []
    for child in children:
        if child.type != pafs.FileType.Directory or child.path in _held:
            continue
        infos = fs.get_file_info(pafs.FileSelector(child.path, recursive=True))
        times = [i.mtime.timestamp() for i in [child, *infos] if i.mtime is not None]
        if times and now - max(times) < max_age_seconds:
            continue
        if isinstance(fs, pafs.LocalFileSystem) and _locked(child.path + ".lock"):
            continue
        fs.delete_dir(child.path)
        if isinstance(fs, pafs.LocalFileSystem) and os.path.exists(child.path + ".lock"):
            os.unlink(child.path + ".lock")
        removed.append(child.base_name)
    return removed


def _locked(lock_path: str) -> bool:
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def discard(location: Location) -> None:
    info = location.filesystem.get_file_info(location.path)
    if info.type == pafs.FileType.Directory:
        location.filesystem.delete_dir(location.path)
    _release(location)


def list_files(location: Location) -> list[str]:
    """Paths relative to `location` of every file below it, sorted."""
    return sorted(_file_sizes(location))


def _file_sizes(location: Location) -> dict[str, int | None]:
    """Every file below `location`: its relative path and its size."""
    selector = pafs.FileSelector(location.path, recursive=True, allow_not_found=True)
    infos = location.filesystem.get_file_info(selector)
    prefix = location.path.rstrip("/") + "/"
    return {i.path.removeprefix(prefix): i.size for i in infos if i.type == pafs.FileType.File}


@dataclasses.dataclass(frozen=True)
class Digest:
    """A file's sha256 and size, taken from the bytes as they were written."""

    sha256: str
    bytes: int


class HashingSink:
    """A writable file that passes every byte on to `stream` and hashes it on the way:
    the digest `content_version` would read back, without reading the file again (a
    whole download on an object store). Closing it closes `stream`."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._sha256 = hashlib.sha256()
        self._bytes = 0

    def write(self, data: Any) -> int:
        self._sha256.update(data)  # large blocks hash without the GIL
        self._bytes += len(data)
        self.stream.write(data)
        return len(data)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()

    @property
    def closed(self) -> bool:
        return bool(self.stream.closed)

    def writable(self) -> bool:
        return True

    def digest(self) -> Digest:
        return Digest(self._sha256.hexdigest(), self._bytes)


def file_digest(location: Location, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with location.filesystem.open_input_stream(location.path) as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_version(
    staging: Location, salt: str = "", written: dict[str, Digest] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The version of a staged directory (a hash of names and bytes) and its file list.

    `written` holds digests taken while files were written (relative path -> Digest);
    those files are not read again unless their size on the store differs.
    """
    files = []
    total = hashlib.sha256(salt.encode())
    written = written or {}
    for rel, size in sorted(_file_sizes(staging).items()):
        known = written.get(rel)
        if known is not None and known.bytes == size:
            digest = known.sha256
        else:
            loc = staging.join(rel)
            digest = file_digest(loc)
            size = loc.filesystem.get_file_info(loc.path).size
        files.append({"path": rel, "sha256": digest, "bytes": size})
        total.update(f"{rel}\0{digest}\0".encode())
    return total.hexdigest()[:VERSION_CHARS], files


def write_atomic(location: Location, data: bytes) -> None:
    """Write a small file so that readers see the old bytes or the new ones.

    Local: write beside it and rename. Object stores: one PUT is already atomic.
    """
    fs = location.filesystem
    tmp = f"{location.path}.tmp-{uuid.uuid4().hex}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, location.path)


@contextlib.contextmanager
def exclusive(location: Location) -> Iterator[None]:
    """Hold `<location>.lock` while a read-modify-write of `location` runs: one writer at
    a time, across processes and Pods.

    Local paths and PVCs: flock(2), which the kernel releases when its holder dies (no
    stale locks), and which Linux turns into a byte-range lock the NFS server keeps, so
    it also covers Pods on other nodes. Object stores have no lock: the last writer wins.
    """
    if not isinstance(location.filesystem, pafs.LocalFileSystem):
        yield
        return
    # The lock file is never removed: a writer could otherwise lock an unlinked file
    # while the next one locks a new file of the same name.
    fd = os.open(location.path + ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_json(location: Location) -> Any | None:
    fs = location.filesystem
    if fs.get_file_info(location.path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(location.path) as f:
        return json.loads(f.read())


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


def current(root: Location) -> dict[str, Any] | None:
    """The manifest of the committed version under `root`, or None."""
    pointer = read_json(root.join(CURRENT))
    if pointer is None:
        return None
    manifest: dict[str, Any] | None = read_json(root.join(VERSIONS, pointer["version"], MANIFEST))
    return manifest


def version_location(root: Location, version: str) -> Location:
    return root.join(VERSIONS, version)


def commit(
    root: Location,
    staging: Location,
    salt: str = "",
    metadata: dict[str, Any] | None = None,
    checkpoint: Checkpoint = no_checkpoint,
    owner: Owner | None = None,
    written: dict[str, Digest] | None = None,
) -> dict[str, Any]:
    """Move a verified staging directory to its content version and make it current.

    Returns the version manifest: {"version", "files", **metadata}. With an `owner` the
    root is claimed for it; without one, a root another object owns is refused.
    `written` are digests taken as files were staged (see `content_version`).
    """
    fs = root.filesystem
    if owner is not None:
        claim(root, owner)
    else:
        recorded = owner_of(root)
        if recorded is not None:
            raise OwnershipError(root, recorded, None)
    version, files = content_version(staging, salt, written)
    checkpoint("hashed")
    final = version_location(root, version)
    existing = read_json(final.join(MANIFEST))
    if existing is not None:
        # Same content published before (maybe by a run that crashed before the commit).
        discard(staging)
        manifest: dict[str, Any] = existing
    else:
        discard(final)  # a half-moved directory from a crash on a store without rename
        fs.create_dir(root.join(VERSIONS).path, recursive=True)
        _move_tree(staging, final)
        checkpoint("moved")
        manifest = {"version": version, "files": files, **(metadata or {})}
        write_atomic(final.join(MANIFEST), dumps(manifest))
    checkpoint("manifested")
    write_atomic(root.join(CURRENT), dumps({"version": version}))
    checkpoint("committed")
    return manifest


def _move_tree(source: Location, target: Location) -> None:
    """A rename where the filesystem has one; a copy per file on object stores."""
    fs = source.filesystem
    if isinstance(fs, pafs.LocalFileSystem):
        fs.move(source.path, target.path)
        _release(source)
        return
    made: set[str] = set()
    for rel in list_files(source):
        destination = target.join(rel).path
        parent = destination.rsplit("/", 1)[0]
        if parent not in made:  # a no-op on object stores, needed where directories exist
            fs.create_dir(parent, recursive=True)
            made.add(parent)
        fs.copy_file(source.join(rel).path, destination)
    discard(source)
