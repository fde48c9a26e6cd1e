"""Ingest: stream a source through the contract into a staged snapshot, then publish it.

    source files -> batches -> contract (conform + checks) -> good rows  -> data/part-*.parquet
                                                            -> bad rows   -> quarantine/
    staged snapshot -> verify (rows, schema) -> profile.json -> publish.commit (atomic)

Nothing is published unless the whole run succeeds and the policy allows it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from flywheel.api.dataset import DatasetSpec, OnError
from flywheel.data import contract as contracts
from flywheel.data import pipeline, profile, snapshots, sources
from flywheel.data.errors import IngestError
from flywheel.data.snapshots import DATA_DIR, PROFILE_FILE, QUARANTINE_DIR, REPORT_FILE
from flywheel.storage import publish
from flywheel.storage.uris import Location

# Parts of this many rows are encoded in parallel; small snapshots are one file.
ROWS_PER_PART = 1_000_000
# Row groups of up to this many rows (pyarrow's default size): small ones encode slowly.
ROWS_PER_GROUP = 1 << 20
MAX_EXAMPLES = 20
# A column whose first batch has more distinct values than this share of its rows is
# written without a dictionary.
DICTIONARY_DISTINCT_RATIO = 0.5
# Rows of the first batch that judge it: an estimate is all the choice needs, and counting
# the distinct values of a whole first batch of identifiers costs as much as checking them.
DICTIONARY_SAMPLE_ROWS = 65_536
# Published rows up to this size stay in memory for the profile (no read back).
PROFILE_IN_MEMORY_BYTES = 1 << 30
# Batches checked at once; the checks are Arrow kernels, which run without the GIL.
CHECK_WORKERS = min(4, os.cpu_count() or 1)


@dataclasses.dataclass
class Report:
    """What validation found: counts per failed check, and the first bad rows."""

    rows: int = 0
    bad_rows: int = 0
    published_rows: int = 0  # rows in the snapshot: all of them with warn, else the good ones
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def bad_fraction(self) -> float:
        return self.bad_rows / self.rows if self.rows else 0.0

    def summary(self, limit: int = 6) -> str:
        """'3 of 1000 rows (0.30%) failed: plan:allowed 2, charges:min 1; first: ...'"""
        if not self.bad_rows:
            return f"{self.rows} rows, all valid"
        checks = ", ".join(f"{k} {n}" for k, n in self.counts.most_common(limit))
        first = "; ".join(f"{e['file']} row {e['row']}: {e['reasons']}" for e in self.examples[:3])
        return (
            f"{self.bad_rows} of {self.rows} rows ({self.bad_fraction:.2%}) failed: {checks}; "
            f"first: {first}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "badRows": self.bad_rows,
            "publishedRows": self.published_rows,
            "failedChecks": dict(self.counts.most_common()),
            "examples": self.examples,
        }


@dataclasses.dataclass(frozen=True)
class Result:
    manifest: dict[str, Any]
    location: Location  # the published version's directory
    report: Report

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


class _Writer:
    """Parquet parts in a directory: part-00000.parquet, part-00001.parquet, ...

    A new part starts after `rows_per_part` rows. Batches are gathered into row groups
    of up to `group_rows` rows before they are encoded: one large row group costs far
    less to encode than many small ones. Each part is encoded on its own thread (Arrow
    releases the GIL), so consecutive parts encode in parallel, and validating the next
    batch overlaps with writing this one. Row order is the order of the part names.
    All batches are cast to the first one's schema; errors surface at the next call.
    Each part is hashed as it is written (`digests`), so publishing never reads it back.
    """

    def __init__(
        self,
        directory: Location,
        rows_per_part: int | None = None,
        max_pending: int = 2,
        group_rows: int | None = None,
    ) -> None:
        self.directory = directory
        self.rows_per_part = rows_per_part or ROWS_PER_PART
        self.group_rows = group_rows or ROWS_PER_GROUP
        self.max_pending = max_pending
        self.schema: Any = None
        self.rows = 0
        self._part_rows = 0
        self._group: list[Any] = []  # batches of the row group being gathered
        self._group_rows = 0
        self._parts: list[_Part] = []
        self._pending: collections.deque[concurrent.futures.Future[None]] = collections.deque()
        self._dictionary: list[str] | None = None  # the columns written dictionary-encoded
        self._finished = False

    def write(self, batch: Any) -> None:
        if self._finished:
            raise RuntimeError("a finished writer takes no more batches")
        if batch.num_rows == 0:
            return
        if self.schema is None:
            self.schema = batch.schema
            self.directory.filesystem.create_dir(self.directory.path, recursive=True)
        elif batch.schema != self.schema:
            batch = batch.cast(self.schema)
        if self._dictionary is None:
            self._dictionary = dictionary_columns(batch)
        if not self._parts or self._part_rows >= self.rows_per_part:
            self._next_part()
        self._part_rows += batch.num_rows
        self.rows += batch.num_rows
        self._group.append(batch)
        self._group_rows += batch.num_rows
        if self._group_rows >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        """Hand the gathered batches to the current part's thread as one row group."""
        if not self._group:
            return
        group = pa.Table.from_batches(self._group, schema=self.schema)
        self._group, self._group_rows = [], 0
        part = self._parts[-1]
        while len(self._pending) >= self.max_pending:
            self._pending.popleft().result()
        write = part.writer.write_table
        self._pending.append(part.pool.submit(write, group, row_group_size=len(group)))

    def _next_part(self) -> None:
        if self._parts:  # the finished part closes on its own thread, after its writes
            self._flush()
            part = self._parts[-1]
            self._pending.append(part.pool.submit(part.close))
        name = f"part-{len(self._parts):05d}.parquet"
        path = self.directory.join(name).path
        stream = self.directory.filesystem.open_output_stream(path, compression=None)
        sink = publish.HashingSink(stream)
        try:
            writer = pq.ParquetWriter(
                sink, self.schema, write_page_checksum=True, use_dictionary=self._dictionary
            )
        except BaseException:
            sink.close()
            raise
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="flywheel-write")
        self._parts.append(_Part(name, writer, sink, pool))
        self._part_rows = 0

    def finish(self) -> None:
        """Hand the last row group and the close of the last part to its thread without
        waiting, so that the encoding overlaps whatever runs before `close`."""
        if self._parts and not self._finished:
            self._finished = True
            self._flush()
            part = self._parts[-1]
            self._pending.append(part.pool.submit(part.close))

    def close(self) -> None:
        try:
            self.finish()
            while self._pending:
                self._pending.popleft().result()
        finally:
            for part in self._parts:
                part.pool.shutdown(wait=True)
                part.close()  # a no-op once closed; closes what an error left open

    def digests(self) -> dict[str, publish.Digest]:
        """The sha256 and size of each part (by name), taken as it was written; valid
        once `close` returned."""
        return {part.name: part.sink.digest() for part in self._parts}


