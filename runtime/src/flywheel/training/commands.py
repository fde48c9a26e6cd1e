"""`flywheel train ...`: what a RayJob runs, and looking at a trained version.

flywheel train run      -f manifests/ --name churn-logistic --result out.json
flywheel train submit   --result /dev/termination-log    # the RayJob's submitter
flywheel train evaluate -f manifests/ --name churn-logistic [--version V]

flywheel registry alias set --model-root ROOT --alias champion --version V --reason R
flywheel registry alias get --model-root ROOT --alias candidate
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel import entrypoints
from flywheel.api.trainingjob import TrainingJob


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="TrainingJob work: train, submit to Ray, evaluate")
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="COMMAND")

    r = tsub.add_parser("run", help="train, evaluate, gate and register a model")
    entrypoints.add_object_arguments(r)
    r.add_argument(
        "--verdict-exit-code",
        type=int,
        default=1,
        help="exit code when a gate rejects the model (a RayJob's entrypoint gives 0: the "
        "Ray job did its work, and KubeRay must not retry a verdict)",
    )
    r.add_argument(
        "--progress-lines",
        action="store_true",
        help="print a `flywheel-progress {json}` line per epoch (followed in a RayJob)",
    )
    r.set_defaults(handler=cmd_run)

    s = tsub.add_parser("submit", help="submit `train run` to a Ray cluster and follow it")
    entrypoints.add_object_arguments(s)
    s.add_argument("--address", help="Ray dashboard address (default: $RAY_DASHBOARD_ADDRESS)")
    s.set_defaults(handler=cmd_submit)

    e = tsub.add_parser("evaluate", help="metrics of a registered version on the test split")
    entrypoints.add_object_arguments(e)
    e.add_argument("--version", help="the version (default: the champion)")
    e.set_defaults(handler=cmd_evaluate)


def _job(args: argparse.Namespace) -> tuple[TrainingJob, Any]:
    resource, context = entrypoints.select_object(args, "TrainingJob")
    assert isinstance(resource, TrainingJob)
    return resource, context


def cmd_run(args: argparse.Namespace) -> int:
    from flywheel.training import runner

    job, context = _job(args)
    if args.progress_lines and context.progress is None:
        epochs = job.spec.hyperparameters.epochs
        context = context.replace(progress=lambda _key, fields: _print_progress(fields, epochs))
    status = runner.run_trainingjob(job, context)
    entrypoints.write_result(args.result, status)
    done = status.conditions[-1]
    print(f"TrainingJob/{job.name}: {done.reason}: {done.message}", file=sys.stderr)
    if status.phase == runner.SUCCEEDED:
        return 0
    return args.verdict_exit_code if done.reason == runner.GATE_FAILED else 1


def _print_progress(fields: Any, epochs: int) -> None:
    line = {"epoch": fields.get("epoch"), "epochs": epochs}
    line |= {k: fields[k] for k in ("loss", "val_loss", "elapsed") if k in fields}
    print(entrypoints.progress_line(line), flush=True)


def cmd_submit(args: argparse.Namespace) -> int:
    from flywheel.training import submit

    job, context = _job(args)
    return submit.submit(job, context, args.address, args.result, args.artifact_root)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flywheel.training import runner

    job, context = _job(args)
    found = runner.evaluate_version(job, context, args.version)
    print(json.dumps(found, indent=2, sort_keys=True))
    return 0


def register_registry(sub: Any) -> None:
    p = sub.add_parser("registry", help="the model registry: read and move aliases")
    rsub = p.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")
    a = rsub.add_parser("alias", help="a model's aliases (champion, candidate)")
    asub = a.add_subparsers(dest="alias_command", required=True, metavar="COMMAND")

    s = asub.add_parser("set", help="point an alias at a registered version")
    _alias_arguments(s)
    s.add_argument("--version", required=True, help="a registered version of the model")
    s.add_argument("--reason", default="", help="why it moves, kept in the model's index")
    s.add_argument("--result", type=Path, help="write the alias entry here as JSON")
    s.set_defaults(handler=cmd_alias_set)

    g = asub.add_parser("get", help="the version an alias names")
    _alias_arguments(g)
    g.set_defaults(handler=cmd_alias_get)


def _alias_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-root",
        required=True,
        help="the model's registry directory: <registry>/models/<name> (path, pvc://, s3://)",
    )
    p.add_argument("--alias", required=True, help="e.g. champion or candidate")
    p.add_argument(
        "--artifact-root", help="accepted for the operator's Jobs; --model-root says where"
    )


def cmd_alias_set(args: argparse.Namespace) -> int:
    from flywheel.storage import uris
    from flywheel.training import registry

    root = uris.resolve(args.model_root)
    try:
        moved = registry.set_alias(root, args.alias, args.version, args.reason, datetime.now(UTC))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = {"model": root.path.rsplit("/", 1)[-1], "alias": args.alias, **moved}
    text = json.dumps(result, separators=(",", ":"), sort_keys=True)
    if args.result is None:
        print(text)
    else:
        with open(args.result, "w") as f:  # the termination log: written in place
            f.write(text + "\n")
    print(f"{result['model']}@{args.alias} -> {args.version}", file=sys.stderr)
    return 0


def cmd_alias_get(args: argparse.Namespace) -> int:
    from flywheel.storage import uris
    from flywheel.training import registry

    version = registry.alias(uris.resolve(args.model_root), args.alias)
    if version is None:
        print(f"error: no version has the alias {args.alias!r} under {args.model_root}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(version)
    return 0
