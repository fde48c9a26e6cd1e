"""The schema contract, checked a whole batch at a time with `pyarrow.compute`.

Pure: a record batch and the contract in, the conformed batch and one boolean mask per
failed check out. Every check runs on every row, so a bad row carries all its reasons.
A cell that cannot be converted to its contract type becomes null in the conformed
batch and fails the check `type` (or `timestamp`); its other checks are not repeated.

Conversions never guess: numbers in a timestamp column are epoch seconds (values too
large to be seconds fail instead of being read as milliseconds), only 0 and 1 are
booleans, and NaN is neither present (`nullable: false`) nor inside a `min`/`max`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import re2

from flywheel.api.dataset import Column, ColumnType, DatasetSchema, ExtraColumns
from flywheel.data import fixed_regex
from flywheel.data.errors import IngestError

ARROW_TYPES: dict[str, Any] = {
    ColumnType.INT64: pa.int64(),
    ColumnType.INT32: pa.int32(),
    ColumnType.FLOAT64: pa.float64(),
    ColumnType.FLOAT32: pa.float32(),
    ColumnType.STRING: pa.string(),
    ColumnType.BOOL: pa.bool_(),
    # Snapshots hold instants: naive source times are taken as UTC.
    ColumnType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    ColumnType.DATE: pa.date32(),
}

# What text must look like to be converted, so that one bad cell does not fail a batch.
_TEXT_PATTERNS: dict[str, str] = {
    # 19 digits reach past int64; the cast flags the few that overflow, one cell at a time.
    ColumnType.INT64: r"^\s*[+-]?[0-9]{1,19}\s*$",
    ColumnType.INT32: r"^\s*[+-]?[0-9]{1,10}\s*$",
    ColumnType.FLOAT64: r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
    r"|^\s*[+-]?(?i:nan|inf|infinity)\s*$",
    ColumnType.BOOL: r"^(?i:true|false|1|0)$",
    ColumnType.DATE: r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
}
_TEXT_PATTERNS[ColumnType.FLOAT32] = _TEXT_PATTERNS[ColumnType.FLOAT64]
# Epoch seconds past this (the year 5138) are milliseconds or microseconds in disguise.
MAX_EPOCH_SECONDS = 10**11
_ISO_NAIVE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?$"
_ISO_ZONED = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})$"
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """Rows of one batch that failed one check of one column (mask true = failed)."""

    column: str
    check: str
    mask: Any  # pa.BooleanArray without nulls

    @property
    def label(self) -> str:
        return f"{self.column}:{self.check}"


@dataclasses.dataclass(frozen=True)
class Conformed:
    batch: Any  # pa.RecordBatch with the contract's types and column order
    raw: Any  # the source batch, for quarantine (the bad value as it was)
    failures: list[Failure]
    # Per column with allowedValues: each row's index into those values (null: not one
    # of them), which the checks computed anyway; the profile counts values from it.
    codes: dict[str, Any] = dataclasses.field(default_factory=dict)

    def bad_mask(self) -> Any:
        return any_of([f.mask for f in self.failures], self.batch.num_rows)


def any_of(masks: list[Any], length: int) -> Any:
    if not masks:
        return all_false(length)
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_(out, m)
    return out


def conform(batch: Any, contract: DatasetSchema, source: str) -> Conformed:
    """Cast a batch to the contract and run every check of every column."""
    names = batch.schema.names
    missing = [c.name for c in contract.columns if c.name not in names]
    if missing:
        raise IngestError(
            f"column(s) {_some(missing)} of the schema are missing",
            file=source,
            column=missing[0],
            fix=f"the source has columns {_some(names)}; add the missing column(s) to the "
            "source or remove them from spec.schema.columns",
        )
    declared = {c.name for c in contract.columns}
    extra = [n for n in names if n not in declared]
    if extra and contract.extra_columns == ExtraColumns.REJECT:
        raise IngestError(
            f"column(s) {_some(extra)} are not in the schema",
            file=source,
            column=extra[0],
            fix="add them to spec.schema.columns, or set spec.schema.extraColumns to keep or drop",
        )
    arrays, fields, failures, codes = [], [], [], {}
    for column in contract.columns:
        checked = _check_column(batch.column(column.name), column, source)
        typed, column_failures, column_codes = checked
        arrays.append(typed)
        fields.append(pa.field(column.name, typed.type))
        failures += column_failures
        if column_codes is not None:
            codes[column.name] = column_codes
    if contract.extra_columns == ExtraColumns.KEEP:
        for name in extra:
            arrays.append(batch.column(name))
            fields.append(batch.schema.field(name))
    out = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
    return Conformed(out, batch, [f for f in failures if f.mask.true_count], codes)


def _some(names: list[str], limit: int = 10) -> str:
    """'a, b, c and 12 more': a bounded list of names for a message."""
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


def check_column(array: Any, column: Column, source: str) -> tuple[Any, list[Failure]]:
    """The column cast to its type, and the failures of each check."""
    typed, failures, _ = _check_column(array, column, source)
    return typed, failures


def _check_column(array: Any, column: Column, source: str) -> tuple[Any, list[Failure], Any]:
    """check_column, and the codes of the allowedValues check (None without one)."""
    typed, unconvertible = cast(array, column, source)
    check = "timestamp" if column.type == ColumnType.TIMESTAMP else "type"
    failures = [Failure(column.name, check, unconvertible)]
    present = pc.is_valid(typed)
    nan = _fill(pc.is_nan(typed)) if pa.types.is_floating(typed.type) else None
    if not column.nullable:
        missing = pc.and_not(pc.is_null(typed), unconvertible)
        missing = missing if nan is None else pc.or_(missing, nan)
        failures.append(Failure(column.name, "null", missing))
    if column.min is not None:
        below = _fill(pc.less(typed, column.min))
        failures.append(Failure(column.name, "min", below if nan is None else pc.or_(below, nan)))
    if column.max is not None:
        above = _fill(pc.greater(typed, column.max))
        failures.append(Failure(column.name, "max", above if nan is None else pc.or_(above, nan)))
    codes = None
    if column.allowed_values is not None:
        allowed = allowed_values(column, typed.type, source)
        codes = pc.index_in(typed, value_set=allowed)  # as dear as is_in, and says which
        failures.append(Failure(column.name, "allowed", pc.and_not(present, pc.is_valid(codes))))
    if column.regex is not None:
        matched = regex_matches(typed, column.regex)
        failures.append(Failure(column.name, "regex", pc.and_not(present, matched)))
    return typed, failures, codes


def regex_matches(array: Any, regex: str) -> Any:
    """Which values fully match `regex` (false for nulls). A regex of fixed-width ASCII
    text is checked byte by byte, several times cheaper than RE2 and with its result."""
    allowed = fixed_regex.classes(regex)
    if allowed is not None and pa.types.is_string(array.type):
        return fixed_regex.full_match(array, allowed)
    return _fill(pc.match_substring_regex(array, f"^(?:{regex})$"))


def allowed_values(column: Column, arrow_type: Any, source: str) -> Any:
    try:
        return pa.array(column.allowed_values).cast(arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        given = sorted({type(v).__name__ for v in column.allowed_values or []})
        raise IngestError(
            f"allowedValues are {'/'.join(given)}, which do not convert to {column.type}",
            file=source,
            column=column.name,
            fix=f"write allowedValues as {column.type} values in spec.schema.columns",
            reason="InvalidContract",
        ) from None


def check_regexes(contract: DatasetSchema) -> None:
    """Compile every regex with RE2, the engine the checks run on, before reading a row:
    RE2 has no backreferences or lookaround, which Python's `re` accepts."""
    options = re2.Options()
    options.log_errors = False
    for column in contract.columns:
        if column.regex is None:
            continue
        try:
            re2.compile(column.regex, options)
        except re2.error as exc:
            detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise IngestError(
                f"regex {column.regex!r} is not valid RE2: {detail}",
                column=column.name,
                fix="rewrite the regex without backreferences or lookaround (RE2 syntax)",
                reason="InvalidContract",
            ) from None