@dataclasses.dataclass
class _Part:
    name: str  # relative to the writer's directory
    writer: Any  # pq.ParquetWriter
    sink: publish.HashingSink
    pool: concurrent.futures.ThreadPoolExecutor

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            self.sink.close()


def dictionary_columns(batch: Any) -> list[str]:
    """The columns worth a dictionary, judged by the first batch: those whose values
    repeat. A column of mostly distinct values (identifiers, instants, measurements)
    would fill a dictionary only for the writer to give it up, encoding it twice."""
    names = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        column = column.slice(0, DICTIONARY_SAMPLE_ROWS)
        present = len(column) - column.null_count
        try:
            distinct = pc.count_distinct(column).as_py() if present else 0
        except pa.ArrowNotImplementedError:  # nested types: the writer's default
            distinct = 0
        if distinct <= present * DICTIONARY_DISTINCT_RATIO:
            names.append(name)
    return names


def ingest(
    spec: DatasetSpec,
    source: Location,
    destination: Location,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
    owner: publish.Owner | None = None,
) -> Result:
    """Validate and publish one snapshot of `source` under `destination`."""
    if spec.contract is not None:
        contracts.check_regexes(spec.contract)
    files = sources.list_files(source)
    if not files:
        raise IngestError(
            "the source matches no files",
            file=source.uri,
            fix="check spec.source.uri",
            reason="SourceEmpty",
        )
    staging = publish.new_staging(destination)
    try:
        report, written = _stage(spec, files, staging, checkpoint)
        checkpoint("staged")
        metadata = {
            "rows": report.published_rows,
            "badRows": report.bad_rows,
            "sourceRows": report.rows,
            "source": spec.source.uri,
        }
        manifest = publish.commit(
            destination,
            staging,
            salt=_salt(spec),
            metadata=metadata,
            checkpoint=checkpoint,
            owner=owner,
            written=written,
        )
    except BaseException:
        publish.discard(staging)
        raise
    return Result(manifest, publish.version_location(destination, manifest["version"]), report)


def _salt(spec: DatasetSpec) -> str:
    # The same bytes under a different contract are a different snapshot.
    contract = spec.contract.model_dump_json() if spec.contract else ""
    return contract + spec.validation.model_dump_json()


