"""Reading a source as a stream of record batches: parquet, csv or jsonl, any location.

Large inputs are never loaded whole: csv and jsonl are read block by block, parquet row
group by row group. Read errors (a truncated or corrupt file) become `IngestError`s that
name the file.
"""

from __future__ import annotations

import fnmatch
import io
import os
import posixpath
import stat
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from flywheel import redaction
from flywheel.api.dataset import ColumnType, CsvOptions, DatasetSchema, SourceFormat
from flywheel.data.errors import IngestError
from flywheel.storage.uris import Location

BLOCK_BYTES = 8 << 20
# Files up to this size are decoded whole on all cores; larger ones are streamed.
# Parquet is compressed: the same bytes hold several times more rows.
WHOLE_FILE_BYTES = 256 << 20
WHOLE_PARQUET_BYTES = 64 << 20
BATCH_ROWS = 128 * 1024
HTTP_TIMEOUT_SECONDS = 60


def list_files(source: Location) -> list[Location]:
    """A file, the files of a directory (recursive, name order), or those matching a glob.

    Hidden files and those starting with '_' (markers such as _SUCCESS) are skipped.
    """
    if source.is_http:
        return [source]
    if isinstance(source.filesystem, pafs.LocalFileSystem):
        return _list_local(source)
    fs = source.filesystem
    if "*" in source.path:
        base, pattern = posixpath.split(source.path)
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        paths = sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File and fnmatch.fnmatch(posixpath.basename(i.path), pattern)
        )
        return [Location(fs, p, source.uri) for p in paths]
    info = fs.get_file_info(source.path)
    if info.type == pafs.FileType.NotFound:
        raise IngestError(
            "the source does not exist",
            file=source.uri,
            fix="check spec.source.uri (relative paths are relative to the manifest)",
            reason="SourceNotFound",
        )
    if info.type == pafs.FileType.File:
        return [source]
    infos = fs.get_file_info(pafs.FileSelector(source.path, recursive=True))
    files = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File and not i.base_name.startswith((".", "_"))
    )
    return [Location(fs, p, p) for p in files]


def _list_local(source: Location) -> list[Location]:
    """Local files, checked as a reader would meet them: a symlink loop, a dangling link,
    or a FIFO or device (which would block or never end) fails the ingest up front; a
    file reached through several links is read once."""
    fs = source.filesystem
    if "*" in source.path:
        base, pattern = posixpath.split(source.path)
        if not os.path.isdir(base):
            return []
        names = sorted(n for n in os.listdir(base) if fnmatch.fnmatch(n, pattern))
        paths = [posixpath.join(base, n) for n in names]
        paths = [p for p in paths if not os.path.isdir(p)]
    else:
        if not os.path.lexists(source.path):
            raise IngestError(
                "the source does not exist",
                file=source.uri,
                fix="check spec.source.uri (relative paths are relative to the manifest)",
                reason="SourceNotFound",
            )
        if not os.path.isdir(source.path):
            _check_regular(source.path)
            return [source]
        paths = _walk(source.path)
    seen: set[str] = set()
    files = []
    for path in paths:
        _check_regular(path)
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            files.append(Location(fs, path, path))
    return files


def _walk(top: str) -> list[str]:
    """Files below `top` in path order, following directory links, refusing loops."""
    out: list[str] = []
    ancestors = [os.path.realpath(top)]

    def visit(directory: str) -> None:
        with os.scandir(directory) as entries:
            names = sorted(entries, key=lambda e: e.name)
        for entry in names:
            if entry.name.startswith((".", "_")):
                continue
            if entry.is_dir():  # follows links
                real = os.path.realpath(entry.path)
                if any(real == a or a.startswith(real + os.sep) for a in ancestors):
                    raise IngestError(
                        f"the directory link {entry.path} leads back to {real}, "
                        "so its files would be read again and again",
                        file=entry.path,
                        fix="remove the link, or point spec.source.uri below it",
                        reason="SourceSymlinkLoop",
                    )
                ancestors.append(real)
                visit(entry.path)
                ancestors.pop()
            else:
                out.append(entry.path)

    visit(top)
    return sorted(out)  # by whole path, so the order (and the version) is the listing's


def _check_regular(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise IngestError(
            f"the link {path} points to {os.path.realpath(path)}, which does not exist",
            file=path,
            fix="restore the file the link points to, or remove the link",
            reason="SourceNotFound",
        ) from None
    except OSError as exc:  # a link loop (ELOOP), permissions
        raise IngestError(
            f"cannot stat: {exc.strerror}",
            file=path,
            fix="check the path and its permissions",
            reason="SourceUnreadable",
        ) from None
    if not stat.S_ISREG(mode):
        raise IngestError(
            "is not a regular file (a FIFO, socket or device never ends or blocks a reader)",
            file=path,
            fix="point spec.source.uri at regular files",
            reason="SourceNotAFile",
        )


def read_batches(
    file: Location, fmt: SourceFormat | str, csv: CsvOptions | None, contract: DatasetSchema | None
) -> Iterator[Any]:
    """Record batches of one file; errors name the file."""
    name = file.path
    try:
        with _open(file, seekable=fmt == SourceFormat.PARQUET) as stream:
            if _small(file, fmt):
                # Small enough to hold: decode on every core, then hand out the batches.
                whole = _read_csv_typed(file, csv, contract) if fmt == SourceFormat.CSV else None
                if whole is None:
                    whole = _read_whole(stream, fmt, csv, contract)
                reader: Any = whole.to_batches(max_chunksize=BATCH_ROWS)
            elif fmt == SourceFormat.PARQUET:
                reader = _parquet(stream).iter_batches(batch_size=BATCH_ROWS)
            elif fmt == SourceFormat.CSV:
                read, parse, convert = _csv_options(csv or CsvOptions(), contract)
                reader = pacsv.open_csv(
                    stream, read_options=read, parse_options=parse, convert_options=convert
                )
            else:
                reader = pajson.open_json(
                    stream, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES)
                )
            first = True
            for batch in reader:
                if first:
                    _check_names(batch.schema.names, name)
                    first = False
                if fmt == SourceFormat.PARQUET:
                    _check_utf8(batch, name)
                yield batch
    except IngestError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise IngestError(
            f"cannot read as {fmt}: {redaction.arrow_error(exc)}",
            file=name,
            fix=f"check that the file is complete, valid {fmt}; re-export it if it was cut off",
            reason="SourceUnreadable",
        ) from None