def cast(array: Any, column: Column, source: str) -> tuple[Any, Any]:
    """(array of the contract type, mask of cells that could not be converted).

    Text is parsed; typed sources are cast safely, and values a cast would change (1.5 to
    an integer, 3e9 to int32) are reported instead of silently altered.
    """
    target = ARROW_TYPES[column.type]
    no_failures = all_false(len(array))
    if array.type == target:
        return array, no_failures
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), target), no_failures
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    if pa.types.is_string(array.type) and column.type != ColumnType.STRING:
        return _parse_text(array, column)
    if pa.types.is_timestamp(array.type) and column.type == ColumnType.TIMESTAMP:
        if array.type.tz is None:
            array = pc.cast(array, pa.timestamp(array.type.unit))
        try:
            return pc.cast(array, target), no_failures
        except pa.ArrowInvalid:  # nanoseconds that a cast to microseconds would cut
            return _lossy(array, target)
    numeric = pa.types.is_integer(array.type) or pa.types.is_floating(array.type)
    if numeric and column.type == ColumnType.TIMESTAMP:
        return _epoch_seconds(array)
    if numeric and column.type == ColumnType.BOOL:
        zero_or_one = _fill(pc.is_in(array, value_set=pa.array([0, 1]).cast(array.type)))
        not_bool = pc.and_(pc.is_valid(array), pc.invert(zero_or_one))
        as_bool = pc.not_equal(array, pa.scalar(0).cast(array.type))
        return pc.if_else(not_bool, pa.scalar(None, pa.bool_()), as_bool), not_bool
    try:
        return pc.cast(array, target, safe=True), no_failures
    except pa.ArrowNotImplementedError:
        raise IngestError(
            f"column has type {array.type}, which cannot be converted to {column.type}",
            file=source,
            column=column.name,
            fix=f"write the column as {column.type} in the source, or change its type in "
            "spec.schema.columns",
        ) from None
    except pa.ArrowInvalid:
        return _lossy(array, target)


