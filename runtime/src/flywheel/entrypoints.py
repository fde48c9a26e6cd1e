"""The runner contract: how each kind's work runs, the same on one machine and in a Pod.

- `RunContext`: what a runner may use (the artifact root, where relative paths start,
  the namespace, and the objects and statuses of its inputs). Frozen: a runner cannot
  change what the next step sees.
- `Runner`: `runner(resource, context) -> status`, the status model of that kind.
- `ENTRYPOINTS`: the one table kind -> runner and the command a Pod runs for it. The
  local executor (`flywheel run`) calls the runner in-process; the operator puts the
  command in a Job or a RayJob, and the command calls the same runner.
- The Job side: the environment a Pod gets (`$FLYWHEEL_MANIFEST`, `$FLYWHEEL_INPUTS`,
  `$FLYWHEEL_INPUT_MANIFESTS`),
  selecting the object a command is about, and writing its result small enough for a
  termination message.

This module imports only the api models and the manifest reader; kind packages import it,
never the executor or the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import pydantic

from flywheel import api, redaction
from flywheel.api.common import Resource, StatusBase, resource_key

if TYPE_CHECKING:
    from flywheel import manifests

# --- the environment a runtime Pod gets; the operator imports these names ------------

MANIFEST_ENV = "FLYWHEEL_MANIFEST"  # the object, as JSON
INPUTS_ENV = "FLYWHEEL_INPUTS"  # {"Dataset/<name>": status} of what it depends on
# [manifest, ...] of what it depends on (kind, name, namespace and spec; never a status or
# a Secret): runners read an input's spec, e.g. a FeatureView's features for a training
# set's join, or where a Dataset's snapshots live.
INPUT_MANIFESTS_ENV = "FLYWHEEL_INPUT_MANIFESTS"
# execve refuses any one environment string over 128 KiB (Linux MAX_ARG_STRLEN); the
# operator keeps each value it writes below this.
ENV_VALUE_LIMIT_BYTES = 120 * 1024
NAMESPACE_ENV = "FLYWHEEL_NAMESPACE"
# A RayJob's submitter cannot read its RayJob (it has no API token): the operator hands it
# the RayJob's entrypoint and runtimeEnvYAML in these, and it submits exactly them.
RAY_ENTRYPOINT_ENV = "FLYWHEEL_RAY_ENTRYPOINT"
RAY_RUNTIME_ENV_ENV = "FLYWHEEL_RAY_RUNTIME_ENV_YAML"
# A line of a run's log reporting its progress: this prefix, then one JSON object.
PROGRESS_PREFIX = "flywheel-progress "
HOME_ENV = "FLYWHEEL_HOME"  # the artifact root, when --artifact-root is not given
PVC_ROOT_ENV = "FLYWHEEL_PVC_ROOT"  # where pvc://<claim>/... claims are mounted
SECRETS_DIR_ENV = "FLYWHEEL_SECRETS_DIR"  # where credential Secrets are mounted
REDIS_URL_ENV = "FLYWHEEL_REDIS_URL"

DEFAULT_ARTIFACT_ROOT = ".flywheel"
DEFAULT_PVC_ROOT = "/mnt/pvc"
DEFAULT_SECRETS_DIR = "/var/run/secrets/flywheel"

# Namespaces become path segments under the artifact root: DNS labels only, as in Kubernetes.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# A termination message holds 4096 bytes; the kubelet drops the rest.
RESULT_LIMIT_BYTES = 4000
ERROR_LIMIT_CHARS = 1500


# --- the contract --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a runner may use: where artifacts go, and the inputs already run."""

    artifact_root: Path
    # Relative paths in a spec are resolved against the directory of its manifest.
    base_dir: Path = dataclasses.field(default_factory=Path.cwd)
    namespace: str = "default"
    # Keyed by "Kind/name" (`Resource.key`).
    resources: Mapping[str, Resource] = dataclasses.field(default_factory=dict)
    statuses: Mapping[str, StatusBase] = dataclasses.field(default_factory=dict)
    # Live progress of a long step ("Kind/name", fields such as epoch and loss) for a
    # display; None when nobody watches.
    progress: Callable[[str, Mapping[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        if not DNS_LABEL.match(self.namespace):
            raise ValueError(
                f"namespace {self.namespace!r} is not a DNS label (lowercase letters, digits "
                "and '-', at most 63)"
            )

    def input_resource(self, kind: str, name: str) -> Resource | None:
        return self.resources.get(resource_key(kind, name))

    def input_status(self, kind: str, name: str) -> StatusBase | None:
        return self.statuses.get(resource_key(kind, name))

    def replace(self, **changes: Any) -> RunContext:
        return dataclasses.replace(self, **changes)


class Runner(Protocol):
    """Runs one object's work and returns its status (phase `Failed` on a known failure)."""

    def __call__(self, resource: Any, context: RunContext, /) -> StatusBase: ...


@dataclasses.dataclass(frozen=True)
class Entrypoint:
    kind: str
    # "module:function"; imported only when an object of this kind runs, so that commands
    # that do not need torch or pyarrow never import them.
    runner: str
    # The `flywheel ...` words a Pod runs to do the same work.
    command: tuple[str, ...]
    # "module:function" giving a context manager that `flywheel run` enters once, before
    # the first step of this kind, and leaves after the last step (one local Ray per run).
    session: str | None = None


ENTRYPOINTS: dict[str, Entrypoint] = {
    e.kind: e
    for e in (
        Entrypoint("Dataset", "flywheel.data.runner:run_dataset", ("dataset", "ingest")),
        Entrypoint(
            "FeatureView",
            "flywheel.features.runner:run_featureview",
            ("features", "materialize"),
        ),
        Entrypoint(
            "TrainingJob",
            "flywheel.training.runner:run_trainingjob",
            ("train", "run"),
            session="flywheel.training.cluster:local_ray",
        ),
        # On one machine a ModelDeployment is served and rolled out in-process; in a
        # cluster the operator builds its servers and router instead of running a command.
        Entrypoint(
            "ModelDeployment",
            "flywheel.local.deployment:run_modeldeployment",
            ("serve", "router"),
        ),
        Entrypoint("DriftMonitor", "flywheel.drift.runner:run_driftmonitor", ("drift", "run")),
    )
}

# `flywheel <group> ...` command groups: group -> "module:register(subparsers)".
COMMAND_GROUPS: dict[str, str] = {
    "dataset": "flywheel.data.commands:register",
    "features": "flywheel.features.commands:register",
    "train": "flywheel.training.commands:register",
    "registry": "flywheel.training.commands:register_registry",
    "serve": "flywheel.serving.commands:register",
    "drift": "flywheel.drift.commands:register",
}


def import_target(target: str) -> Any:
    """'package.module:function' -> the function."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def runner_for(kind: str) -> Runner | None:
    entry = ENTRYPOINTS.get(kind)
    if entry is None:
        return None
    runner: Runner = import_target(entry.runner)
    return runner


# --- the Job side: what every runtime command shares ---------------------------------


def add_object_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every command about one object takes."""
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        help=f"file or directory (default: the manifest in ${MANIFEST_ENV})",
    )
    p.add_argument("--name", help="the object to run (needed when the files hold several)")
    p.add_argument("--namespace", default=os.environ.get(NAMESPACE_ENV, "default"))
    p.add_argument(
        "--artifact-root",
        default=os.environ.get(HOME_ENV, DEFAULT_ARTIFACT_ROOT),
        help="where snapshots, models and stores go: a path, file:// or pvc://claim/path "
        f"(default: ${HOME_ENV} or ./{DEFAULT_ARTIFACT_ROOT})",
    )
    p.add_argument("--result", type=Path, help="write the resulting status here as JSON")


def select_object(args: argparse.Namespace, kind: str) -> tuple[Resource, RunContext]:
    """The one object of `kind` a command is about, and the context to run it in.

    Every object in the given manifests is an input in the context (a FeatureView finds
    its Dataset there), and so is every manifest in $FLYWHEEL_INPUT_MANIFESTS and every
    status in $FLYWHEEL_INPUTS. Only the given manifests hold the object itself.
    """
    from flywheel import manifests  # YAML reading: only for a command that loads files

    loaded = manifests.load(args.filename) if args.filename else _from_environment()
    if loaded.errors:
        raise SystemExit("\n".join(f"error: {e}" for e in loaded.errors))
    items = [i for i in loaded.resources if i.resource.kind_name == kind]
    if args.name:
        items = [i for i in items if i.resource.name == args.name]
    if len(items) != 1:
        names = ", ".join(i.resource.name for i in items) or "none"
        raise SystemExit(f"error: expected one {kind} (found: {names}); choose one with --name")
    item = items[0]
    source = item.source.rsplit("#", 1)[0]
    try:
        artifact_root = local_directory(args.artifact_root)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        statuses = input_statuses(os.environ.get(INPUTS_ENV))
    except ValueError as exc:
        raise SystemExit(f"error: ${INPUTS_ENV}: {exc}") from None
    try:
        given = input_manifests(os.environ.get(INPUT_MANIFESTS_ENV))
    except ValueError as exc:
        raise SystemExit(f"error: ${INPUT_MANIFESTS_ENV}: {exc}") from None
    # The files named on the command line win over the operator's copies.
    resources = {r.key: r for r in given} | {o.resource.key: o.resource for o in loaded.resources}
    try:
        context = RunContext(
            artifact_root=artifact_root,
            base_dir=Path(source).resolve().parent if args.filename else Path.cwd(),
            namespace=item.resource.metadata.namespace or args.namespace,
            resources=resources,
            statuses=statuses,
        )
    except ValueError as exc:
        raise SystemExit(f"error: --namespace: {exc}") from None
    return item.resource, context


def local_directory(uri: str, base_dir: Path | None = None) -> Path:
    """A path, file:// or pvc:// URI as a local directory (the artifact root).

    >>> local_directory("./a", Path("/srv")).as_posix()
    '/srv/a'
    """
    parsed = urlparse(uri)
    if parsed.scheme == "pvc":
        root = Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT))
        return root / parsed.netloc / parsed.path.lstrip("/")
    if parsed.scheme not in ("", "file"):
        raise ValueError(
            f"the artifact root {uri!r} must be a local path, file:// or pvc://; "
            "put snapshots on object storage with spec.destination"
        )
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return Path(os.path.normpath(path))