def _parquet(stream: Any) -> Any:
    # Page checksums, where the writer stored them, catch a corrupt page before its
    # values are published.
    return pq.ParquetFile(stream, page_checksum_verification=True)


def _check_names(names: list[str], file: str) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise IngestError(
            f"the header names column(s) {', '.join(map(repr, repeated))} more than once",
            file=file,
            column=repeated[0],
            fix="give every column a distinct name in the source",
            reason="DuplicateColumns",
        )


def _check_utf8(batch: Any, file: str) -> None:
    """Parquet does not validate text on read (CSV and JSON readers do)."""
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            if _ascii(column):
                continue
            try:
                column.validate(full=True)
            except pa.ArrowInvalid:
                raise IngestError(
                    "holds bytes that are not valid UTF-8 text",
                    file=file,
                    column=field.name,
                    fix="re-export the column as UTF-8 text (or as binary, outside the contract)",
                    reason="InvalidText",
                ) from None


def _ascii(column: Any) -> bool:
    """Whether the column's offsets are in order and every byte of its text is ASCII,
    which is valid UTF-8: a vectorised pass instead of decoding each value. False sends
    the column to the full validation."""
    column.validate()
    if len(column) == 0:
        return True
    offset_type = np.dtype(np.int64 if pa.types.is_large_string(column.type) else np.int32)
    _, offsets_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(
        offsets_buffer, offset_type, len(column) + 1, column.offset * offset_type.itemsize
    )
    start, end = int(offsets[0]), int(offsets[-1])
    size = data_buffer.size if data_buffer is not None else 0
    if not (0 <= start <= end <= size and (np.diff(offsets) >= 0).all()):
        return False
    if start == end:
        return True
    assert data_buffer is not None
    return bool(np.frombuffer(data_buffer, np.uint8, end - start, start).max() < 0x80)


def _open(file: Location, seekable: bool) -> Any:
    if file.is_http:
        response = urllib.request.urlopen(file.path, timeout=HTTP_TIMEOUT_SECONDS)
        if seekable:  # parquet reads its footer first: fetch the whole file into memory
            with response:
                return pa.BufferReader(response.read())
        return pa.PythonFile(io.BufferedReader(response), mode="r")
    if seekable:
        return file.filesystem.open_input_file(file.path)
    return file.filesystem.open_input_stream(file.path)


def _small(file: Location, fmt: SourceFormat | str) -> bool:
    if file.is_http:
        return False
    size = file.filesystem.get_file_info(file.path).size
    limit = WHOLE_PARQUET_BYTES if fmt == SourceFormat.PARQUET else WHOLE_FILE_BYTES
    return size is not None and size <= limit


def _read_whole(
    stream: Any, fmt: SourceFormat | str, csv: CsvOptions | None, contract: DatasetSchema | None
) -> Any:
    if fmt == SourceFormat.PARQUET:
        return _parquet(stream).read()
    if fmt == SourceFormat.CSV:
        read, parse, convert = _csv_options(csv or CsvOptions(), contract)
        return pacsv.read_csv(
            stream, read_options=read, parse_options=parse, convert_options=convert
        )
    return pajson.read_json(stream, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES))


# Contract types the CSV reader converts exactly as the contract's text parsing would
# accept them (anything else makes it fail, and the file is read as text instead).
_CSV_TYPED: dict[str, Any] = {
    ColumnType.INT64: pa.int64(),
    ColumnType.INT32: pa.int32(),
    ColumnType.FLOAT64: pa.float64(),
    ColumnType.FLOAT32: pa.float32(),
    ColumnType.DATE: pa.date32(),
}


def _read_csv_typed(
    file: Location, csv: CsvOptions | None, contract: DatasetSchema | None
) -> Any | None:
    """The whole file with its numeric columns converted while parsing, which is much
    faster than text then a cast; None if any cell does not convert, so that the
    contract reports it on its row."""
    if contract is None:
        return None
    typed = {c.name: _CSV_TYPED[c.type] for c in contract.columns if c.type in _CSV_TYPED}
    if not typed:
        return None
    read, parse, convert = _csv_options(csv or CsvOptions(), contract)
    convert.column_types = {**convert.column_types, **typed}
    try:
        with _open(file, seekable=False) as stream:
            return pacsv.read_csv(
                stream, read_options=read, parse_options=parse, convert_options=convert
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _csv_options(options: CsvOptions, contract: DatasetSchema | None) -> tuple[Any, Any, Any]:
    names = [c.name for c in contract.columns] if contract else None
    read = pacsv.ReadOptions(
        block_size=BLOCK_BYTES,
        column_names=None if options.header else names,
        autogenerate_column_names=not options.header and names is None,
    )
    parse = pacsv.ParseOptions(delimiter=options.delimiter, quote_char=options.quote_char)
    # Contract columns are read as text and converted by the contract, so one bad cell
    # is reported on its row instead of failing the whole file.
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names or []},
        null_values=options.null_values,
        strings_can_be_null=True,
    )
    return read, parse, convert