class _Kept:
    """The published rows, held in memory while they fit: then the profile is computed
    while the writer still encodes, with no read back. Past the limit, nothing is kept."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.batches: list[Any] = []
        self.bytes = 0
        self.overflowed = False

    def add(self, batch: Any) -> None:
        if self.overflowed:
            return
        self.bytes += batch.nbytes
        if self.bytes > self.limit_bytes:
            self.overflowed = True
            self.batches = []
        else:
            self.batches.append(batch)


def _stage(
    spec: DatasetSpec,
    files: list[Location],
    staging: Location,
    checkpoint: publish.Checkpoint = publish.no_checkpoint,
) -> tuple[Report, dict[str, publish.Digest]]:
    """Validate and write the snapshot into `staging`: the report, and the digests of
    the parts as they were written (by path within `staging`)."""
    kept = _Kept(PROFILE_IN_MEMORY_BYTES)
    # While the rows are kept anyway, the writer may fall behind freely.
    data = _Writer(staging.join(DATA_DIR), max_pending=64)
    quarantine = _Writer(staging.join(QUARANTINE_DIR), rows_per_part=2**62)
    report = Report()
    policy = spec.validation.on_error
    unique_columns = [c.name for c in spec.contract.columns if c.unique] if spec.contract else []
    unique_values: dict[str, list[Any]] = {n: [] for n in unique_columns}
    counted = _code_counts(spec)
    try:
        for file in files:
            batches = pipeline.prefetch(
                sources.read_batches(file, spec.source.format, spec.source.csv, spec.contract)
            )
            file_row = 0
            if spec.contract is None:
                for batch in batches:
                    report.rows += batch.num_rows
                    _write_kept(data, kept, _same_schema(batch, data.schema, file.path))
                continue
            check = functools.partial(
                _check,
                contract=spec.contract,
                source=file.path,
                drop_bad=policy != OnError.WARN,
                coded=list(counted),
            )
            for checked in pipeline.ordered_map(check, batches, CHECK_WORKERS):
                conformed, bad, good, good_codes = checked
                n = conformed.batch.num_rows
                rows = np.arange(file_row, file_row + n, dtype=np.int64)
                file_row += n
                report.rows += n
                if bad.true_count:
                    _record_bad(report, conformed, bad, rows, file.path, quarantine)
                for name, counts in counted.items():
                    counts.add(good_codes[name], good.column(name))
                for name in unique_columns:
                    unique_values[name].append(good.column(name))
                _write_kept(data, kept, good)
        # The last parts encode while the profile is computed.
        data.finish()
        quarantine.finish()
        profiled = _profile_kept(data, kept, counted) if not unique_columns else None
    finally:
        data.close()
        quarantine.close()
    if report.rows == 0:
        raise IngestError(
            "the source has no rows",
            file=spec.source.uri,
            fix="check that the export that writes the source ran",
            reason="SourceEmpty",
        )
    written = {
        f"{directory}/{name}": digest
        for directory, writer in ((DATA_DIR, data), (QUARANTINE_DIR, quarantine))
        for name, digest in writer.digests().items()
    }
    if unique_columns:
        written = {}  # the parts may be rewritten: they are hashed when published
        _enforce_unique(report, unique_values, staging, data, policy)
    _apply_policy(report, spec)
    checkpoint("written")  # what the store holds now is checked against what was sent
    _verify(staging.join(DATA_DIR), data.rows)
    report.published_rows = data.rows
    if profiled is None or profiled["rows"] != data.rows:
        profiled = _profile_snapshot(staging)
    publish.write_atomic(staging.join(PROFILE_FILE), publish.dumps(profiled))
    publish.write_atomic(staging.join(REPORT_FILE), publish.dumps(report.to_json()))
    return report, written


def _keep(batch: Any, mask: Any) -> Any:
    """The rows of `batch` where `mask` is true. Column by column: a record batch's own
    filter turns the mask into indices and takes them, several times slower for text."""
    columns = [column.filter(mask) for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


def _same_schema(batch: Any, schema: Any, file: str) -> Any:
    """Without a contract, every file must have the first file's columns and types."""
    if schema is None or batch.schema == schema:
        return batch
    try:
        if batch.schema.names == schema.names:
            return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    first = ", ".join(f"{f.name}: {f.type}" for f in schema)
    this = ", ".join(f"{f.name}: {f.type}" for f in batch.schema)
    raise IngestError(
        f"the files disagree: this one has ({this}), the first one ({first})",
        file=file,
        fix="declare spec.schema.columns so that every file is converted to one contract",
        reason="SchemaMismatch",
    )


