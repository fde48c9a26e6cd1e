"""Runs a plan step by step on this machine, with the same entrypoints a cluster runs.

Each kind registers a runner: `runner(resource, context) -> status` (the status model
of that kind). Kinds without a runner are shown as planned and not executed.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel.api.common import Resource, StatusBase
from flywheel.plan import Step


@dataclasses.dataclass
class Context:
    """What a runner may use: where artifacts go, and the status of steps already run."""

    artifact_root: Path
    # Relative paths in a spec are resolved against the directory of its manifest.
    base_dir: Path = dataclasses.field(default_factory=Path.cwd)
    namespace: str = "default"
    statuses: dict[str, StatusBase] = dataclasses.field(default_factory=dict)
    resources: dict[str, Resource] = dataclasses.field(default_factory=dict)

    def status_of(self, kind: str, name: str) -> StatusBase | None:
        return self.statuses.get(f"{kind}/{name}")


Runner = Callable[[Any, Context], StatusBase]

# kind -> "module:function"; imported only when a step of that kind runs, so that heavy
# dependencies stay out of commands that do not need them.
RUNNERS: dict[str, str] = {
    "Dataset": "flywheel.data.runner:run_dataset",
    "FeatureView": "flywheel.features.runner:run_featureview",
}


def runner_for(kind: str) -> Runner | None:
    target = RUNNERS.get(kind)
    if target is None:
        return None
    module, _, func = target.partition(":")
    fn: Runner = getattr(importlib.import_module(module), func)
    return fn


@dataclasses.dataclass
class Outcome:
    step: Step
    status: StatusBase | None
    error: str | None = None


def execute(steps: list[Step], context: Context) -> list[Outcome]:
    """Run steps in order; a failed step stops the steps that depend on it."""
    failed: set[str] = set()
    outcomes: list[Outcome] = []
    for step in steps:
        context.resources[step.key] = step.resource
        context.base_dir = Path(step.source.rsplit("#", 1)[0]).resolve().parent
        blocked = [d for d in step.depends_on if d in failed]
        if blocked:
            failed.add(step.key)
            outcomes.append(Outcome(step, None, f"not run: {', '.join(blocked)} failed"))
            continue
        runner = runner_for(step.resource.kind_name)
        if runner is None:
            outcomes.append(Outcome(step, None))
            continue
        try:
            status = runner(step.resource, context)
        except Exception as exc:  # a step's failure is reported, the rest still runs
            failed.add(step.key)
            outcomes.append(Outcome(step, None, f"{type(exc).__name__}: {exc}"))
            continue
        context.statuses[step.key] = status
        if status.phase == "Failed":
            failed.add(step.key)
        outcomes.append(Outcome(step, status))
    return outcomes