def _from_environment() -> manifests.ManifestSet:
    from flywheel import manifests

    loaded = manifests.ManifestSet()
    text = os.environ.get(MANIFEST_ENV)
    if not text:
        raise SystemExit(f"error: give -f FILE, or the manifest as JSON in ${MANIFEST_ENV}")
    resource, errors = manifests.parse_json(text, f"${MANIFEST_ENV}")
    loaded.errors += errors
    if resource is not None:
        loaded.resources.append(manifests.Loaded(f"${MANIFEST_ENV}", resource))
    return loaded


def input_statuses(text: str | None) -> dict[str, StatusBase]:
    """{"Dataset/events": {...status...}} -> status models, keyed the same way.

    Read with kubectl's number rules; anything malformed raises ValueError naming it.
    """
    from flywheel import kubeyaml

    try:
        given = kubeyaml.read_json(text) if text else {}
    except kubeyaml.ReadError as exc:
        raise ValueError(exc.message) from None
    if not isinstance(given, dict):
        raise ValueError(f'expected {{"Kind/name": status}}, got JSON {given!r:.40}')
    out: dict[str, StatusBase] = {}
    for key, wire in given.items():
        kind = key.split("/", 1)[0]
        model = api.KINDS.get(kind)
        if model is None or not isinstance(wire, dict):
            continue
        try:
            out[key] = status_model(model).model_validate(wire)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"the status of {key}: {field}: {first['msg']}") from None
    return out