def _check(
    batch: Any, contract: Any, source: str, drop_bad: bool, coded: list[str]
) -> tuple[contracts.Conformed, Any, Any, dict[str, Any]]:
    """A batch checked on a worker thread: its conformed form, its bad-row mask, the
    rows to write (without the bad ones unless they are kept) and their value codes. The
    filtering is here, beside the checks, so the loop that writes in order stays light."""
    conformed = contracts.conform(batch, contract, source)
    bad = conformed.bad_mask()
    good, codes = conformed.batch, {name: conformed.codes[name] for name in coded}
    if drop_bad and bad.true_count:
        keep = pc.invert(bad)
        good = _keep(good, keep)
        codes = {name: c.filter(keep) for name, c in codes.items()}
    return conformed, bad, good, codes


def _record_bad(
    report: Report,
    conformed: contracts.Conformed,
    bad: Any,
    rows: Any,
    file: str,
    quarantine: _Writer,
) -> None:
    n_bad = bad.true_count
    report.bad_rows += n_bad
    for f in conformed.failures:
        report.counts[f.label] += f.mask.true_count
    why = contracts.reasons(conformed, bad)
    bad_rows = rows[bad.to_numpy(zero_copy_only=False)] + 1  # 1-based, as editors count
    raw = conformed.raw.filter(bad)
    for i in range(min(n_bad, MAX_EXAMPLES - len(report.examples))):
        values = {n: raw.column(n)[i].as_py() for n in raw.schema.names}
        report.examples.append(
            {
                "file": file,
                "row": int(bad_rows[i]),
                "reasons": why[i].as_py(),
                "values": json.loads(json.dumps(values, default=str)),
            }
        )
    # warn publishes the bad rows too, but their original values are kept all the same.
    quarantine.write(_quarantine_batch(raw, why, bad_rows, file))


def _quarantine_batch(raw: Any, why: Any, rows: Any, file: str) -> Any:
    """Bad rows as the source had them (as text, so any value fits) with their reasons."""
    arrays = [pc.cast(raw.column(i), pa.string()) for i in range(raw.num_columns)]
    names = list(raw.schema.names)
    arrays += [pa.array(np.full(len(rows), file)), pa.array(rows), why]
    names += ["_source", "_row", "_reasons"]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _enforce_unique(
    report: Report,
    values: dict[str, list[Any]],
    staging: Location,
    data: _Writer,
    policy: str,
) -> None:
    """Uniqueness spans the whole source, so it is checked after the first pass: every
    repeat of a value is a bad row; the first occurrence stays."""
    masks = {n: contracts.repeated_after_first(pa.chunked_array(v)) for n, v in values.items()}
    repeated = np.logical_or.reduce(list(masks.values()))
    n_bad = int(repeated.sum())
    if not n_bad:
        return
    report.bad_rows += n_bad
    for n, m in masks.items():
        report.counts[f"{n}:unique"] += int(m.sum())
        for row in np.flatnonzero(m)[: max(0, MAX_EXAMPLES - len(report.examples))]:
            report.examples.append(
                {"file": "<snapshot>", "row": int(row) + 1, "reasons": f"{n}:unique"}
            )
    if policy == OnError.FAIL:
        return
    # The repeats join the quarantine; unless warn publishes them, the staged snapshot is
    # rewritten without them.
    directory = staging.join(DATA_DIR)
    table = snapshots.read_parts(directory)
    reasons = pa.array(
        [
            ";".join(f"{n}:unique" for n, m in masks.items() if m[i])
            for i in np.flatnonzero(repeated)
        ]
    )
    repeats = table.filter(pa.array(repeated))
    extra = pa.table(
        {
            "_source": pa.array(["<snapshot>"] * n_bad),
            "_row": pa.array(np.flatnonzero(repeated) + 1),
            "_reasons": reasons,
        }
    )
    _append_parquet(staging.join(QUARANTINE_DIR, "part-00000.parquet"), _text_table(repeats, extra))
    if policy == OnError.WARN:
        return
    kept = table.filter(pa.array(~repeated))
    publish.discard(directory)
    rewrite = _Writer(directory)
    for batch in kept.to_batches(max_chunksize=sources.BATCH_ROWS):
        rewrite.write(batch)
    rewrite.close()
    data.rows = kept.num_rows


def _text_table(table: Any, extra: Any) -> Any:
    columns = {n: pc.cast(table.column(n), pa.string()) for n in table.column_names}
    return pa.table({**columns, **{n: extra.column(n) for n in extra.column_names}})


