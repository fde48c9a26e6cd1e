"""DriftMonitor: a CronJob running the monitor; drift may trigger a retrain."""

from __future__ import annotations

from typing import Any

from flywheel.api import DriftMonitor
from flywheel.api.common import duration_seconds
from flywheel.api.driftmonitor import ActionType, DriftMonitorStatus
from flywheel_operator import labels
from flywheel_operator.builders import driftmonitor as build
from flywheel_operator.handlers import common
from flywheel_operator.status import kinds, observe

CHILD_KINDS = ("CronJob",)


def reconcile(ctx: common.Context, body: dict[str, Any]) -> None:
    p = common.Pass.begin(ctx, body, DriftMonitorStatus)
    resource = p.parse(DriftMonitor)
    if resource is None:
        return
    refs = [
        ("ModelDeployment", resource.spec.deployment_ref.name),
        resource.spec.reference.target(),
    ]
    inputs, waiting = common.upstream(ctx, p.namespace, refs, lambda s: bool(s.get("phase")))
    if p.wait_for(waiting):
        return
    children = build.build(body, resource, ctx.settings, kinds.as_inputs(inputs))
    if p.apply(children, CHILD_KINDS) is None:
        return
    selector = {
        labels.owner_label("DriftMonitor"): resource.name,
        "app.kubernetes.io/component": build.MONITOR,
    }
    jobs = ctx.kube.select("Job", p.namespace, selector)
    pods = {
        name: ctx.kube.select("Pod", p.namespace, {common.JOB_NAME_LABEL: name})
        for name in (j["metadata"]["name"] for j in jobs)
    }
    new = kinds.driftmonitor(p.old, p.generation, observe.last_cronjob_run(jobs, pods), p.now)
    retrain = resource.spec.action.retrain
    if (
        resource.spec.action.type == ActionType.RETRAIN
        and retrain is not None
        and kinds.retrain_due(new, duration_seconds(retrain.cooldown), p.now)
    ):
        number = new.retrains_triggered + 1
        job = build.retrain_job(body, resource, number)
        ctx.kube.create(job)  # create, not apply: a TrainingJob is a record once made
        new.retrains_triggered, new.last_retrain = number, p.now
        new.last_retrain_job = job["metadata"]["name"]
    p.finish(new)
