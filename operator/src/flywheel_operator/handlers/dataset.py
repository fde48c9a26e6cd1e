"""Dataset: an ingest Job; status from its result."""

from __future__ import annotations

from typing import Any

from flywheel.api import Dataset
from flywheel.api.dataset import DatasetStatus
from flywheel_operator.builders import dataset as build
from flywheel_operator.handlers import common
from flywheel_operator.kube.client import PermanentError
from flywheel_operator.status import common as status_common
from flywheel_operator.status import kinds, observe

CHILD_KINDS = ("Job", "CronJob")


def reconcile(ctx: common.Context, body: dict[str, Any]) -> None:
    old = common.old_status(body, DatasetStatus)
    gen, now, ns = common.generation(body), ctx.clock(), body["metadata"]["namespace"]
    resource, problem = common.parse(body)
    if not isinstance(resource, Dataset):
        new = status_common.blocked(old, gen, "InvalidSpec", problem, now)
        return common.write_status(ctx, body, old, new)
    children = build.build(body, resource, ctx.settings)
    try:
        common.apply_children(ctx, body, children, CHILD_KINDS)
    except PermanentError as exc:
        return common.report_apply_failure(ctx, body, old, exc)
    job_name = build.ingest_job_name(body)
    job = ctx.kube.get("Job", ns, job_name)
    pods = ctx.kube.select("Pod", ns, {"batch.kubernetes.io/job-name": job_name})
    new = kinds.dataset(old, gen, observe.job_run(job, pods), now)
    common.write_status(ctx, body, old, new)
