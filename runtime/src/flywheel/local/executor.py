"""Runs a plan step by step on this machine, with the same runners a cluster's Pods run.

Kinds without an entry in `flywheel.entrypoints.ENTRYPOINTS` are shown as planned and
not executed. A kind's session (one local Ray for every TrainingJob) is entered before
its first step and left when the run ends. After the plan, drift closes the loop
(`flywheel.local.loop`): a retrain, then its canary, as extra steps of the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from flywheel import entrypoints
from flywheel.api.common import Resource, StatusBase, resource_key
from flywheel.api.driftmonitor import DriftMonitor
from flywheel.api.modeldeployment import ModelDeployment, ModelDeploymentStatus
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel.entrypoints import RunContext
from flywheel.local import batch, loop
from flywheel.plan import Step
from flywheel.training import registry


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
        _started(context, step)
        try:
            status = runner(step.resource, step_context)
        except Exception as exc:  # a step's failure is reported, the rest still runs
            failed.add(step.key)
            outcomes.append(_finished(context, Outcome(step, None, f"{type(exc).__name__}: {exc}")))
            continue
        if isinstance(step.resource, ModelDeployment):
            assert isinstance(status, ModelDeploymentStatus)
            status = batch.after_deployment(step.resource, status, step_context)
        statuses[step.key] = status
        if isinstance(step.resource, ModelDeployment):
            loop.promote(step.resource, status, step_context)  # champion moves
        if status.phase == "Failed":
            failed.add(step.key)
        outcomes.append(_finished(context, Outcome(step, status)))
    for outcome in list(outcomes):
        monitor = outcome.step.resource
        if isinstance(monitor, DriftMonitor) and loop.wants_retrain(monitor, outcome.status):
            run = _Run(context, resources, statuses, sessions, opened)
            outcomes += _close_loop(monitor, outcome.step, run)
    return outcomes


@dataclasses.dataclass
class _Run:
    """What the loop's extra steps share with the plan's: inputs, statuses, sessions."""

    context: RunContext
    resources: dict[str, Resource]
    statuses: dict[str, StatusBase]
    sessions: contextlib.ExitStack
    opened: dict[str, str | None]

    def step(self, resource: Resource, source: str, depends_on: tuple[str, ...]) -> Outcome:
        step = Step(resource, source, depends_on)
        self.resources[step.key] = resource
        problem = _open_session(resource.kind_name, self.sessions, self.opened)
        if problem:
            return Outcome(step, None, problem)
        runner = entrypoints.runner_for(resource.kind_name)
        assert runner is not None
        step_context = self.context.replace(
            base_dir=Path(source.rsplit("#", 1)[0]).resolve().parent,
            resources=dict(self.resources),
            statuses=dict(self.statuses),
        )
        _started(self.context, step)
        try:
            status = runner(resource, step_context)
        except Exception as exc:
            return _finished(self.context, Outcome(step, None, f"{type(exc).__name__}: {exc}"))
        if isinstance(resource, ModelDeployment) and isinstance(status, ModelDeploymentStatus):
            status = batch.after_deployment(resource, status, step_context)
        self.statuses[step.key] = status
        return _finished(self.context, Outcome(step, status))


def _close_loop(monitor: DriftMonitor, origin: Step, run: _Run) -> list[Outcome]:
    """Drift found: retrain from the monitor's template; a deployment that names the
    alias `candidate` then runs again as written, and canaries what the retrain got."""
    name = monitor.spec.deployment_ref.name
    deployment = run.resources.get(resource_key("ModelDeployment", name))
    serving = run.statuses.get(resource_key("ModelDeployment", name))
    if not isinstance(deployment, ModelDeployment) or not isinstance(
        serving, ModelDeploymentStatus
    ):
        return []
    if not serving.stable_version:
        return []
    dm_status = run.statuses.get(origin.key)
    job = loop.retrain_job(monitor, 1, loop.drift_event(monitor, dm_status))
    trained = run.step(job, origin.source, (origin.key,))
    outcomes = [trained]
    status = trained.status
    if (
        isinstance(status, TrainingJobStatus)
        and status.phase != "Failed"
        and registry.CANDIDATE in status.aliases
        and loop.follows_candidate(deployment, job)
    ):
        canary = run.step(deployment, origin.source, (trained.step.key,))
        outcomes.append(canary)
        loop.promote(deployment, canary.status, run.context)
        serving = canary.status if canary.status is not None else serving
    loop.report(dm_status, job, status, loop.retrain_outcome(job, status, deployment, serving))
    return outcomes


def _started(context: RunContext, step: Step) -> None:
    """Tell whoever watches the run (`context.progress`) that a step starts..."""
    if context.progress is not None:
        context.progress(step.key, {"step": "started", "dependsOn": list(step.depends_on)})


def _finished(context: RunContext, outcome: Outcome) -> Outcome:
    """...and how it ended."""
    if context.progress is not None:
        fields = {"step": "finished", "status": outcome.status, "error": outcome.error}
        context.progress(outcome.step.key, fields)
    return outcome


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
