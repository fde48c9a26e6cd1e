"""`flywheel dataset ingest`: the command a Job runs for a Dataset.

    flywheel dataset ingest -f manifests/ --name customer-events --result /tmp/status.json

The result file holds {"apiVersion", "kind", "name", "status"}, for the operator to copy
into the object's status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from flywheel import manifests
from flywheel.api.common import Resource, StatusBase
from flywheel.api.dataset import Dataset
from flywheel.local.executor import Context


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", action="append", required=True, help="file or directory")
    p.add_argument("--name", help="the object to run (needed when the files hold several)")
    p.add_argument("--namespace", default=os.environ.get("FLYWHEEL_NAMESPACE", "default"))
    p.add_argument(
        "--artifact-root",
        type=Path,
        default=Path(os.environ.get("FLYWHEEL_HOME", ".flywheel")),
        help="where snapshots and stores go (default: $FLYWHEEL_HOME or ./.flywheel)",
    )
    p.add_argument("--result", type=Path, help="write the resulting status here as JSON")


def select(args: argparse.Namespace, kind: str) -> tuple[Resource, Context, manifests.ManifestSet]:
    """The one object of `kind` the command is about, and a context for its manifests."""
    loaded = manifests.load(args.filename)
    if loaded.errors:
        raise SystemExit("\n".join(f"error: {e}" for e in loaded.errors))
    items = [i for i in loaded.resources if i.resource.kind_name == kind]
    if args.name:
        items = [i for i in items if i.resource.name == args.name]
    if len(items) != 1:
        names = ", ".join(i.resource.name for i in items) or "none"
        raise SystemExit(f"error: expected one {kind} (found: {names}); choose one with --name")
    item = items[0]
    context = Context(
        artifact_root=args.artifact_root.resolve(),
        base_dir=Path(item.source.rsplit("#", 1)[0]).resolve().parent,
        namespace=args.namespace,
    )
    return item.resource, context, loaded


def write_result(path: Path | None, resource: Resource, status: StatusBase) -> None:
    body: dict[str, Any] = {
        "apiVersion": resource.api_version,
        "kind": resource.kind_name,
        "name": resource.name,
        "status": status.to_wire(),
    }
    text = json.dumps(body, indent=2)
    if path is None:
        print(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)


def register(sub: Any) -> None:
    p = sub.add_parser("dataset", help="Dataset work: ingest a source into a snapshot")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    ingest = dsub.add_parser("ingest", help="validate a source and publish a snapshot")
    add_common_arguments(ingest)
    ingest.set_defaults(handler=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from flywheel.data import runner

    resource, context, _ = select(args, "Dataset")
    assert isinstance(resource, Dataset)
    status = runner.run_dataset(resource, context)
    write_result(args.result, resource, status)
    ready = status.conditions[-1] if status.conditions else None
    if ready is not None:
        print(f"Dataset/{resource.name}: {ready.reason}: {ready.message}", file=sys.stderr)
    return 0 if status.phase == "Ready" else 1
