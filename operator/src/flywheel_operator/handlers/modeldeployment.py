"""ModelDeployment: resolve versions, step the rollout, serve them behind the router."""

from __future__ import annotations

from typing import Any

from flywheel.api import ModelDeployment
from flywheel.api.modeldeployment import Backend, ModelDeploymentStatus, ModelRef
from flywheel_operator import labels
from flywheel_operator.builders import modeldeployment as build
from flywheel_operator.handlers import common
from flywheel_operator.kube.client import PermanentError
from flywheel_operator.status import common as status_common
from flywheel_operator.status import kinds, observe, rollout

RAYSERVICE_CRD = "rayservices.ray.io"
KUBERAY_HINT = (
    "KubeRay is not installed: the RayService CRD (rayservices.ray.io) is missing. Install it "
    "with `helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
    "helm install kuberay-operator kuberay/kuberay-operator`, or use backend triton"
)
CHILD_KINDS = {
    Backend.RAYSERVE: ("RayService",),
    Backend.TRITON: ("Deployment", "Service", "ConfigMap"),
}


def resolve(ref: ModelRef, jobs: dict[str, Any], artifact_root: str) -> build.ServedVersion | None:
    """A model reference -> the version it names, or None while its training runs."""
    if ref.training_job_ref is not None:
        status = jobs.get(f"TrainingJob/{ref.training_job_ref.name}") or {}
        if not status.get("modelVersion") or not status.get("artifactUri"):
            return None
        model_name = status.get("artifactUri", "").rstrip("/").split("/")[-2]
        return build.ServedVersion(model_name, status["modelVersion"], status["artifactUri"])
    assert ref.model_name is not None and ref.version is not None
    uri = f"{artifact_root.rstrip('/')}/models/{ref.model_name}/{ref.version}"
    return build.ServedVersion(ref.model_name, ref.version, uri)


def reconcile(
    ctx: common.Context, body: dict[str, Any], metrics: rollout.Metrics | None = None
) -> None:
    """`metrics`: the router's measurements of the current step, when there are any."""
    old = common.old_status(body, ModelDeploymentStatus)
    gen, now, ns = common.generation(body), ctx.clock(), body["metadata"]["namespace"]
    resource, problem = common.parse(body)
    if not isinstance(resource, ModelDeployment):
        new = status_common.blocked(old, gen, "InvalidSpec", problem, now)
        return common.write_status(ctx, body, old, new)
    spec = resource.spec
    if spec.backend == Backend.RAYSERVE and not ctx.kube.crd_installed(RAYSERVICE_CRD):
        new = status_common.blocked(old, gen, "KubeRayNotInstalled", KUBERAY_HINT, now)
        return common.write_status(ctx, body, old, new)
    jobs, waiting = common.upstream(
        ctx, ns, resource.references(), common.condition_true(kinds.SUCCEEDED)
    )
    stable = resolve(spec.stable, jobs, ctx.settings.artifact_root)
    candidate = (
        resolve(spec.candidate, jobs, ctx.settings.artifact_root) if spec.candidate else None
    )
    if waiting or stable is None or (spec.candidate is not None and candidate is None):
        message = "; ".join(waiting) or "waiting for trained model versions"
        return common.write_status(ctx, body, old, status_common.waiting(old, gen, message, now))
    cand_version = candidate.version if candidate else None
    decision = rollout.step(spec.rollout, kinds.rollout_state(old, cand_version), metrics, now)
    split = rollout.traffic(spec.rollout, decision.state, stable.version, cand_version)
    wanted = rollout.served(spec.rollout, decision.state, stable.version, cand_version)
    served = [v for v in (stable, candidate) if v is not None and v.version in wanted]
    children = build.build(body, resource, ctx.settings, served, split)
    try:
        common.apply_children(ctx, body, children, CHILD_KINDS[Backend(spec.backend)])
    except PermanentError as exc:
        return common.report_apply_failure(ctx, body, old, exc)
    serving = _serving(ctx, ns, resource, children)
    url = (
        f"http://{resource.name}.{ns}.svc"
        if spec.backend == Backend.TRITON
        else (f"http://{labels.child_name(resource.name, 'serve')}-serve-svc.{ns}.svc:8000")
    )
    new = kinds.modeldeployment(
        old, gen, spec.rollout, stable.version, cand_version, decision, split, serving, now, url
    )
    common.write_status(ctx, body, old, new)


def _serving(
    ctx: common.Context, ns: str, resource: ModelDeployment, children: list[dict[str, Any]]
) -> tuple[bool, str]:
    if resource.spec.backend == Backend.RAYSERVE:
        name = children[0]["metadata"]["name"]
        return observe.rayservice_ready(ctx.kube.get("RayService", ns, name))
    problems = []
    for child in children:
        if child["kind"] == "Deployment":
            ready, why = observe.deployment_ready(
                ctx.kube.get("Deployment", ns, child["metadata"]["name"])
            )
            if not ready:
                problems.append(f"{child['metadata']['name']}: {why}")
    return not problems, "; ".join(problems) or "all versions and the router are available"
