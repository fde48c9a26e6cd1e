"""Dataset: a source ingested into immutable, versioned, validated Parquet snapshots."""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Literal, Self

import re2
from pydantic import Field, StringConstraints, field_validator, model_validator

from flywheel.api import common
from flywheel.api.common import FlywheelModel


class SourceFormat(enum.StrEnum):
    PARQUET = "parquet"
    CSV = "csv"
    JSONL = "jsonl"


class CsvOptions(FlywheelModel):
    delimiter: Annotated[str, StringConstraints(min_length=1, max_length=1)] = ","
    quote_char: Annotated[str, StringConstraints(min_length=1, max_length=1)] = '"'
    header: bool = True
    null_values: list[Annotated[str, StringConstraints(max_length=32)]] = Field(
        default_factory=lambda: ["", "NA", "null"], max_length=16
    )

    model_config = common.with_cel(
        {
            "rule": "!has(self.delimiter) || !has(self.quoteChar) || "
            "self.delimiter != self.quoteChar",
            "message": "csv delimiter and quoteChar must differ",
        }
    )

    @model_validator(mode="after")
    def _delimiter_not_quote(self) -> Self:
        if self.delimiter == self.quote_char:
            raise ValueError("csv delimiter and quoteChar must differ")
        return self


class DatasetSource(FlywheelModel):
    """Where the raw data is read from."""

    uri: common.StorageURI = Field(
        description="A file or a directory of files (read in name order); glob '*' allowed."
    )
    format: SourceFormat
    csv: CsvOptions | None = Field(default=None, description="Reader options for format csv.")
    credentials_secret_ref: common.SecretKeySelector | None = Field(
        default=None,
        description="A Secret key holding credentials for s3:// or gs:// (a JSON or INI file).",
    )

    model_config = common.with_cel(
        {
            "rule": "!has(self.csv) || self.format == 'csv'",
            "message": "source.csv options are only allowed with format csv",
        }
    )

    @model_validator(mode="after")
    def _csv_only_for_csv(self) -> Self:
        if self.csv is not None and self.format != SourceFormat.CSV:
            raise ValueError("source.csv options are only allowed with format csv")
        return self


class ColumnType(enum.StrEnum):
    INT64 = "int64"
    INT32 = "int32"
    FLOAT64 = "float64"
    FLOAT32 = "float32"
    STRING = "string"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    DATE = "date"


# strptime directives Arrow's parser knows (no %f: fractions of a second).
STRPTIME_DIRECTIVES = frozenset("aAbBcCdDeFgGhHIjmMnprRsStTuUVwWxXyYzZ%")
_DIRECTIVE = re.compile(r"%(.?)")


def check_strptime_format(value: str) -> None:
    """ValueError naming the problem when `value` is not a usable strptime format.

    >>> check_strptime_format("%Y-%m-%d %H:%M:%S")
    """
    found = _DIRECTIVE.findall(value)
    if not found:
        raise ValueError(
            f"timestampFormat {value!r} has no % directive; write a strptime format such as "
            "'%Y-%m-%d %H:%M:%S'"
        )
    for code in found:
        if code == "f":
            raise ValueError(
                f"timestampFormat {value!r}: %f (fractions of a second) is not supported; "
                "ISO 8601 text with fractions needs no timestampFormat"
            )
        if code not in STRPTIME_DIRECTIVES:
            raise ValueError(
                f"timestampFormat {value!r}: %{code} is not a strptime directive; use "
                "%Y %m %d %H %M %S %z and the like"
            )


NUMERIC_TYPES = frozenset(
    {ColumnType.INT64, ColumnType.INT32, ColumnType.FLOAT64, ColumnType.FLOAT32}
)


