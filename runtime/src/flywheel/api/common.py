"""Shared building blocks of the flywheel.dev/v1alpha1 kinds.

Every model here is strict about unknown fields (a typo in a manifest is an error, as
the API server's structural schema makes it) and speaks camelCase on the wire.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from flywheel.api import schedules

GROUP = "flywheel.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class FlywheelModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def with_cel(*rules: JsonDict) -> ConfigDict:
    """Model config carrying CEL rules for the CRD schema of this model.

    Each rule must be mirrored by a pydantic validator on the same model with the same
    message, so that `flywheel validate` and the API server reject the same manifests.
    """
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})


def immutable(message: str) -> dict[str, Any]:
    """Field schema extra: once set, the field cannot change (a CEL transition rule)."""
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": message}]}


PrinterColumn = dict[str, str | int]


# --- scalar types --------------------------------------------------------------------

# RFC 1123 subdomain, as Kubernetes object names.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A column-style identifier: what a column, feature or entity name must be.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"

ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=IDENTIFIER)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=4096)]

# Kubernetes resource quantities ("500m", "2", "4Gi", "1.5").
QUANTITY = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
Quantity = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=QUANTITY)]

# Durations as Go's time.ParseDuration accepts them, plus days and weeks ("30d", "1h30m").
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(value: str) -> float:
    """Seconds in a duration string.

    >>> duration_seconds("1h30m")
    5400.0
    """
    return float(sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value)))


# Flywheel's bound: every duration fits a Go time.Duration and a Python timedelta.
MAX_DURATION_SECONDS = 100 * 365 * 86400


def _positive_duration(value: str) -> str:
    seconds = duration_seconds(value)
    if seconds <= 0:
        raise ValueError(f"duration must be greater than zero, got {value!r}; e.g. '30d' or '1h'")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {value!r} is longer than 100 years (36500d); use a shorter one")
    return value


Duration = Annotated[
    str,
    StringConstraints(min_length=2, max_length=32, pattern=DURATION),
    AfterValidator(_positive_duration),
    # A duration is zero exactly when none of its digits is 1-9.
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.matches('[1-9]')", "message": "duration must be greater than zero"}
            ]
        }
    ),
]


def _valid_cron(value: str) -> str:
    schedules.parse_cron(value)
    return value


# The API server checks the shape (five fields or a macro); `flywheel validate` and the
# operator check each field's values too.
# ASCII whitespace spelled out: Go's RE2 and pydantic's regex engine agree on it.
CRON_SHAPE = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    r"([^\t\n\f\r ]+[\t\n\f\r ]+){4}[^\t\n\f\r ]+)$"
)
Cron = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=CRON_SHAPE),
    AfterValidator(_valid_cron),
    Field(description="A cron schedule: five fields (minute hour day month weekday) or @hourly."),
]

# Where data lives: a path (relative ones are resolved against the manifest's directory
# by `flywheel run` and against the working directory in a pod), file://, pvc://, s3://,
# gs://, http(s)://.
URI = r"^(/|\./|\.\./|(file|pvc|s3|gs|https?)://)[^\s]*$"
# user:password@ or token@ after the scheme: credentials written into a URI.
URI_CREDENTIALS = r"^[a-z0-9+.-]+://([^@/]*@|[^@]*:[^@]*@)"
URI_CREDENTIALS_MESSAGE = (
    "credentials must not be written in a URI; put them in a Secret and name it in "
    "credentialsSecretRef (or connectionSecretRef)"
)
_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s@]*@")


def redact(text: str) -> str:
    """Text with the credentials of every URI in it replaced by ***.

    >>> redact("cannot read s3://KEY:SECRET@bucket/x")
    'cannot read s3://***@bucket/x'
    """
    return _CREDENTIALS.sub(r"\1***@", text)


def _no_credentials(value: str) -> str:
    if re.match(URI_CREDENTIALS, value):
        raise ValueError(URI_CREDENTIALS_MESSAGE)
    return value


StorageURI = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2048, pattern=URI),
    AfterValidator(_no_credentials),
    Field(
        description=(
            "A path (/abs, ./rel or ../rel), or a URI with scheme file://, pvc://, s3://, "
            "gs://, http:// or https://. Credentials never go into the URI."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": f"!self.matches('{URI_CREDENTIALS}')", "message": URI_CREDENTIALS_MESSAGE}
            ]
        },
    ),
]

# Where a run put its output, as status reports it (with any credentials redacted).
ReportedURI = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=URI)]

# RFC 3339 with a time zone, as the API server checks `format: date-time`.
_DATE_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    """A string time -> datetime, only in the RFC 3339 form the API server accepts."""
    if not isinstance(value, str):
        return value
    match = _DATE_TIME.fullmatch(value)
    problem = f"{value[:64]!r} is not an RFC 3339 time with a zone; e.g. 2026-05-01T00:00:00Z"
    if match is None:
        raise ValueError(problem)
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.fromisoformat(f"{date}T{clock}{(fraction or '')[:7]}{zone}")
    except ValueError:
        raise ValueError(problem) from None


Timestamp = Annotated[datetime, BeforeValidator(_rfc3339)]

Probability = Annotated[float, Field(ge=0, le=1)]


# --- lists keyed by a field ---------------------------------------------------------


def duplicates(names: list[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    return dup


def unique_by(attribute: str, what: str) -> AfterValidator:
    """Items unique by one attribute; pair it with `list_map` so the API server agrees."""

    def check(items: list[Any]) -> list[Any]:
        dup = duplicates([getattr(i, attribute) for i in items])
        if dup:
            raise ValueError(f"duplicate {what} {dup}; each must be unique")
        return items

    return AfterValidator(check)


def list_map(key: str) -> JsonDict:
    """Schema extra: a list the API server keeps keyed (and unique) by `key`."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


