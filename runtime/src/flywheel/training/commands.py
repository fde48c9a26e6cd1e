"""`flywheel train ...`: what a RayJob runs, and looking at a trained version.

flywheel train run      -f manifests/ --name churn-logistic --result out.json
flywheel train submit   --result /dev/termination-log    # the RayJob's submitter
flywheel train evaluate -f manifests/ --name churn-logistic [--version V]
"""

from __future__ import annotations

import argparse
import json
import sys
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
