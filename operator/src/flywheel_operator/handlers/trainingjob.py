"""TrainingJob: waits for its features and labels, then a KubeRay RayJob. Terminal."""

from __future__ import annotations

from typing import Any

from flywheel.api import TrainingJob
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.builders import trainingjob as build
from flywheel_operator.handlers import common
from flywheel_operator.status import common as status_common
from flywheel_operator.status import kinds, observe

RAYJOB_CRD = "rayjobs.ray.io"
KUBERAY_HINT = (
    "KubeRay is not installed: the RayJob CRD (rayjobs.ray.io) is missing. Install it with "
    "`helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
    "helm install kuberay-operator kuberay/kuberay-operator`"
)


def reconcile(ctx: common.Context, body: dict[str, Any]) -> None:
    p = common.Pass.begin(ctx, body, TrainingJobStatus)
    if kinds.terminal(p.old):
        return  # a finished training is a record; it never runs again
    resource = p.parse(TrainingJob, kinds.SUCCEEDED)
    if resource is None:
        return
    if not ctx.kube.crd_installed(RAYJOB_CRD):
        return p.block("KubeRayNotInstalled", KUBERAY_HINT, kinds.SUCCEEDED)
    refs = [r for r in resource.references() if r[0] != "ModelDeployment"]
    ready = common.condition_true(status_common.READY)
    inputs, waiting = common.upstream(ctx, p.namespace, refs, ready)
    if p.wait_for(waiting):
        return
    baseline = resource.spec.evaluation.not_worse_than_deployed
    if baseline is not None:
        deployed = ctx.kube.get("ModelDeployment", p.namespace, baseline.deployment_ref.name)
        if deployed is not None:  # no deployment yet: nothing to be worse than
            inputs[f"ModelDeployment/{baseline.deployment_ref.name}"] = deployed.get("status") or {}
    rayjob = build.build(body, resource, ctx.settings, kinds.as_inputs(inputs))
    applied = p.apply([rayjob], ("RayJob",), kinds.SUCCEEDED)
    if applied is None:
        return
    observed = applied[0]
    name = observed["metadata"]["name"]
    submitter = ctx.kube.select("Pod", p.namespace, {common.JOB_NAME_LABEL: name})
    p.finish(kinds.trainingjob(p.old, p.generation, observe.rayjob_run(observed, submitter), p.now))
