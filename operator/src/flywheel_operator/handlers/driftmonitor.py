"""DriftMonitor: a CronJob running the monitor; drift may trigger a retrain."""

from __future__ import annotations

from typing import Any

from flywheel.api import DriftMonitor
from flywheel.api.driftmonitor import DriftMonitorStatus
from flywheel_operator import labels
from flywheel_operator.builders import driftmonitor as build
from flywheel_operator.builders import pods
from flywheel_operator.handlers import upstream
from flywheel_operator.handlers.reconciliation import Context, Pass
from flywheel_operator.kube import runs
from flywheel_operator.status import dependencies, observe, reporting, results
from flywheel_operator.status import driftmonitor as decide

CHILD_KINDS = ("CronJob",)


def reconcile(ctx: Context, body: dict[str, Any]) -> None:
    p = Pass.begin(ctx, body, DriftMonitorStatus)
    resource = p.parse(DriftMonitor)
    if resource is None:
        return
    target = resource.spec.reference.target()
    refs = [("ModelDeployment", resource.spec.deployment_ref.name)]
    refs += [target] if target is not None else []
    if resource.spec.skew is not None:  # its point-in-time join recomputes logged requests
        refs.append(("FeatureView", resource.spec.skew.feature_view_ref.name))
    inputs, waiting = upstream.look_up(ctx.kube, p.namespace, refs, dependencies.has_phase)
    # A TrainingJob reference is the training set of its FeatureViews: the monitor reads them.
    second = [("FeatureView", name) for name in upstream.feature_views(inputs)]
    if target is None:
        # servingVersion: the deployment's TrainingJobs say where their registry is.
        second += [("TrainingJob", name) for name in upstream.deployment_training_jobs(inputs)]
    more, waiting_more = upstream.look_up(ctx.kube, p.namespace, second, dependencies.has_phase)
    if p.wait_for(waiting + waiting_more):
        return
    inputs |= more
    try:
        children = build.build(
            body, resource, ctx.settings, results.as_inputs(inputs), pods.input_manifests(inputs)
        )
    except pods.EnvTooLarge as exc:
        return p.block("InputsTooLarge", str(exc))
    if p.apply(children, CHILD_KINDS) is None:
        return
    selector = {
        labels.owner_label("DriftMonitor"): resource.name,
        "app.kubernetes.io/component": build.MONITOR,
    }
    jobs, job_pods = runs.jobs_with_pods(ctx.kube, p.namespace, selector)
    new = decide.status(p.old, p.generation, observe.last_cronjob_run(jobs, job_pods), p.now)
    _tell(ctx, p, decide.verdict_event(p.old, new))
    retrain = decide.retrain(resource, new, p.now)
    held = decide.cooldown_ends(resource, new)
    if retrain is None and held is not None and held > p.now:
        ctx.wake_at(body, held)  # drift seen during the cooldown: retrain once it ends
    if retrain is not None:
        cause = decide.drift_event(resource, new)
        job = build.retrain_job(body, resource, retrain.number, cause)
        ctx.kube.create(job)  # create, not apply: a TrainingJob is a record once made
        new = decide.record_retrain(new, retrain, job["metadata"]["name"], p.now)
    new = _follow_retrain(ctx, p, resource, new)
    p.finish(new)


def _follow_retrain(
    ctx: Context, p: Pass[DriftMonitorStatus], resource: DriftMonitor, status: DriftMonitorStatus
) -> DriftMonitorStatus:
    """The loop's last steps, as RetrainPromoted tells them: the retrain trains, gets the
    alias candidate, the deployment canaries it (by alias) and promotes or rolls it back.
    Only read: the deployment's spec is the user's."""
    if not status.last_retrain_job:
        return status
    job = ctx.kube.get("TrainingJob", p.namespace, status.last_retrain_job)
    deployment = ctx.kube.get("ModelDeployment", p.namespace, resource.spec.deployment_ref.name)
    new = decide.follow_retrain(status, decide.retrain_outcome(status, job, deployment), p.now)
    _tell(ctx, p, decide.retrain_event(p.old, new))
    return new


def _tell(ctx: Context, p: Pass[DriftMonitorStatus], event: tuple[str, str, str] | None) -> None:
    if event is not None:
        # Before the status, named after it: a crash between them tells it once.
        stamp = p.now.isoformat().replace("+00:00", "Z")
        name = reporting.event_name(p.body, event[1], p.old)
        ctx.kube.event(p.body, *event, stamp, name)