def input_manifests(text: str | None) -> list[Resource]:
    """[{"apiVersion": ..., "kind": "FeatureView", ...}, ...] -> validated resources.

    Anything malformed raises ValueError naming the item and the field.
    """
    from flywheel import kubeyaml, manifests

    try:
        given = kubeyaml.read_json(text) if text else []
    except kubeyaml.ReadError as exc:
        raise ValueError(exc.message) from None
    if not isinstance(given, list):
        raise ValueError(f"expected a JSON list of manifests, got JSON {given!r:.40}")
    out: list[Resource] = []
    for index, doc in enumerate(given):
        resource, errors = manifests.parse(doc, f"item {index}")
        if errors:
            raise ValueError(str(errors[0]))
        if resource is not None:
            out.append(resource)
    return out


def status_model(model: type[Resource]) -> type[StatusBase]:
    """The status class of a kind (its `status` field is `XStatus | None`)."""
    annotation = model.model_fields["status"].annotation
    found: type[StatusBase] = next(
        a for a in getattr(annotation, "__args__", ()) if a is not type(None)
    )
    return found


def result_of(status: StatusBase) -> dict[str, Any]:
    """The status as the operator merges it: fields, plus `error` when the run failed."""
    body = status.to_wire()
    failing = [c for c in status.conditions if c.status != "True"]
    if status.phase == "Failed" and failing:
        body["error"] = f"{failing[0].reason}: {failing[0].message}"[:ERROR_LIMIT_CHARS]
    # Conditions are the operator's to write; their long messages would not fit.
    body.pop("conditions", None)
    redacted: dict[str, Any] = _redact_strings(body)
    return redacted


