"""DriftMonitor: a CronJob running the monitor; drift may trigger a retrain."""

from __future__ import annotations

from typing import Any

from flywheel.api import DriftMonitor
from flywheel.api.common import duration_seconds
from flywheel.api.driftmonitor import ActionType, DriftMonitorStatus
from flywheel_operator import labels
from flywheel_operator.builders import driftmonitor as build
from flywheel_operator.handlers import common
from flywheel_operator.kube.client import PermanentError
from flywheel_operator.status import common as status_common
from flywheel_operator.status import kinds, observe

CHILD_KINDS = ("CronJob",)


def reconcile(ctx: common.Context, body: dict[str, Any]) -> None:
    old = common.old_status(body, DriftMonitorStatus)
    gen, now, ns = common.generation(body), ctx.clock(), body["metadata"]["namespace"]
    resource, problem = common.parse(body)
    if not isinstance(resource, DriftMonitor):
        new = status_common.blocked(old, gen, "InvalidSpec", problem, now)
        return common.write_status(ctx, body, old, new)
    refs = [
        ("ModelDeployment", resource.spec.deployment_ref.name),
        resource.spec.reference.target(),
    ]
    inputs, waiting = common.upstream(ctx, ns, refs, lambda s: bool(s.get("phase")))
    if waiting:
        return common.write_status(
            ctx, body, old, status_common.waiting(old, gen, "; ".join(waiting), now)
        )
    children = build.build(body, resource, ctx.settings, kinds.as_inputs(inputs))
    try:
        common.apply_children(ctx, body, children, CHILD_KINDS)
    except PermanentError as exc:
        return common.report_apply_failure(ctx, body, old, exc)
    selector = {
        labels.owner_label("DriftMonitor"): resource.name,
        "app.kubernetes.io/component": build.MONITOR,
    }
    jobs = ctx.kube.select("Job", ns, selector)
    pods = {
        j["metadata"]["name"]: ctx.kube.select(
            "Pod", ns, {"batch.kubernetes.io/job-name": j["metadata"]["name"]}
        )
        for j in jobs
    }
    new = kinds.driftmonitor(old, gen, observe.last_cronjob_run(jobs, pods), now)
    retrain = resource.spec.action.retrain
    if (
        resource.spec.action.type == ActionType.RETRAIN
        and retrain is not None
        and kinds.retrain_due(new, duration_seconds(retrain.cooldown), now)
    ):
        number = new.retrains_triggered + 1
        job = build.retrain_job(body, resource, number)
        ctx.kube.create(job)  # create, not apply: a TrainingJob is a record once made
        new.retrains_triggered, new.last_retrain = number, now
        new.last_retrain_job = job["metadata"]["name"]
    common.write_status(ctx, body, old, new)
