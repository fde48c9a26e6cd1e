"""Reading manifests and validating them with the api models, as strictly as the API server.

A manifest is read the way kubectl reads it (`flywheel.kubeyaml`: YAML 1.1 scalars,
int64 and float64 numbers), nulls are pruned as the API server prunes them, and the
result is validated in JSON mode with strict types, wire (camelCase) names only and
unknown fields forbidden. So `flywheel validate` never accepts what `kubectl apply`
refuses; the rules it checks on top are listed in docs/validation.md.

Every problem becomes a `ManifestError` that names the file, the document, the object,
the field path and what is allowed, so that a user can fix it without reading code.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pydantic

from flywheel import api, kubeyaml
from flywheel.api import common
from flywheel.api.common import API_VERSION, Resource

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
# kubectl's client-side apply copies the object into an annotation, and all annotations
# of an object together may hold 256 KiB.
MAX_OBJECT_BYTES = 256 * 1024
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclasses.dataclass(frozen=True)
class ManifestError:
    source: str  # "file.yaml#2": the file and the document's index in it, from 1
    obj: str  # "ModelDeployment/churn" or "" when not known
    field: str  # "spec.rollout.canary.steps[1].weight" or ""
    message: str
    line: int | None = None  # in the file, from 1, when known

    def __str__(self) -> str:
        source = f"{self.source} line {self.line}" if self.line else self.source
        where = " ".join(p for p in (source, f"({self.obj})" if self.obj else "") if p)
        field = f"{self.field}: " if self.field else ""
        return common.redact(f"{where}: {field}{self.message}")


@dataclasses.dataclass(frozen=True)
class Loaded:
    source: str
    resource: Resource


class ManifestSet:
    """Resources read from files, and the errors met reading them."""

    def __init__(self) -> None:
        self.resources: list[Loaded] = []
        self.errors: list[ManifestError] = []

    def find(self, kind: str, name: str) -> Resource | None:
        for item in self.resources:
            if item.resource.kind_name == kind and item.resource.name == name:
                return item.resource
        return None


def manifest_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and manifest files in named directories (sorted, not recursive)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in MANIFEST_SUFFIXES and f.is_file())
        else:
            files.append(p)
    return files


def load(paths: Iterable[str | Path]) -> ManifestSet:
    paths = list(paths)
    out = ManifestSet()
    files = manifest_files(paths)
    named = ", ".join(map(str, paths))
    if not files:
        out.errors.append(
            ManifestError(named, "", "", "no manifest files found (.yaml, .yml, .json)")
        )
    documents = 0
    for path in files:
        try:
            docs = kubeyaml.read(_read_bytes(path))
        except kubeyaml.ReadError as exc:
            out.errors.append(ManifestError(str(path), "", "", exc.message, exc.line))
            continue
        documents += len(docs)
        for doc in docs:
            source = f"{path}#{doc.index}"
            resource, errors = parse_document(doc, source)
            out.errors += errors
            if resource is None:
                continue
            if out.find(resource.kind_name, resource.name) is not None:
                out.errors.append(
                    ManifestError(
                        source,
                        f"{resource.kind_name}/{resource.name}",
                        "metadata.name",
                        "defined twice; names must be unique per kind",
                        doc.line_of(("metadata", "name")),
                    )
                )
            else:
                out.resources.append(Loaded(source, resource))
    if files and not documents and not out.errors:
        out.errors.append(
            ManifestError(
                named,
                "",
                "",
                "no objects: the files are empty or hold only comments "
                "(kubectl: no objects passed to apply)",
            )
        )
    return out


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise kubeyaml.ReadError("no such file or directory")
    if not path.is_file():
        raise kubeyaml.ReadError("not a regular file (a FIFO or a device?); name a manifest file")
    size = path.stat().st_size
    if size > kubeyaml.MAX_FILE_BYTES:
        raise kubeyaml.ReadError(
            f"the file is {size} bytes, over the {kubeyaml.MAX_FILE_BYTES} allowed for a manifest"
        )
    try:
        with path.open("rb") as f:
            return f.read(kubeyaml.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise kubeyaml.ReadError(f"cannot read: {exc.strerror}") from None


def parse_json(text: str, source: str) -> tuple[Resource | None, list[ManifestError]]:
    """One object given as JSON text (e.g. `$FLYWHEEL_MANIFEST`)."""
    try:
        value = kubeyaml.read_json(text)
    except kubeyaml.ReadError as exc:
        return None, [ManifestError(source, "", "", exc.message, exc.line)]
    return parse(value, source)


def parse(doc: Any, source: str = "<input>") -> tuple[Resource | None, list[ManifestError]]:
    """One decoded document (dicts, lists, scalars) -> a validated resource, or the errors."""
    try:
        value = _json_data(doc)
    except kubeyaml.ReadError as exc:
        return None, [ManifestError(source, "", "", exc.message)]
    return parse_document(kubeyaml.Document(index=1, line=0, value=value), source)


def parse_document(
    doc: kubeyaml.Document, source: str
) -> tuple[Resource | None, list[ManifestError]]:
    """One document as kubectl read it -> a validated resource, or the errors that stop it."""
    body = doc.value
    line = doc.line or None
    if not isinstance(body, dict):
        return None, [
            ManifestError(
                source,
                "",
                "",
                f"a manifest must be a mapping with apiVersion, kind, metadata and spec, "
                f"got {_json_type(body)}",
                line,
            )
        ]
    kind, api_version, metadata = body.get("kind"), body.get("apiVersion"), body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    obj = f"{kind}/{name if isinstance(name, str) else '?'}" if isinstance(kind, str) else ""
    kinds = ", ".join(api.KINDS)

    def fail(field: str, message: str) -> tuple[None, list[ManifestError]]:
        return None, [
            ManifestError(source, obj, field, message, doc.line_of(tuple(field.split("."))))
        ]

    if not isinstance(kind, str):
        what = "missing" if kind is None else f"{_json_type(kind)}, not text"
        return fail("kind", f"kind is {what}; write one of {kinds}")
    if kind not in api.KINDS:
        return fail("kind", f"unknown kind {_short(kind)!r}; Flywheel kinds are {kinds}")
    if api_version != API_VERSION:
        shown = (
            repr(_short(api_version)) if isinstance(api_version, str) else _json_type(api_version)
        )
        return fail("apiVersion", f"{shown} is not served; use {API_VERSION}")
    if not isinstance(metadata, dict):
        return fail("metadata", "metadata must be a mapping with at least a name")
    size = _applied_size(body, metadata)
    if size > MAX_OBJECT_BYTES:
        return fail(
            "",
            f"the object takes {size} bytes of annotations once kubectl apply has stored its "
            f"copy in {LAST_APPLIED}, over the {MAX_OBJECT_BYTES} allowed; make it smaller",
        )
    model = api.KINDS[kind]
    errors = [
        ManifestError(source, obj, field, message, doc.line_of(path))
        for path, field, message in _metadata_problems(metadata)
    ]
    pruned = _prune_nulls(body, _schema(kind))
    pruned["metadata"] = {
        k: _null_values_empty(v) if k in ("labels", "annotations") else v
        for k, v in metadata.items()
        if v is not None and k not in _META_IGNORED | _META_REFUSED
    }
    try:
        resource = model.model_validate_json(
            json.dumps(pruned), strict=True, by_alias=True, by_name=False
        )
    except pydantic.ValidationError as exc:
        errors += _merge_union_errors([_error(source, obj, model, e, doc) for e in exc.errors()])
        return None, errors
    return (None, errors) if errors else (resource, [])


# --- what kubectl and the API server do before validation ------------------------------


def _json_data(value: Any, depth: int = 0) -> Any:
    """Python data (e.g. from `yaml.safe_load` or `json.loads`) -> the JSON kubectl sends."""
    if depth > kubeyaml.MAX_DEPTH:
        raise kubeyaml.ReadError(f"the document is nested deeper than {kubeyaml.MAX_DEPTH} levels")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise kubeyaml.ReadError(f"the mapping key {key!r} is not text; quote it")
            out[key] = _json_data(item, depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_json_data(item, depth + 1) for item in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise kubeyaml.ReadError(f"{value!r} is not a number JSON can carry")
        return kubeyaml.jsonable(value, repr(value), 0)
    raise kubeyaml.ReadError(f"a value of type {type(value).__name__} cannot be sent as JSON")


def _applied_size(body: dict[str, Any], metadata: dict[str, Any]) -> int:
    """Bytes of annotations after kubectl apply: the user's plus its copy of the object."""
    copy = json.dumps(body, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    annotations = metadata.get("annotations")
    own = (
        sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if isinstance(annotations, dict)
        else 0
    )
    return len(copy.encode()) + own + len(LAST_APPLIED)


@functools.cache
def _schema(kind: str) -> dict[str, Any]:
    from flywheel.api import crdgen

    return crdgen.structural_schema(api.KINDS[kind])


def _prune_nulls(value: Any, schema: dict[str, Any] | None) -> Any:
    """Nulls are dropped (or defaulted), as the API server does, except in free-form maps."""
    if isinstance(value, dict):
        free = schema is None or schema.get("x-kubernetes-preserve-unknown-fields", False)
        props = (schema or {}).get("properties", {})
        extra = (schema or {}).get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if item is None and not free and not (sub or {}).get("nullable"):
                continue
            out[key] = _prune_nulls(item, sub)
        return out
    if isinstance(value, list):
        items = (schema or {}).get("items")
        return [_prune_nulls(item, items) for item in value]
    return value


def _null_values_empty(entries: Any) -> Any:
    """A null label or annotation value arrives as the empty string."""
    if isinstance(entries, dict):
        return {k: "" if v is None else v for k, v in entries.items()}
    return entries


# metav1.ObjectMeta: what a manifest may set, what the API server sets and ignores on
# apply (so that `kubectl get -o yaml` output validates), and what only controllers set.
_META_FIELDS = {"name", "generateName", "namespace", "labels", "annotations", "finalizers"}
_META_IGNORED = {"uid", "resourceVersion", "selfLink", "creationTimestamp", "generation"}
_META_REFUSED = {
    "managedFields",
    "ownerReferences",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
}
_META_TEXT = {"name", "generateName", "namespace", "uid", "resourceVersion", "selfLink"}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS_SUBDOMAIN = re.compile(common.DNS_SUBDOMAIN.strip("^$"))
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_MAX_ANNOTATIONS_BYTES = 256 * 1024


def _metadata_problems(meta: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str, str]]:
    """(path, field, message) for what the API server refuses in metadata."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    for key, value in meta.items():
        path = ("metadata", key)
        if value is None:
            continue
        if key in _META_TEXT and not isinstance(value, str):
            problems.append((path, f"metadata.{key}", f"expected text, got {_json_type(value)}"))
        elif key == "generation" and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(
                (path, "metadata.generation", f"expected an integer, got {_json_type(value)}")
            )
        elif key == "creationTimestamp" and not isinstance(value, str):
            problems.append((path, f"metadata.{key}", f"expected text, got {_json_type(value)}"))
        elif key == "finalizers" and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            problems.append((path, "metadata.finalizers", "expected a list of names"))
        elif key in _META_REFUSED:
            problems.append(
                (path, f"metadata.{key}", "is set by the API server and controllers; remove it")
            )
        elif key not in _META_FIELDS | _META_IGNORED:
            allowed = ", ".join(sorted(_META_FIELDS))
            problems.append((path, f"metadata.{key}", f"unknown field; allowed here: {allowed}"))
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and not (
        len(namespace) <= 63 and _DNS_LABEL.fullmatch(namespace)
    ):
        problems.append(
            (
                ("metadata", "namespace"),
                "metadata.namespace",
                f"{_short(namespace)!r} is not valid; a namespace is a lowercase RFC 1123 label "
                "of at most 63 characters: a-z, 0-9 and '-'",
            )
        )
    for key in ("labels", "annotations"):
        entries = meta.get(key)
        if not isinstance(entries, dict):
            continue
        for name, value in entries.items():
            problem = _qualified_name_problem(name)
            if problem:
                problems.append(((("metadata", key, name)), f"metadata.{key}", problem))
            if (
                key == "labels"
                and isinstance(value, str)
                and not (len(value) <= 63 and _LABEL_VALUE.fullmatch(value))
            ):
                problems.append(
                    (
                        ("metadata", key, name),
                        f"metadata.labels.{name}",
                        f"label value {_short(value)!r} is not valid: at most 63 characters, "
                        "letters, digits, '-', '_' and '.', starting and ending with a letter "
                        "or digit",
                    )
                )
        if key == "annotations":
            size = sum(len(k) + len(v) for k, v in entries.items() if isinstance(v, str))
            if size > _MAX_ANNOTATIONS_BYTES:
                problems.append(
                    (
                        ("metadata", key),
                        "metadata.annotations",
                        f"annotations hold {size} bytes; at most {_MAX_ANNOTATIONS_BYTES}",
                    )
                )
    return problems


def _qualified_name_problem(name: str) -> str:
    prefix, _, local = name.rpartition("/")
    if "/" in name and not (prefix and len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"key {_short(name)!r}: the prefix before '/' must be a DNS subdomain"
    if not (local and len(local) <= 63 and _QUALIFIED_NAME.fullmatch(local)):
        return (
            f"key {_short(name)!r} is not a qualified name: at most 63 characters, letters, "
            "digits, '-', '_' and '.', starting and ending with a letter or digit, with an "
            "optional DNS prefix and '/'"
        )
    return ""


# --- errors ----------------------------------------------------------------------------

# Lists whose items are named, and the word for an item, so that a message names it.
_NAMED_ITEMS = {
    "features": ("feature", "name"),
    "columns": ("column", "name"),
    "entities": ("entity", "name"),
    "overrides": ("override of feature", "feature"),
}
_TYPE_ERRORS = {
    "string_type": "text",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "int_from_float": "an integer",
}
# A number out of its range was read as the number it was meant to be: saying how kubectl
# reads it, or to quote it, would mislead.
_BOUND_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "multiple_of",
    "finite_number",
}


def _error(
    source: str,
    obj: str,
    model: type[pydantic.BaseModel],
    err: Any,
    doc: kubeyaml.Document,
) -> ManifestError:
    loc = [p for p in err["loc"] if isinstance(p, int) or not _is_union_tag(p)]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    message = str(err["msg"]).removeprefix("Value error, ")
    kind = err["type"]
    reading = doc.readings.get(tuple(loc))
    if kind == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        message = "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        guess = _camel(str(loc[-1])) if loc else ""
        if guess in allowed and guess != loc[-1]:
            message = f"unknown field; write {guess} (fields are camelCase); allowed here: " + (
                ", ".join(allowed)
            )
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        hint = common.PATTERN_HINTS.get(pattern, f"a string matching {pattern}")
        message = f"{_shown(err['input'])} is not valid; expected {hint}"
    elif kind in _TYPE_ERRORS:
        message = _type_message(kind, err["input"])
    if reading is not None and kind != "extra_forbidden" and kind not in _BOUND_ERRORS:
        quoted = json.dumps(reading.text)
        message += f" (kubectl reads {reading.describe()}"
        message += f"; to mean the text, quote it: {quoted})" if kind != "int_type" else ")"
    names = _item_names(doc.value, loc)
    if names:
        message += "; in " + ", ".join(names)
    return ManifestError(source, obj, field, common.redact(message), doc.line_of(tuple(loc)))


def _merge_union_errors(errors: list[ManifestError]) -> list[ManifestError]:
    """One error per field for a union: "expected an integer or text, got ..."."""
    out: list[ManifestError] = []
    for error in errors:
        last = out[-1] if out else None
        if (
            last is not None
            and last.field == error.field
            and last.message.startswith("expected ")
            and error.message.startswith("expected ")
            and ", got" in last.message
        ):
            wanted = last.message[len("expected ") : last.message.index(", got")]
            message = f"expected {wanted} or {error.message.removeprefix('expected ')}"
            out[-1] = dataclasses.replace(error, message=message)
        else:
            out.append(error)
    return out


def _type_message(kind: str, value: Any) -> str:
    wanted = _TYPE_ERRORS[kind]
    if isinstance(value, str):
        if kind in ("int_type", "float_type") and _looks_numeric(value):
            return f"expected {wanted}, got the text {_shown(value)}; write it without quotes"
        if kind == "bool_type":
            return (
                f"expected true or false, got the text {_shown(value)}; write true or false "
                "without quotes"
            )
        return f"expected {wanted}, got the text {_shown(value)}"
    if kind in ("int_type", "int_from_float") and isinstance(value, float):
        if value.is_integer():
            return (
                f"{value:.0f} is outside the int64 range the API server holds "
                f"({kubeyaml.INT64_MIN}..{kubeyaml.INT64_MAX})"
            )
        return f"expected an integer, got {value!r}"
    return f"expected {wanted}, got {_json_type(value)}"


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _item_names(body: Any, loc: list[Any]) -> list[str]:
    names = []
    node = body
    parent = ""
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str):
            node, parent = node.get(part), part
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            word, key = _NAMED_ITEMS.get(parent, ("", ""))
            if word and isinstance(node, dict) and isinstance(node.get(key), str):
                names.append(f"{word} {node[key]!r}")
        else:
            break
    return names


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _is_union_tag(part: str) -> bool:
    # pydantic puts the tried member of a union into the location, e.g. "int" or "str".
    return part in {"int", "str", "float", "bool", "constrained-str"} or part.startswith(
        "function-"
    )


def _allowed_fields(model: type[pydantic.BaseModel], path: list[Any]) -> list[str]:
    """The wire names of the fields of the model found at `path` below `model`."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not _is_model(current):
            return []
        match = next(
            (f for n, f in current.model_fields.items() if (f.alias or n) == part or n == part),
            None,
        )
        if match is None:
            return []
        current = _unwrap(match.annotation)
    if not _is_model(current):
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, pydantic.BaseModel)


def _unwrap(annotation: Any) -> Any:
    """list[X] / X | None / dict[str, X] -> X."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    if origin in (list, tuple):
        return _unwrap(typing.get_args(annotation)[0])
    if origin is dict:
        return _unwrap(typing.get_args(annotation)[1])
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {_shown(value)}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _shown(value: Any) -> str:
    return repr(_short(value)) if isinstance(value, str) else repr(value)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