def _epoch_seconds(array: Any) -> tuple[Any, Any]:
    """Numbers as seconds since 1970 (UTC); fractions keep their microseconds."""
    valid = pc.is_valid(array).to_numpy(zero_copy_only=False)
    if pa.types.is_integer(array.type):
        whole = pc.fill_null(array.cast(pa.int64()), 0).to_numpy()
        in_range = valid & (np.abs(whole) < MAX_EPOCH_SECONDS)
        micros = np.where(in_range, whole, 0) * 1_000_000
    else:
        seconds = pc.fill_null(array.cast(pa.float64()), 0.0).to_numpy()
        in_range = valid & np.isfinite(seconds) & (np.abs(seconds) < MAX_EPOCH_SECONDS)
        micros = np.round(np.where(in_range, seconds, 0.0) * 1e6).astype(np.int64)
    target = ARROW_TYPES[ColumnType.TIMESTAMP]
    typed = pa.array(micros, type=pa.int64(), mask=~in_range).cast(target)
    return typed, pa.array(valid & ~in_range)


def _lossy(array: Any, target: Any) -> tuple[Any, Any]:
    """Cast unsafely, then flag every value that does not survive the way back."""
    unsafe = pc.cast(array, target, safe=False)
    back = pc.cast(unsafe, array.type, safe=False)
    changed = _fill(pc.not_equal(back, array))
    if pa.types.is_floating(array.type):
        both_nan = _fill(pc.and_(pc.is_nan(array), pc.is_nan(back)))
        changed = pc.and_not(changed, both_nan)
    return pc.if_else(changed, pa.scalar(None, target), unsafe), changed


def _parse_text(array: Any, column: Column) -> tuple[Any, Any]:
    if column.type == ColumnType.TIMESTAMP:
        return parse_timestamps(array, column.timestamp_format)
    target = ARROW_TYPES[column.type]
    try:
        return pc.cast(array, target), all_false(len(array))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    looks_right = _fill(pc.match_substring_regex(array, _TEXT_PATTERNS[column.type]), True)
    candidates = pc.if_else(looks_right, array, pa.scalar(None, pa.string()))
    parsed, failed = _cast_or_rowwise(pc.utf8_trim_whitespace(candidates), target)
    return parsed, pc.or_(pc.invert(looks_right), failed)


