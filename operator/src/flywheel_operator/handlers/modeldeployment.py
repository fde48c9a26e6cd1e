"""ModelDeployment: resolve versions, step the rollout, serve them behind the router."""

from __future__ import annotations

from typing import Any

from flywheel.api import ModelDeployment
from flywheel.api.modeldeployment import Backend, ModelDeploymentStatus, ModelRef
from flywheel_operator import labels
from flywheel_operator.builders import modeldeployment as build
from flywheel_operator.handlers import common
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
    p = common.Pass.begin(ctx, body, ModelDeploymentStatus)
    resource = p.parse(ModelDeployment)
    if resource is None:
        return
    spec = resource.spec
    if spec.backend == Backend.RAYSERVE and not ctx.kube.crd_installed(RAYSERVICE_CRD):
        return p.block("KubeRayNotInstalled", KUBERAY_HINT)
    succeeded = common.condition_true(kinds.SUCCEEDED)
    jobs, waiting = common.upstream(ctx, p.namespace, resource.references(), succeeded)
    stable = resolve(spec.stable, jobs, ctx.settings.artifact_root)
    candidate = (
        resolve(spec.candidate, jobs, ctx.settings.artifact_root) if spec.candidate else None
    )
    if stable is None or (spec.candidate is not None and candidate is None):
        waiting = waiting or ["waiting for trained model versions"]
    if p.wait_for(waiting):
        return
    assert stable is not None
    cand_version = candidate.version if candidate else None
    decision = rollout.step(spec.rollout, kinds.rollout_state(p.old, cand_version), metrics, p.now)
    split = rollout.traffic(spec.rollout, decision.state, stable.version, cand_version)
    wanted = rollout.served(spec.rollout, decision.state, stable.version, cand_version)
    served = [v for v in (stable, candidate) if v is not None and v.version in wanted]
    children = build.build(body, resource, ctx.settings, served, split)
    applied = p.apply(children, CHILD_KINDS[Backend(spec.backend)])
    if applied is None:
        return
    new = kinds.modeldeployment(
        p.old,
        p.generation,
        spec.rollout,
        stable.version,
        cand_version,
        decision,
        split,
        _serving(resource, applied),
        p.now,
        _url(resource, p.namespace),
    )
    p.finish(new)


def _url(resource: ModelDeployment, namespace: str) -> str:
    """Where clients send requests: the router Service (triton) or the Serve Service."""
    if resource.spec.backend == Backend.TRITON:
        return f"http://{resource.name}.{namespace}.svc"
    # KubeRay names the Serve Service <RayService name>-serve-svc, port 8000.
    return f"http://{labels.child_name(resource.name, 'serve')}-serve-svc.{namespace}.svc:8000"


def _serving(resource: ModelDeployment, applied: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether the applied children (with their current status) serve."""
    if resource.spec.backend == Backend.RAYSERVE:
        return observe.rayservice_ready(applied[0])
    problems = []
    for child in applied:
        if child["kind"] == "Deployment":
            ready, why = observe.deployment_ready(child)
            if not ready:
                problems.append(f"{child['metadata']['name']}: {why}")
    return not problems, "; ".join(problems) or "all versions and the router are available"
