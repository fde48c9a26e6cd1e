"""`flywheel dataset ingest`, and what every runtime command shares with it.

    flywheel dataset ingest -f manifests/ --name customer-events --result status.json

In a cluster the operator runs the same command in a Job without `-f`: the object's
manifest comes in `$FLYWHEEL_MANIFEST`, the status of what it depends on in
`$FLYWHEEL_INPUTS` ({"Dataset/<name>": status}), and the result goes to the termination
log. The result is the status fields as JSON (camelCase), plus `error` when the run
failed, kept under the 4 KiB a termination message holds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pydantic

from flywheel import api, kubeyaml, manifests
from flywheel.api.common import Resource, StatusBase
from flywheel.api.dataset import Dataset
from flywheel.local.executor import Context

MANIFEST_ENV = "FLYWHEEL_MANIFEST"
INPUTS_ENV = "FLYWHEEL_INPUTS"
RESULT_LIMIT_BYTES = 4000
ERROR_LIMIT_CHARS = 1500


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        help=f"file or directory (default: the manifest in ${MANIFEST_ENV})",
    )
    p.add_argument("--name", help="the object to run (needed when the files hold several)")
    p.add_argument("--namespace", default=os.environ.get("FLYWHEEL_NAMESPACE", "default"))
    p.add_argument(
        "--artifact-root",
        default=os.environ.get("FLYWHEEL_HOME", ".flywheel"),
        help="where snapshots and stores go: a path, file:// or pvc://claim/path "
        "(default: $FLYWHEEL_HOME or ./.flywheel)",
    )
    p.add_argument("--result", type=Path, help="write the resulting status here as JSON")


def select(args: argparse.Namespace, kind: str) -> tuple[Resource, Context]:
    """The one object of `kind` the command is about, and the context to run it in.

    Every object in the given manifests is put in the context (a FeatureView finds its
    Dataset there), and the statuses in $FLYWHEEL_INPUTS too.
    """
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
    from flywheel.storage import uris  # pyarrow: only for commands that do data work

    try:
        artifact_root = uris.local_directory(args.artifact_root)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    context = Context(
        artifact_root=artifact_root,
        base_dir=Path(source).resolve().parent if args.filename else Path.cwd(),
        namespace=item.resource.metadata.namespace or args.namespace,
    )
    for other in loaded.resources:
        context.resources[f"{other.resource.kind_name}/{other.resource.name}"] = other.resource
    context.statuses.update(input_statuses(os.environ.get(INPUTS_ENV)))
    return item.resource, context


def _from_environment() -> manifests.ManifestSet:
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
    """{"Dataset/events": {...status...}} -> status models, keyed the same way."""
    out: dict[str, StatusBase] = {}
    try:
        given = kubeyaml.read_json(text) if text else {}
    except kubeyaml.ReadError as exc:
        raise SystemExit(f"error: ${INPUTS_ENV}: {exc.message}") from None
    if not isinstance(given, dict):
        raise SystemExit(
            f'error: ${INPUTS_ENV}: expected {{"Kind/name": status}}, got JSON {given!r:.40}'
        )
    for key, wire in given.items():
        kind = key.split("/", 1)[0]
        model = api.KINDS.get(kind)
        if model is None or not isinstance(wire, dict):
            continue
        status_type = model.model_fields["status"].annotation
        status_model = next(a for a in getattr(status_type, "__args__", ()) if a is not type(None))
        try:
            out[key] = status_model.model_validate(wire)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise SystemExit(
                f"error: ${INPUTS_ENV}: the status of {key}: {field}: {first['msg']}"
            ) from None
    return out


def result_of(status: StatusBase) -> dict[str, Any]:
    """The status as the operator merges it: fields, plus `error` when the run failed."""
    body = status.to_wire()
    failing = [c for c in status.conditions if c.status != "True"]
    if status.phase == "Failed" and failing:
        body["error"] = f"{failing[0].reason}: {failing[0].message}"[:ERROR_LIMIT_CHARS]
    # Conditions are the operator's to write; their long messages would not fit.
    body.pop("conditions", None)
    return body


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


def register(sub: Any) -> None:
    p = sub.add_parser("dataset", help="Dataset work: ingest a source into a snapshot")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    ingest = dsub.add_parser("ingest", help="validate a source and publish a snapshot")
    add_common_arguments(ingest)
    ingest.set_defaults(handler=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from flywheel.data import runner

    resource, context = select(args, "Dataset")
    assert isinstance(resource, Dataset)
    status = runner.run_dataset(resource, context)
    write_result(args.result, status)
    ready = status.conditions[-1] if status.conditions else None
    if ready is not None:
        print(f"Dataset/{resource.name}: {ready.reason}: {ready.message}", file=sys.stderr)
    return 0 if status.phase == "Ready" else 1
