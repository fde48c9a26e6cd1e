"""Reading published Dataset snapshots: the layout of a version, and its parts as a table.

    <root>/current.json                 which version readers get (see storage.publish)
    <root>/versions/<version>/data/     part-*.parquet, the published rows
                              quarantine/  the bad rows with their reasons
                              report.json  the validation report
                              profile.json the statistics profile (the drift reference)

Ingest writes this layout; FeatureViews, training and drift read it through here.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.storage import publish
from flywheel.storage.uris import Location

DATA_DIR = "data"
QUARANTINE_DIR = "quarantine"
PROFILE_FILE = "profile.json"
REPORT_FILE = "report.json"


def part_files(directory: Location) -> list[Location]:
    return [
        directory.join(rel) for rel in publish.list_files(directory) if rel.endswith(".parquet")
    ]


def read_parts(directory: Location, columns: list[str] | None = None) -> Any:
    """The parts of a snapshot directory as one table, in part order."""
    tables = [
        pq.read_table(p.path, columns=columns, filesystem=p.filesystem)
        for p in part_files(directory)
    ]
    return pa.concat_tables(tables)


def current_table(root: Location, columns: list[str] | None = None) -> Any:
    """The current snapshot under a Dataset's root as an Arrow table (None if unpublished)."""
    manifest = publish.current(root)
    if manifest is None:
        return None
    version = publish.version_location(root, manifest["version"])
    return read_parts(version.join(DATA_DIR), columns)
