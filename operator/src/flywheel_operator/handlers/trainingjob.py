"""TrainingJob: waits for its features and labels, then a KubeRay RayJob. Terminal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flywheel.api import TrainingJob
from flywheel.api.common import resource_key
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.builders import pods
from flywheel_operator.builders import trainingjob as build
from flywheel_operator.handlers import upstream
from flywheel_operator.handlers.reconciliation import KUBERAY_RECHECK, Context, Pass
from flywheel_operator.kube import runs
from flywheel_operator.status import dependencies, observe, results
from flywheel_operator.status import trainingjob as decide
from flywheel_operator.status.conditions import READY
from flywheel_operator.status.observe import RunState

RAYJOB_CRD = "rayjobs.ray.io"
KUBERAY_HINT = (
    "KubeRay is not installed: the RayJob CRD (rayjobs.ray.io) is missing. Install it with "
    "`helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
    "helm install kuberay-operator kuberay/kuberay-operator`"
)


def reconcile(ctx: Context, body: dict[str, Any]) -> None:
    p = Pass.begin(ctx, body, TrainingJobStatus)
    if decide.terminal(p.old):
        return  # a finished training is a record; it never runs again
    resource = p.parse(TrainingJob, decide.SUCCEEDED)
    if resource is None:
        return
    if not ctx.kube.crd_installed(RAYJOB_CRD):
        ctx.wake_at(body, p.now + KUBERAY_RECHECK)  # no event tells of KubeRay installed
        return p.block("KubeRayNotInstalled", KUBERAY_HINT, decide.SUCCEEDED)
    refs = [r for r in resource.references() if r[0] != "ModelDeployment"]
    ready = dependencies.condition_true(READY)
    inputs, waiting = upstream.look_up(ctx.kube, p.namespace, refs, ready)
    if p.wait_for(waiting):
        return
    # No deployment yet: nothing to be worse than, and a warm start takes the champion.
    for name in deployments_read(resource):
        deployed = ctx.kube.get("ModelDeployment", p.namespace, name)
        if deployed is not None:
            inputs[resource_key("ModelDeployment", name)] = deployed
    try:
        rayjob = build.build(
            body, resource, ctx.settings, results.as_inputs(inputs), pods.input_manifests(inputs)
        )
    except pods.EnvTooLarge as exc:
        return p.block("InputsTooLarge", str(exc), decide.SUCCEEDED)
    applied = p.apply([rayjob], ("RayJob",), decide.SUCCEEDED)
    if applied is None:
        return
    observed = applied[0]
    submitter = runs.job_pods(ctx.kube, p.namespace, observed["metadata"]["name"])
    run = observe.rayjob_run(observed, submitter)
    progress = None
    where = observe.rayjob_dashboard(observed)
    if run.state == RunState.RUNNING and where is not None:
        progress = decide.progress(ctx.ray_job_logs(*where))
        # Progress is read from the Ray dashboard, which sends no event.
        ctx.wake_at(body, p.now + timedelta(seconds=ctx.settings.progress_seconds))
    p.finish(decide.status(p.old, p.generation, run, p.now, progress))


def deployments_read(resource: TrainingJob) -> list[str]:
    """The ModelDeployments whose stable version the run reads (a baseline gate, a warm
    start), passed as inputs when they exist and never waited for."""
    return [name for kind, name in resource.references() if kind == "ModelDeployment"]