# --- references ----------------------------------------------------------------------


class LocalObjectReference(FlywheelModel):
    """A reference to another object in the same namespace."""

    name: ObjectName


class SecretKeySelector(FlywheelModel):
    """A key of a Secret in the same namespace."""

    name: ObjectName
    key: Annotated[str, StringConstraints(min_length=1, max_length=253)]


# --- resources -----------------------------------------------------------------------


class TolerationOperator(enum.StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(enum.StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(FlywheelModel):
    """The core/v1 Toleration, as Pods carry it."""

    key: ShortText | None = None
    operator: TolerationOperator = TolerationOperator.EQUAL
    value: ShortText | None = None
    effect: TaintEffect | None = None
    toleration_seconds: int | None = Field(default=None, ge=0)


class ReplicaResources(FlywheelModel):
    """CPU, memory, GPUs and placement of one replica or worker. Each use narrows `gpu`:
    whole GPUs for Pods (`ResourceRequirements`), fractions for Ray Serve replicas."""

    cpu: Quantity = "1"
    memory: Quantity = "2Gi"
    gpu: float = Field(default=0, ge=0, description="GPUs per replica or worker.")
    gpu_type: ShortText | None = Field(
        default=None,
        description="GPU product, matched against the node label nvidia.com/gpu.product.",
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    node_selector: dict[str, ShortText] = Field(default_factory=dict, max_length=32)


class ResourceRequirements(ReplicaResources):
    """What one replica or worker asks for. GPUs are requested as `nvidia.com/gpu`."""

    gpu: int = Field(default=0, ge=0, le=16, description="Whole GPUs per replica or worker.")


# --- status --------------------------------------------------------------------------


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(FlywheelModel):
    """The metav1.Condition shape."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316, pattern=IDENTIFIER)]
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: datetime
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=CONDITION_REASON)
    ]
    message: Annotated[str, StringConstraints(max_length=32768)] = ""


class StatusBase(FlywheelModel):
    """What every kind's status carries."""

    observed_generation: int | None = Field(default=None, ge=0)
    phase: ShortText | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=list_map("type"),
    )


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta Flywheel reads; everything else passes through."""

    model_config = ConfigDict(extra="allow")

    name: ObjectName
    namespace: ObjectName | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    generation: int | None = None


def resource_key(kind: str, name: str) -> str:
    """The one spelling of an object's key.

    >>> resource_key("Dataset", "events")
    'Dataset/events'
    """
    return f"{kind}/{name}"


class Resource(FlywheelModel):
    """A whole object of one of the five kinds."""

    # Set by each kind; read by the CRD generator and the CLI.
    kind_name: ClassVar[str]
    plural: ClassVar[str]
    short_names: ClassVar[tuple[str, ...]]
    printer_columns: ClassVar[tuple[PrinterColumn, ...]]

    api_version: Literal["flywheel.dev/v1alpha1"] = "flywheel.dev/v1alpha1"
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def key(self) -> str:
        """ "Kind/name": how plans, inputs and statuses refer to an object."""
        return resource_key(self.kind_name, self.name)

    def references(self) -> list[tuple[str, str]]:
        """(kind, name) of every object this one needs to exist first."""
        return []


# The columns every kind shows: its phase first and its age last, as kubectl does.
AGE_COLUMN: PrinterColumn = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
}
PHASE_COLUMN: PrinterColumn = {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}

# What each pattern means, for error messages that say what to write instead.
PATTERN_HINTS: dict[str, str] = {
    DNS_SUBDOMAIN: "a lowercase RFC 1123 name: a-z, 0-9, '-' and '.', e.g. 'churn-model'",
    IDENTIFIER: "a column-style identifier: letters, digits and '_', e.g. 'monthly_charges'",
    QUANTITY: "a Kubernetes quantity, e.g. '500m', '2', '4Gi'",
    DURATION: "a duration such as '30s', '15m', '1h30m', '7d' or '2w'",
    CRON_SHAPE: "a cron schedule of five fields, e.g. '*/15 * * * *', or @hourly",
    URI: "a path (/abs, ./rel) or a URI with scheme file, pvc, s3, gs, http or https",
    CONDITION_REASON: "a CamelCase reason",
}
