"""FeatureView: waits for its Dataset, then a materialization Job (and CronJob)."""

from __future__ import annotations

from typing import Any

from flywheel.api import FeatureView
from flywheel.api.featureview import FeatureViewStatus
from flywheel_operator.builders import featureview as build
from flywheel_operator.builders import pods
from flywheel_operator.handlers import upstream
from flywheel_operator.handlers.reconciliation import Context, Pass
from flywheel_operator.status import dependencies, results
from flywheel_operator.status import featureview as decide
from flywheel_operator.status.conditions import READY

CHILD_KINDS = ("Job", "CronJob")


def reconcile(ctx: Context, body: dict[str, Any]) -> None:
    p = Pass.begin(ctx, body, FeatureViewStatus)
    resource = p.parse(FeatureView)
    if resource is None:
        return
    ready = dependencies.condition_true(READY)
    inputs, waiting = upstream.look_up(ctx.kube, p.namespace, resource.references(), ready)
    if p.wait_for(waiting):
        return
    try:
        children = build.build(
            body, resource, ctx.settings, results.as_inputs(inputs), pods.input_manifests(inputs)
        )
    except pods.EnvTooLarge as exc:
        return p.block("InputsTooLarge", str(exc))
    applied = p.apply(children, CHILD_KINDS)
    if applied is None:
        return
    p.finish(decide.status(p.old, p.generation, p.job_run(applied[0]), p.now))
