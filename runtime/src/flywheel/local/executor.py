"""Runs a plan step by step on this machine, with the same runners a cluster's Pods run.

Kinds without an entry in `flywheel.entrypoints.ENTRYPOINTS` are shown as planned and
not executed. A kind's session (one local Ray for every TrainingJob) is entered before
its first step and left when the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from flywheel import entrypoints
from flywheel.api.common import StatusBase
from flywheel.entrypoints import RunContext
from flywheel.plan import Step


@dataclasses.dataclass
class Outcome:
    step: Step
    status: StatusBase | None
    error: str | None = None


def execute(steps: list[Step], context: RunContext) -> list[Outcome]:
    """Run steps in order; a failed step stops the steps that depend on it.

    Each step sees every object of the plan and the statuses of the steps run before it.
    """
    with contextlib.ExitStack() as sessions:
        return _execute(steps, context, sessions)


def _execute(
    steps: list[Step], context: RunContext, sessions: contextlib.ExitStack
) -> list[Outcome]:
    resources = {**context.resources, **{s.key: s.resource for s in steps}}
    statuses = dict(context.statuses)
    failed: set[str] = set()
    outcomes: list[Outcome] = []
    opened: dict[str, str | None] = {}  # session target -> why it could not start
    for step in steps:
        blocked = [d for d in step.depends_on if d in failed]
        if blocked:
            failed.add(step.key)
            outcomes.append(Outcome(step, None, f"not run: {', '.join(blocked)} failed"))
            continue
        runner = entrypoints.runner_for(step.resource.kind_name)
        if runner is None:
            outcomes.append(Outcome(step, None))
            continue
        problem = _open_session(step.resource.kind_name, sessions, opened)
        if problem:
            failed.add(step.key)
            outcomes.append(Outcome(step, None, problem))
            continue
        step_context = context.replace(
            base_dir=Path(step.source.rsplit("#", 1)[0]).resolve().parent,
            resources=dict(resources),
            statuses=dict(statuses),
        )
        try:
            status = runner(step.resource, step_context)
        except Exception as exc:  # a step's failure is reported, the rest still runs
            failed.add(step.key)
            outcomes.append(Outcome(step, None, f"{type(exc).__name__}: {exc}"))
            continue
        statuses[step.key] = status
        if status.phase == "Failed":
            failed.add(step.key)
        outcomes.append(Outcome(step, status))
    return outcomes


def _open_session(kind: str, sessions: contextlib.ExitStack, opened: dict[str, str | None]) -> str:
    """Enter the kind's session once per run; the reason when it cannot start."""
    target = entrypoints.ENTRYPOINTS[kind].session
    if target is None:
        return ""
    if target not in opened:
        try:
            sessions.enter_context(entrypoints.import_target(target)())
            opened[target] = None
        except Exception as exc:
            opened[target] = f"{type(exc).__name__}: {exc}"
    return opened[target] or ""