def _redact_strings(value: Any) -> Any:
    """Every string of a JSON document through `redaction.redact` (URIs included)."""
    if isinstance(value, str):
        return redaction.redact(value)
    if isinstance(value, dict):
        return {k: _redact_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_strings(v) for v in value]
    return value


def write_result(path: Path | None, status: StatusBase) -> None:
    text = json.dumps(result_of(status), separators=(",", ":"))
    if len(text.encode()) > RESULT_LIMIT_BYTES:
        raise ValueError(f"result of {len(text)} bytes does not fit a termination message")
    if path is None:
        print(text)
        return
    # Written in place: the termination log is a file the kubelet gave us, in /dev.
    with open(path, "w") as f:
        f.write(text + "\n")


# --- progress, while a run runs ------------------------------------------------------


def progress_line(fields: Mapping[str, Any]) -> str:
    """One log line of live progress, for whoever follows the run's log.

    >>> progress_line({"epoch": 7, "epochs": 20, "loss": 0.41234})
    'flywheel-progress {"epoch":7,"epochs":20,"loss":0.4123}'
    """
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in fields.items()}
    return PROGRESS_PREFIX + json.dumps(rounded, separators=(",", ":"))


def last_progress(log: str) -> dict[str, Any] | None:
    """The fields of the last progress line of a log (lines may carry a prefix such as
    Ray's "(pid=1) "), or None.

    >>> last_progress('x\\nflywheel-progress {"epoch":1}\\n(w) flywheel-progress {"epoch":2}\\ny')
    {'epoch': 2}
    """
    for line in reversed(log.splitlines()):
        _, found, text = line.partition(PROGRESS_PREFIX)
        if not found:
            continue
        try:
            fields = json.loads(text)
        except ValueError:
            continue
        if isinstance(fields, dict):
            return fields
    return None


def describe_progress(fields: Mapping[str, Any]) -> str:
    """The short text of `kubectl get`'s Progress column.

    >>> describe_progress({"epoch": 7, "epochs": 20, "loss": 0.4123})
    'epoch 7/20 loss 0.412'
    >>> describe_progress({"epoch": 3})
    'epoch 3'
    """
    text = f"epoch {fields.get('epoch', '?')}"
    if fields.get("epochs"):
        text += f"/{fields['epochs']}"
    if isinstance(fields.get("loss"), int | float):
        text += f" loss {fields['loss']:.3f}"
    return text