def _append_parquet(location: Location, table: Any) -> None:
    fs = location.filesystem
    existing = (
        pq.read_table(location.path, filesystem=fs)
        if fs.get_file_info(location.path).type == pafs.FileType.File
        else None
    )
    if existing is not None:
        table = pa.concat_tables([existing, table], promote_options="permissive")
    fs.create_dir(location.path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, location.path, filesystem=fs)


def _apply_policy(report: Report, spec: DatasetSpec) -> None:
    policy = spec.validation
    if not report.bad_rows or policy.on_error == OnError.WARN:
        return
    if policy.on_error == OnError.FAIL:
        raise IngestError(
            f"validation failed, nothing published: {report.summary()}",
            fix="correct the source rows, or set spec.validation.onError to quarantine",
            reason="ValidationFailed",
        )
    if report.bad_fraction > policy.max_bad_row_fraction:
        raise IngestError(
            f"{report.bad_fraction:.2%} of rows are bad, above maxBadRowFraction "
            f"{policy.max_bad_row_fraction:.2%}; nothing published: {report.summary()}",
            fix="correct the source, or raise spec.validation.maxBadRowFraction",
            reason="TooManyBadRows",
        )


def _verify(directory: Location, expected_rows: int) -> None:
    """Read the staged parts back: a short write or a wrong row count never publishes."""
    parts = snapshots.part_files(directory)
    if not parts:
        raise IngestError(
            "no valid rows to publish",
            file=directory.path,
            fix="every row failed validation; see the quarantine report",
            reason="NoValidRows",
        )
    metas = [pq.read_metadata(p.path, filesystem=p.filesystem) for p in parts]
    rows = sum(m.num_rows for m in metas)
    if rows != expected_rows or any(not m.schema.equals(metas[0].schema) for m in metas):
        raise IngestError(
            f"staged snapshot has {rows} rows in {len(parts)} parts, expected {expected_rows} "
            "with one schema",
            file=directory.path,
            fix="re-run the ingest",
            reason="VerifyFailed",
        )


def _write_kept(data: _Writer, kept: _Kept, batch: Any) -> None:
    kept.add(batch)
    if kept.overflowed:
        data.max_pending = 2  # rows are no longer held: bound what waits for the writer
    data.write(batch)


def _code_counts(spec: DatasetSpec) -> dict[str, profile.CodeCounts]:
    """Value counts, gathered from the allowedValues check, of the text and boolean
    columns that have one: the profile then hashes none of their values again."""
    if spec.contract is None:
        return {}
    counted = {}
    for column in spec.contract.columns:
        arrow_type = contracts.ARROW_TYPES[column.type]
        if column.allowed_values is None or profile.column_kind(arrow_type) != "categorical":
            continue
        try:
            values = contracts.allowed_values(column, arrow_type, spec.source.uri)
        except IngestError:
            continue  # the check reports it, naming the file
        counted[column.name] = profile.CodeCounts(values)
    return counted


def _profile_kept(
    data: _Writer, kept: _Kept, counted: dict[str, profile.CodeCounts]
) -> dict[str, Any] | None:
    if kept.overflowed or data.schema is None:
        return None
    schema = data.schema
    batches = [b if b.schema == schema else b.cast(schema) for b in kept.batches]
    table = pa.Table.from_batches(batches, schema=schema)
    getters: dict[str, Callable[[], Any]] = {
        n: functools.partial(table.column, n) for n in table.column_names
    }
    value_counts = {n: c.result() for n, c in counted.items()}
    return _profile_columns(getters, table.num_rows, value_counts)


def _profile_snapshot(staging: Location) -> dict[str, Any]:
    """The profile of the staged snapshot, read back one column at a time."""
    directory = staging.join(DATA_DIR)
    parts = snapshots.part_files(directory)
    names = pq.read_schema(parts[0].path, filesystem=parts[0].filesystem).names
    rows = sum(pq.read_metadata(p.path, filesystem=p.filesystem).num_rows for p in parts)

    def column(name: str) -> Any:
        return snapshots.read_parts(directory, [name]).column(name)

    return _profile_columns({n: functools.partial(column, n) for n in names}, rows)


def _profile_columns(
    columns: dict[str, Callable[[], Any]], rows: int, value_counts: dict[str, Any] | None = None
) -> dict[str, Any]:
    # Columns are profiled in parallel: Arrow and numpy release the GIL.
    workers = max(1, min(len(columns), os.cpu_count() or 2))
    known = value_counts or {}

    def one(name: str) -> dict[str, Any]:
        return profile.profile_column(columns[name](), known.get(name))

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        profiles = pool.map(one, columns)
        return {"rows": rows, "columns": dict(zip(columns, profiles, strict=True))}
