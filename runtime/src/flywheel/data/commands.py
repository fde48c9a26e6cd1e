"""`flywheel dataset ingest`: what a Dataset's Job runs.

    flywheel dataset ingest -f manifests/ --name customer-events --result status.json

In a cluster the operator runs the same command without `-f` (see `flywheel.entrypoints`
for the environment it gets and the result it writes).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from flywheel import entrypoints
from flywheel.api.dataset import Dataset


def register(sub: Any) -> None:
    p = sub.add_parser("dataset", help="Dataset work: ingest a source into a snapshot")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    ingest = dsub.add_parser("ingest", help="validate a source and publish a snapshot")
    entrypoints.add_object_arguments(ingest)
    ingest.set_defaults(handler=cmd_ingest)


def cmd_ingest(args: argparse.Namespace) -> int:
    from flywheel.data import runner

    resource, context = entrypoints.select_object(args, "Dataset")
    assert isinstance(resource, Dataset)
    status = runner.run_dataset(resource, context)
    entrypoints.write_result(args.result, status)
    ready = status.conditions[-1] if status.conditions else None
    if ready is not None:
        print(f"{resource.key}: {ready.reason}: {ready.message}", file=sys.stderr)
    return 0 if status.phase == "Ready" else 1
