"""FeatureView: waits for its Dataset, then a materialization Job (and CronJob)."""

from __future__ import annotations

from typing import Any

from flywheel.api import FeatureView
from flywheel.api.featureview import FeatureViewStatus
from flywheel_operator.builders import featureview as build
from flywheel_operator.handlers import common
from flywheel_operator.status import common as status_common
from flywheel_operator.status import kinds

CHILD_KINDS = ("Job", "CronJob")


def reconcile(ctx: common.Context, body: dict[str, Any]) -> None:
    p = common.Pass.begin(ctx, body, FeatureViewStatus)
    resource = p.parse(FeatureView)
    if resource is None:
        return
    ready = common.condition_true(status_common.READY)
    inputs, waiting = common.upstream(ctx, p.namespace, resource.references(), ready)
    if p.wait_for(waiting):
        return
    children = build.build(body, resource, ctx.settings, kinds.as_inputs(inputs))
    applied = p.apply(children, CHILD_KINDS)
    if applied is None:
        return
    p.finish(kinds.featureview(p.old, p.generation, p.job_run(applied[0]), p.now))
