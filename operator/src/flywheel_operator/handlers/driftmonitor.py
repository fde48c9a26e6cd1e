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
from flywheel_operator.status import dependencies, observe, results
from flywheel_operator.status import driftmonitor as decide

CHILD_KINDS = ("CronJob",)


def reconcile(ctx: Context, body: dict[str, Any]) -> None:
    p = Pass.begin(ctx, body, DriftMonitorStatus)
    resource = p.parse(DriftMonitor)
    if resource is None:
        return
    refs = [
        ("ModelDeployment", resource.spec.deployment_ref.name),
        resource.spec.reference.target(),
    ]
    inputs, waiting = upstream.look_up(ctx.kube, p.namespace, refs, dependencies.has_phase)
    # A TrainingJob reference is the training set of its FeatureViews: the monitor reads them.
    views = [("FeatureView", name) for name in upstream.feature_views(inputs)]
    more, waiting_more = upstream.look_up(ctx.kube, p.namespace, views, dependencies.has_phase)
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
    retrain = decide.retrain(resource, new, p.now)
    held = decide.cooldown_ends(resource, new)
    if retrain is None and held is not None and held > p.now:
        ctx.wake_at(body, held)  # drift seen during the cooldown: retrain once it ends
    if retrain is not None:
        job = build.retrain_job(body, resource, retrain.number)
        ctx.kube.create(job)  # create, not apply: a TrainingJob is a record once made
        new = decide.record_retrain(new, retrain, job["metadata"]["name"], p.now)
    _roll_out_retrain(ctx, p, resource, new)
    p.finish(new)


def _roll_out_retrain(
    ctx: Context, p: Pass[DriftMonitorStatus], resource: DriftMonitor, status: DriftMonitorStatus
) -> None:
    """The loop's last step: a retrain that registered a version becomes the deployment's
    canary. Idempotent: once the deployment names the retrain, nothing more is written."""
    if not status.last_retrain_job:
        return
    job = ctx.kube.get("TrainingJob", p.namespace, status.last_retrain_job)
    name = resource.spec.deployment_ref.name
    deployment = ctx.kube.get("ModelDeployment", p.namespace, name)
    patch = decide.rollout_of_retrain(status, job, deployment)
    if patch is None:
        return
    # The Event first, named after the retrain: a crash before the patch repeats it as a
    # no-op; after the patch there is nothing left to do, and nothing to tell twice.
    now = p.now.isoformat().replace("+00:00", "Z")
    message = f"tj/{status.last_retrain_job} goes out as the canary of md/{name}"
    event = f"{resource.name}.{status.last_retrain_job}"[:253]
    ctx.kube.event(p.body, "Normal", "RetrainRolledOut", message, now, event)
    ctx.kube.merge_patch("ModelDeployment", p.namespace, name, patch)
