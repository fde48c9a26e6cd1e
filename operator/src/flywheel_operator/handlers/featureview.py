"""FeatureView: waits for its Dataset, then a materialization Job (and CronJob)."""

from __future__ import annotations

from typing import Any

from flywheel.api import FeatureView
from flywheel.api.featureview import FeatureViewStatus
from flywheel_operator.builders import featureview as build
from flywheel_operator.handlers import common
from flywheel_operator.kube.client import PermanentError
from flywheel_operator.status import common as status_common
from flywheel_operator.status import kinds, observe

CHILD_KINDS = ("Job", "CronJob")


def reconcile(ctx: common.Context, body: dict[str, Any]) -> None:
    old = common.old_status(body, FeatureViewStatus)
    gen, now, ns = common.generation(body), ctx.clock(), body["metadata"]["namespace"]
    resource, problem = common.parse(body)
    if not isinstance(resource, FeatureView):
        new = status_common.blocked(old, gen, "InvalidSpec", problem, now)
        return common.write_status(ctx, body, old, new)
    inputs, waiting = common.upstream(
        ctx, ns, resource.references(), common.condition_true(status_common.READY)
    )
    if waiting:
        return common.write_status(
            ctx, body, old, status_common.waiting(old, gen, "; ".join(waiting), now)
        )
    children = build.build(body, resource, ctx.settings, kinds.as_inputs(inputs))
    try:
        common.apply_children(ctx, body, children, CHILD_KINDS)
    except PermanentError as exc:
        return common.report_apply_failure(ctx, body, old, exc)
    job_name = children[0]["metadata"]["name"]
    job = ctx.kube.get("Job", ns, job_name)
    pods = ctx.kube.select("Pod", ns, {"batch.kubernetes.io/job-name": job_name})
    new = kinds.featureview(old, gen, observe.job_run(job, pods), now)
    common.write_status(ctx, body, old, new)
