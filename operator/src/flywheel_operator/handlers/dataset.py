"""Dataset: an ingest Job; status from its result."""

from __future__ import annotations

from typing import Any

from flywheel.api import Dataset
from flywheel.api.dataset import DatasetStatus
from flywheel_operator.builders import dataset as build
from flywheel_operator.handlers.reconciliation import Context, Pass
from flywheel_operator.status import dataset as decide

CHILD_KINDS = ("Job", "CronJob")


def reconcile(ctx: Context, body: dict[str, Any]) -> None:
    p = Pass.begin(ctx, body, DatasetStatus)
    resource = p.parse(Dataset)
    applied = p.apply(build.build(body, resource, ctx.settings), CHILD_KINDS) if resource else None
    if applied is None:
        return
    p.finish(decide.status(p.old, p.generation, p.job_run(applied[0]), p.now))
