"""TrainingJob: waits for its features and labels, then a KubeRay RayJob. Terminal."""

from __future__ import annotations

from typing import Any

from flywheel.api import TrainingJob
from flywheel.api.trainingjob import TrainingJobStatus
from flywheel_operator.builders import trainingjob as build
from flywheel_operator.handlers import common
from flywheel_operator.kube.client import PermanentError
from flywheel_operator.status import common as status_common
from flywheel_operator.status import kinds, observe

RAYJOB_CRD = "rayjobs.ray.io"
KUBERAY_HINT = (
    "KubeRay is not installed: the RayJob CRD (rayjobs.ray.io) is missing. Install it with "
    "`helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
    "helm install kuberay-operator kuberay/kuberay-operator`"
)


def reconcile(ctx: common.Context, body: dict[str, Any]) -> None:
    old = common.old_status(body, TrainingJobStatus)
    gen, now, ns = common.generation(body), ctx.clock(), body["metadata"]["namespace"]
    if kinds.terminal(old):
        return  # a finished training is a record; it never runs again
    resource, problem = common.parse(body)
    if not isinstance(resource, TrainingJob):
        new = status_common.blocked(old, gen, "InvalidSpec", problem, now, kinds.SUCCEEDED)
        return common.write_status(ctx, body, old, new)
    if not ctx.kube.crd_installed(RAYJOB_CRD):
        new = status_common.blocked(
            old, gen, "KubeRayNotInstalled", KUBERAY_HINT, now, kinds.SUCCEEDED
        )
        return common.write_status(ctx, body, old, new)
    refs = [r for r in resource.references() if r[0] != "ModelDeployment"]
    inputs, waiting = common.upstream(ctx, ns, refs, common.condition_true(status_common.READY))
    if waiting:
        return common.write_status(
            ctx, body, old, status_common.waiting(old, gen, "; ".join(waiting), now)
        )
    baseline = resource.spec.evaluation.not_worse_than_deployed
    if baseline is not None:
        deployed = ctx.kube.get("ModelDeployment", ns, baseline.deployment_ref.name)
        if deployed is not None:  # no deployment yet: nothing to be worse than
            inputs[f"ModelDeployment/{baseline.deployment_ref.name}"] = deployed.get("status") or {}
    rayjob = build.build(body, resource, ctx.settings, kinds.as_inputs(inputs))
    try:
        common.apply_children(ctx, body, [rayjob], ("RayJob",))
    except PermanentError as exc:
        return common.report_apply_failure(ctx, body, old, exc, kinds.SUCCEEDED)
    name = rayjob["metadata"]["name"]
    observed = ctx.kube.get("RayJob", ns, name)
    submitter = ctx.kube.select("Pod", ns, {"batch.kubernetes.io/job-name": name})
    new = kinds.trainingjob(old, gen, observe.rayjob_run(observed, submitter), now)
    common.write_status(ctx, body, old, new)
