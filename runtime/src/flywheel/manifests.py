"""Reading manifests and validating them with the api models.

Every problem becomes a `ManifestError` that names the file, the document, the object,
the field path and what is allowed, so that a user can fix it without reading code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import yaml

from flywheel import api
from flywheel.api import common
from flywheel.api.common import API_VERSION, Resource

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclasses.dataclass(frozen=True)
class ManifestError:
    source: str  # "file.yaml#2": the file and the document's index in it, from 1
    obj: str  # "ModelDeployment/churn" or "" when not known
    field: str  # "spec.rollout.canary.steps[1].weight" or ""
    message: str

    def __str__(self) -> str:
        where = " ".join(p for p in (self.source, f"({self.obj})" if self.obj else "") if p)
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {field}{self.message}"


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
    out = ManifestSet()
    files = manifest_files(paths)
    if not files:
        out.errors.append(
            ManifestError(
                ", ".join(map(str, paths)), "", "", "no manifest files found (.yaml, .yml, .json)"
            )
        )
    for path in files:
        for source, doc, error in _documents(path):
            if error is not None:
                out.errors.append(error)
                continue
            resource, errors = parse(doc, source)
            out.errors += errors
            if resource is not None:
                if out.find(resource.kind_name, resource.name) is not None:
                    out.errors.append(
                        ManifestError(
                            source,
                            f"{resource.kind_name}/{resource.name}",
                            "metadata.name",
                            "defined twice; names must be unique per kind",
                        )
                    )
                else:
                    out.resources.append(Loaded(source, resource))
    return out


def _documents(path: Path) -> Iterator[tuple[str, Any, ManifestError | None]]:
    try:
        text = path.read_text()
    except OSError as exc:
        yield str(path), None, ManifestError(str(path), "", "", f"cannot read: {exc.strerror}")
        return
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        yield str(path), None, ManifestError(str(path), "", "", f"not valid YAML: {exc}")
        return
    index = 0
    for doc in docs:
        if doc is None:  # empty document between separators
            continue
        index += 1
        yield f"{path}#{index}", doc, None


def parse(doc: Any, source: str = "<input>") -> tuple[Resource | None, list[ManifestError]]:
    """One document -> a validated resource, or the errors that stop it."""
    if not isinstance(doc, dict):
        return None, [
            ManifestError(source, "", "", f"a manifest must be a mapping, got {type(doc).__name__}")
        ]
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    name = (
        (doc.get("metadata") or {}).get("name", "?")
        if isinstance(doc.get("metadata"), dict)
        else "?"
    )
    obj = f"{kind}/{name}"
    kinds = ", ".join(api.KINDS)
    if kind not in api.KINDS:
        return None, [
            ManifestError(source, obj, "kind", f"unknown kind {kind!r}; Flywheel kinds are {kinds}")
        ]
    if api_version != API_VERSION:
        return None, [
            ManifestError(
                source, obj, "apiVersion", f"{api_version!r} is not served; use {API_VERSION}"
            )
        ]
    model = api.KINDS[kind]
    try:
        return model.model_validate(doc), []
    except pydantic.ValidationError as exc:
        return None, [_error(source, obj, model, e) for e in exc.errors()]


def _error(source: str, obj: str, model: type[pydantic.BaseModel], err: Any) -> ManifestError:
    loc = [p for p in err["loc"] if isinstance(p, int) or not _is_union_tag(p)]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_fields(model, loc[:-1])
        message = "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
    elif err["type"] == "missing":
        message = "required field is missing"
    elif err["type"] == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        hint = common.PATTERN_HINTS.get(pattern, f"a string matching {pattern}")
        message = f"{err['input']!r} is not valid; expected {hint}"
    return ManifestError(source, obj, field, message)


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
    return annotation