class Column(FlywheelModel):
    """One column of the contract: its type and the checks each row must pass."""

    name: common.Identifier
    type: ColumnType
    nullable: bool = True
    min: float | None = Field(default=None, description="Smallest allowed value (numbers).")
    max: float | None = Field(default=None, description="Largest allowed value (numbers).")
    allowed_values: list[int | Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None, max_length=1024
    )
    regex: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = Field(
        default=None, description="A pattern every non-null string value must fully match."
    )
    unique: bool = False
    timestamp_format: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description="strptime format for timestamp columns read from text, e.g. %Y-%m-%d %H:%M:%S.",
    )

    model_config = common.with_cel(
        {
            "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
            "message": "min must not be greater than max",
        },
        {
            "rule": "(!has(self.min) && !has(self.max)) || self.type in "
            "['int64', 'int32', 'float64', 'float32']",
            "message": "min and max are only allowed on numeric columns",
        },
        {
            "rule": "!has(self.regex) || self.type == 'string'",
            "message": "regex is only allowed on string columns",
        },
        {
            "rule": "!has(self.timestampFormat) || self.type in ['timestamp', 'date']",
            "message": "timestampFormat is only allowed on timestamp and date columns",
        },
    )

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        # Values are matched with RE2 (Arrow's engine), as `^(?:regex)$`.
        if value is not None:
            options = re2.Options()
            options.log_errors = False
            try:
                re2.compile(value, options)
                re2.compile(f"^(?:{value})$", options)
            except re2.error as exc:
                reason = (
                    exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
                )
                raise ValueError(
                    f"regex {value!r} is not valid RE2 syntax ({reason}); RE2 has no "
                    "backreferences or lookaround"
                ) from None
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _strptime_format(cls, value: str | None) -> str | None:
        if value is not None:
            check_strptime_format(value)
        return value

    @model_validator(mode="after")
    def _cross_field(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not be greater than max")
        if (self.min is not None or self.max is not None) and self.type not in NUMERIC_TYPES:
            raise ValueError("min and max are only allowed on numeric columns")
        if self.regex is not None and self.type != ColumnType.STRING:
            raise ValueError("regex is only allowed on string columns")
        if self.timestamp_format is not None and self.type not in (
            ColumnType.TIMESTAMP,
            ColumnType.DATE,
        ):
            raise ValueError("timestampFormat is only allowed on timestamp and date columns")
        return self


class ExtraColumns(enum.StrEnum):
    KEEP = "keep"
    DROP = "drop"
    REJECT = "reject"


class DatasetSchema(FlywheelModel):
    """The contract every snapshot satisfies."""

    columns: Annotated[list[Column], common.unique_by("name", "column names")] = Field(
        min_length=1, max_length=512, json_schema_extra=common.list_map("name")
    )
    extra_columns: ExtraColumns = Field(
        default=ExtraColumns.DROP,
        description="What to do with source columns the contract does not name.",
    )


class OnError(enum.StrEnum):
    FAIL = "fail"
    QUARANTINE = "quarantine"
    WARN = "warn"


class ValidationPolicy(FlywheelModel):
    on_error: OnError = Field(
        default=OnError.FAIL,
        description="fail: publish nothing; quarantine: publish good rows, keep bad ones "
        "beside the snapshot; warn: publish everything and report.",
    )
    max_bad_row_fraction: common.Probability = Field(
        default=0.0, description="With quarantine: the run fails above this fraction."
    )


class Refresh(FlywheelModel):
    schedule: common.Cron


class DatasetSpec(FlywheelModel):
    source: DatasetSource = Field(
        json_schema_extra=common.immutable(
            "spec.source is immutable once set; create a new Dataset for a new source"
        )
    )
    contract: DatasetSchema | None = Field(default=None, alias="schema")
    timestamp_column: common.Identifier | None = None
    validation: ValidationPolicy = Field(default_factory=ValidationPolicy)
    refresh: Refresh | None = None
    destination: common.StorageURI | None = Field(
        default=None,
        description="Where snapshots are published; defaults to the platform artifact root.",
    )

    model_config = common.with_cel(
        {
            "rule": "!has(self.timestampColumn) || !has(self.schema) || "
            "self.schema.columns.exists(c, c.name == self.timestampColumn)",
            "message": "timestampColumn must be one of the schema columns",
            "fieldPath": ".timestampColumn",
        }
    )

    @model_validator(mode="after")
    def _timestamp_in_schema(self) -> Self:
        if (
            self.timestamp_column is not None
            and self.contract is not None
            and self.timestamp_column not in {c.name for c in self.contract.columns}
        ):
            raise ValueError("timestampColumn must be one of the schema columns")
        return self


class DatasetStatus(common.StatusBase):
    version: common.ShortText | None = Field(
        default=None, description="Content hash of the snapshot."
    )
    rows: int | None = Field(default=None, ge=0)
    bytes: int | None = Field(default=None, ge=0)
    bad_rows: int | None = Field(default=None, ge=0)
    snapshot_uri: common.ReportedURI | None = None
    profile_uri: common.ReportedURI | None = None
    quarantine_uri: common.ReportedURI | None = None
    last_ingested: datetime | None = None


class Dataset(common.Resource):
    """A source ingested into an immutable, versioned, validated Parquet snapshot."""

    kind_name = "Dataset"
    plural = "datasets"
    # kubectl resolves `ds` to DaemonSets first; `dset` always reaches Datasets.
    short_names = ("ds", "dset")
    printer_columns = (
        common.PHASE_COLUMN,
        {"name": "Version", "type": "string", "jsonPath": ".status.version"},
        {"name": "Rows", "type": "integer", "jsonPath": ".status.rows"},
        {"name": "Bad-Rows", "type": "integer", "jsonPath": ".status.badRows", "priority": 1},
        common.AGE_COLUMN,
    )

    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec
    status: DatasetStatus | None = None
