"""ModelDeployment: resolve versions, step the rollout, serve them behind the router."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flywheel.api import ModelDeployment
from flywheel.api.common import ConditionStatus, duration_seconds
from flywheel.api.modeldeployment import Backend, ModelDeploymentStatus
from flywheel.serving import rayserve, rollout
from flywheel.serving.versions import ServedVersion
from flywheel_operator import labels
from flywheel_operator.builders import modeldeployment as build
from flywheel_operator.builders import pods
from flywheel_operator.handlers import upstream
from flywheel_operator.handlers.reconciliation import KUBERAY_RECHECK, Context, Pass
from flywheel_operator.kube import router_metrics, runs
from flywheel_operator.status import aliases, dependencies, observe, reporting, results
from flywheel_operator.status import modeldeployment as decide
from flywheel_operator.status import trainingjob as training
from flywheel_operator.status.conditions import set_status_condition

RAYSERVICE_CRD = "rayservices.ray.io"
KUBERAY_HINT = (
    "KubeRay is not installed: the RayService CRD (rayservices.ray.io) is missing. Install it "
    "with `helm repo add kuberay https://ray-project.github.io/kuberay-helm/ && "
    "helm install kuberay-operator kuberay/kuberay-operator`, or use backend triton"
)
BATCH_CHILD_KINDS = ("CronJob",)
CHILD_KINDS = {
    Backend.RAYSERVE: ("RayService",),
    Backend.TRITON: (
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    ),
}


def reconcile(ctx: Context, body: dict[str, Any]) -> None:
    p = Pass.begin(ctx, body, ModelDeploymentStatus)
    resource = p.parse(ModelDeployment)
    if resource is None:
        return
    spec = resource.spec
    if spec.backend == Backend.RAYSERVE and not ctx.kube.crd_installed(RAYSERVICE_CRD):
        ctx.wake_at(body, p.now + KUBERAY_RECHECK)  # no event tells of KubeRay installed
        return p.block("KubeRayNotInstalled", KUBERAY_HINT)
    succeeded = dependencies.condition_true(training.SUCCEEDED)
    trained = [r for r in resource.references() if r[0] == "TrainingJob"]
    jobs, waiting = upstream.look_up(ctx.kube, p.namespace, trained, succeeded)
    view = None
    if spec.feature_view_ref is not None:  # the router looks entities up in its online store
        ref = [("FeatureView", spec.feature_view_ref.name)]
        views, waiting_view = upstream.look_up(ctx.kube, p.namespace, ref, dependencies.has_phase)
        waiting += waiting_view
        view = next(iter(views.values()), None)
    trainings, moves, movers = _alias_moves(ctx, p, resource)
    versions = decide.resolve_versions(spec, jobs, ctx.settings.artifact_root, moves)
    if versions is None and spec.stable.alias is not None:
        waiting = waiting or [decide.waiting_for_alias(spec)]
    elif versions is None:
        waiting = waiting or ["waiting for trained model versions"]
    if p.wait_for(waiting):
        return
    assert versions is not None
    annotations = body.get("metadata", {}).get("annotations") or {}
    action = decide.requested_action(annotations, p.old)
    stable, candidate = decide.undo_versions(p.old, *versions, action)
    state = decide.rollout_state(p.old, candidate.version if candidate else None)
    stamp = p.now.isoformat().replace("+00:00", "Z")
    url = build.url(resource, p.namespace)
    measured = _measure(ctx, p, resource, stable, candidate, state, url)
    deadline = timedelta(seconds=duration_seconds(spec.progress_deadline))
    plan = decide.plan_rollout(spec.rollout, state, stable, candidate, measured, p.now, deadline)
    if action is not None:
        plan, said, acted = decide.apply_action(plan, action, spec.rollout, stable, candidate)
        ctx.kube.event(body, "Normal" if acted else "Warning", "RolloutAction", said, stamp)
    if spec.backend == Backend.RAYSERVE and candidate is not None:
        plan = decide.hold_candidate(plan, stable.version, _candidate_running(ctx, p, candidate))
    finished = decide.finished_at(p.old, plan.decision.state.outcome, p.now)
    plan = decide.keep_warm(plan, stable, candidate, finished, *decide.windows(spec), p.now)
    warm = decide.warm_until(plan.decision.state.outcome, finished, *decide.windows(spec))
    if candidate is None:  # promoted by alias: the stable of before, from the status
        plan = decide.keep_previous(plan, p.old, decide.windows(spec)[1], p.now)
        if p.old.finished_at is not None and decide.previous_stable(p.old) is not None:
            warm = p.old.finished_at + decide.windows(spec)[1]
    if warm is not None and warm > p.now:
        ctx.wake_at(body, warm)  # the kept version is scaled down once its window ends
    children = build.build(body, resource, ctx.settings, plan.versions, plan.split, view)
    applied = p.apply(children, CHILD_KINDS[Backend(spec.backend)])
    if applied is None:
        return
    new = decide.status(
        p.old,
        p.generation,
        spec.rollout,
        stable.version,
        candidate.version if candidate else None,
        plan.decision,
        plan.split,
        decide.is_serving(spec.backend, applied),
        p.now,
        url,
        measured,
        action.value if action else None,
    )
    new = decide.remember_stable(new, stable)
    batched = _batch_prediction(ctx, p, resource, new, [*plan.versions, stable, candidate], moves)
    if batched is None:
        return
    new = batched
    found = decide.candidate_condition(spec, stable, candidate, trainings, moves)
    if found is not None:
        set_status_condition(new, decide.CANDIDATE_AVAILABLE, *found, p.now)
    moved = aliases.last_move_outcome(movers, body["metadata"].get("uid", ""))
    if moved is not None:  # a promotion's registry move: done, under way, or failed
        set_status_condition(new, decide.CHAMPION_MOVED, *moved, p.now)
    # Before the status, like the phase Event: a crash between them repeats the write,
    # which the Event's name makes a no-op; it never loses the Event.
    for event in decide.rollout_events(p.old, new):
        name = reporting.event_name(body, event.reason, p.old)
        ctx.kube.event(body, event.type, event.reason, event.message, stamp, name)
    move = decide.champion_move(
        spec, plan.decision, candidate, moves, resource.name, stable, new.last_action
    )
    if move is not None:
        _move_alias(ctx, p, move, {j["metadata"]["name"] for j in movers}, stamp)
    p.finish(new)


def _batch_prediction(
    ctx: Context,
    p: Pass[ModelDeploymentStatus],
    resource: ModelDeployment,
    new: ModelDeploymentStatus,
    served: list[ServedVersion | None],
    moves: list[aliases.Assignment],
) -> ModelDeploymentStatus | None:
    """spec.batchPrediction: its CronJob (none without it), and its last run in the
    status. None when the API refused the CronJob (the status says why)."""
    batch = resource.spec.batch_prediction
    if batch is None:
        # Only a deployment that had batch prediction (its condition says so) has a
        # CronJob to remove: the others skip the LIST a prune costs.
        if decide.had_batch(p.old) and p.apply([], BATCH_CHILD_KINDS) is None:
            return None
        return decide.without_batch(new)
    refs = [(kind, name) for _, kind, name in resource.batch_references()]
    reads = [r for r in refs if r[0] != "TrainingJob"]
    found, waiting = upstream.look_up(ctx.kube, p.namespace, reads, dependencies.has_phase)
    trained = [r for r in refs if r[0] == "TrainingJob"]
    succeeded = dependencies.condition_true(training.SUCCEEDED)
    jobs, waiting_more = upstream.look_up(ctx.kube, p.namespace, trained, succeeded)
    model = decide.batch_model(
        resource.spec, served, new.stable_version, jobs, ctx.settings.artifact_root, moves
    )
    if waiting or waiting_more or model is None:
        why = "; ".join(waiting + waiting_more) or "waiting for the version to score with"
        unknown = ConditionStatus.UNKNOWN
        set_status_condition(new, decide.BATCH_PREDICTED, unknown, "Waiting", why, p.now)
        return new
    try:
        cron = build.batch_cronjob(
            p.body, ctx.settings, model, results.as_inputs(found), pods.input_manifests(found)
        )
    except pods.EnvTooLarge as exc:
        set_status_condition(new, decide.BATCH_PREDICTED, False, "InputsTooLarge", str(exc), p.now)
        return new
    if p.apply([cron], BATCH_CHILD_KINDS) is None:
        return None
    selector = {
        labels.owner_label("ModelDeployment"): resource.name,
        "app.kubernetes.io/component": build.BATCH,
    }
    made, made_pods = runs.jobs_with_pods(ctx.kube, p.namespace, selector)
    return decide.batch_status(new, p.old, observe.last_cronjob_run(made, made_pods), p.now)


def _alias_moves(
    ctx: Context, p: Pass[ModelDeploymentStatus], resource: ModelDeployment
) -> tuple[list[dict[str, Any]], list[aliases.Assignment], list[dict[str, Any]]]:
    """The namespace's TrainingJobs, the alias moves they and the alias Jobs record, and
    the alias Jobs, when the deployment names a version by alias (else none: nothing to
    read)."""
    if not aliases.follows_aliases(resource.spec):
        return [], [], []
    trainings = ctx.kube.select("TrainingJob", p.namespace, {})
    component = {"app.kubernetes.io/component": labels.ALIAS_COMPONENT}
    movers = ctx.kube.select("Job", p.namespace, component)
    moves = aliases.from_training_jobs(trainings) + aliases.from_alias_jobs(movers)
    return trainings, moves, movers


def _move_alias(
    ctx: Context,
    p: Pass[ModelDeploymentStatus],
    move: decide.AliasMove,
    movers: set[str],
    stamp: str,
) -> None:
    """A promotion moves `champion` in the registry, through a Job running the runtime's
    `flywheel registry alias set` (the operator has no storage access). Made once; its
    completion is the move later passes resolve the alias from."""
    job = build.alias_job(p.body, ctx.settings, move.alias, move.version, move.reason, move.tag)
    name = job["metadata"]["name"]
    if name in movers:
        return  # under way (or failed: its Pods and Events say why)
    # The Event first, named after the Job: a crash before the create tells it again as
    # a no-op, and the next pass creates the Job.
    message = f"{move.model}@{move.alias} -> {move.version.version} (job/{name})"
    event = f"{p.body['metadata']['name']}.{name}"[:253]
    ctx.kube.event(p.body, "Normal", "AliasMoving", message, stamp, event)
    ctx.kube.create(job)


def _candidate_running(
    ctx: Context, p: Pass[ModelDeploymentStatus], candidate: ServedVersion
) -> tuple[bool, str]:
    """Whether the candidate's Serve application is RUNNING, as KubeRay last reported."""
    name = p.body["metadata"]["name"]
    current = ctx.kube.get("RayService", p.namespace, labels.child_name(name, "serve"))
    return observe.serve_application(current, rayserve.app_name(name, candidate.version))


def _measure(
    ctx: Context,
    p: Pass[ModelDeploymentStatus],
    resource: ModelDeployment,
    stable: ServedVersion,
    candidate: ServedVersion | None,
    state: rollout.State,
    url: str,
) -> rollout.Metrics | None:
    """The router's measurements of the current step, while a rollout is under way."""
    if candidate is None or state.finished or state.step_started is None:
        return None
    split = rollout.traffic(resource.spec.rollout, state, stable.version, candidate.version)
    ab = resource.spec.rollout.abtest
    step = router_metrics.Step(
        p.namespace,
        resource.name,
        url,
        candidate.version,
        state.step_started,
        split,
        p.now,
        ab.metric.value if ab else None,
    )
    return ctx.router_metrics(step)
