"""Reading a source as a stream of record batches: parquet, csv or jsonl, any location.

Large inputs are never loaded whole: csv and jsonl are read block by block, parquet row
group by row group. Read errors (a truncated or corrupt file) become `IngestError`s that
name the file.
"""

from __future__ import annotations

import fnmatch
import io
import posixpath
import urllib.request
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from flywheel.api.dataset import CsvOptions, DatasetSchema, SourceFormat
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


def read_batches(
    file: Location, fmt: SourceFormat | str, csv: CsvOptions | None, contract: DatasetSchema | None
) -> Iterator[Any]:
    """Record batches of one file; errors name the file."""
    name = file.path
    try:
        with _open(file, seekable=fmt == SourceFormat.PARQUET) as stream:
            if _small(file, fmt):
                # Small enough to hold: decode on every core, then hand out the batches.
                whole = _read_whole(stream, fmt, csv, contract)
                reader: Any = whole.to_batches(max_chunksize=BATCH_ROWS)
            elif fmt == SourceFormat.PARQUET:
                reader = pq.ParquetFile(stream).iter_batches(batch_size=BATCH_ROWS)
            elif fmt == SourceFormat.CSV:
                read, parse, convert = _csv_options(csv or CsvOptions(), contract)
                reader = pacsv.open_csv(
                    stream, read_options=read, parse_options=parse, convert_options=convert
                )
            else:
                reader = pajson.open_json(
                    stream, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES)
                )
            yield from reader
    except IngestError:
        raise
    except (pa.ArrowInvalid, pa.ArrowException, OSError, ValueError) as exc:
        raise IngestError(
            f"cannot read as {fmt}: {exc}",
            file=name,
            fix=f"check that the file is complete, valid {fmt}; re-export it if it was cut off",
            reason="SourceUnreadable",
        ) from None


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
        return pq.ParquetFile(stream).read()
    if fmt == SourceFormat.CSV:
        read, parse, convert = _csv_options(csv or CsvOptions(), contract)
        return pacsv.read_csv(
            stream, read_options=read, parse_options=parse, convert_options=convert
        )
    return pajson.read_json(stream, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES))


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