def parse_timestamps(array: Any, fmt: str | None) -> tuple[Any, Any]:
    """Text -> UTC timestamps. With a strptime format, exactly that; otherwise ISO 8601."""
    target = ARROW_TYPES[ColumnType.TIMESTAMP]
    present = pc.is_valid(array)
    if fmt is None:
        try:  # the common case: every value is a naive ISO time
            return pc.cast(pc.cast(array, pa.timestamp("us")), target), _no_failures(array)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    else:
        parsed = pc.strptime(array, format=fmt, unit="us", error_is_null=True)
        parsed = pc.cast(parsed, pa.timestamp("us")) if parsed.type.tz is None else parsed
        parsed = pc.cast(parsed, target)
        return parsed, pc.and_(present, pc.is_null(parsed))
    naive = _fill(pc.match_substring_regex(array, _ISO_NAIVE))
    zoned = _fill(pc.match_substring_regex(array, _ISO_ZONED))
    null_str = pa.scalar(None, pa.string())
    from_naive, bad_naive = _cast_or_rowwise(pc.if_else(naive, array, null_str), pa.timestamp("us"))
    result = pc.cast(from_naive, target)
    failed = bad_naive
    if zoned.true_count:
        from_zoned, bad_zoned = _cast_or_rowwise(pc.if_else(zoned, array, null_str), target)
        result = pc.if_else(zoned, from_zoned, result)
        failed = pc.or_(failed, bad_zoned)
    unmatched = pc.and_(present, pc.invert(pc.or_(naive, zoned)))
    return result, pc.or_(failed, unmatched)


def _cast_or_rowwise(candidates: Any, target: Any) -> tuple[Any, Any]:
    """Cast text that looks right; the rare value that still fails (a 13th month, an
    integer past int64) is found cell by cell so the rest of the batch survives."""
    try:
        return pc.cast(candidates, target), all_false(len(candidates))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values: list[Any] = []
        failed: list[bool] = []
        for scalar in candidates:
            if not scalar.is_valid:
                values.append(None)
                failed.append(False)
                continue
            try:
                values.append(pc.cast(pa.array([scalar.as_py()]), target)[0].as_py())
                failed.append(False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values.append(None)
                failed.append(True)
        return pa.array(values, type=target), pa.array(failed, type=pa.bool_())


def _no_failures(array: Any) -> Any:
    return all_false(len(array))


@functools.lru_cache(maxsize=8)
def all_false(length: int) -> Any:
    """A mask of `length` falses: Arrow arrays are immutable, so batches of one size
    share one instead of converting a numpy array per column and batch."""
    return pa.array(np.zeros(length, dtype=bool))


def _fill(mask: Any, value: bool = False) -> Any:
    return pc.fill_null(mask, value)


def reasons(conformed: Conformed, bad: Any) -> Any:
    """For the bad rows only: 'column:check;column:check' naming every failed check."""
    indices = pc.indices_nonzero(bad)
    parts = [
        pc.if_else(f.mask.take(indices), pa.scalar(f.label), pa.scalar(None, pa.string()))
        for f in conformed.failures
    ]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, ";", null_handling="skip")


def repeated_after_first(values: Any) -> Any:
    """Mask of rows whose non-null value appeared in an earlier row (numpy bool array)."""
    combined = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    codes = pc.dictionary_encode(combined).indices.to_numpy(zero_copy_only=False)
    valid = pc.is_valid(combined).to_numpy(zero_copy_only=False)
    repeated = np.zeros(len(combined), dtype=bool)
    if len(combined):
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        later = np.empty(len(order), dtype=bool)
        later[0] = False
        later[1:] = sorted_codes[1:] == sorted_codes[:-1]
        repeated[order] = later
    return repeated & valid
