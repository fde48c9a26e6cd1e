"""ModelDeployment -> a RayService (rayserve) or Triton Deployments + a router (triton).

Both serve the same thing: one router in front of one model server per version. The
traffic split comes from the rollout state (flywheel.serving.rollout) and is a router setting
only, so a rollout step never restarts a model replica: on Ray Serve it is the Router
deployment's `user_config` (a lightweight in-place update), on Triton the router's
ConfigMap.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from flywheel import entrypoints
from flywheel.api import ModelDeployment
from flywheel.api.common import SecretKeySelector
from flywheel.api.modeldeployment import Backend, TritonOptions
from flywheel.serving import rayserve
from flywheel.serving.versions import ServedVersion
from flywheel_operator import labels
from flywheel_operator.builders import jobs, pods, raycluster
from flywheel_operator.settings import Settings

ROUTER = "router"
TRITON_UID = 1000  # the triton-server user of the NGC images
ROUTER_PORT = 8080
TRITON_GRPC_PORT = 8001
# On SIGTERM the router reports not ready and finishes what is in flight for this long;
# the Pod's grace period leaves room after it.
ROUTER_DRAIN_SECONDS = 20
ROUTER_GRACE_SECONDS = ROUTER_DRAIN_SECONDS + 10
SERVING_PBTXT = "serving.pbtxt"


class _Plain(yaml.SafeDumper):
    """Writes a repeated value out again instead of as a YAML anchor and alias (`&id001`):
    the Serve config is read by people reviewing a change, not only by parsers."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def build(
    owner: dict[str, Any],
    resource: ModelDeployment,
    settings: Settings,
    versions: list[ServedVersion],
    traffic: dict[str, float],
    feature_view: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """`versions`: stable first, then the candidate; `traffic`: version -> percent;
    `feature_view`: the object spec.featureViewRef names (its online store serves lookups)."""
    if resource.spec.backend == Backend.RAYSERVE:
        return [rayservice(owner, resource, settings, versions, traffic, feature_view)]
    return triton(owner, resource, settings, versions, traffic, feature_view)


def alias_job(
    owner: dict[str, Any],
    settings: Settings,
    alias: str,
    version: ServedVersion,
    reason: str,
    tag: str = "",
) -> dict[str, Any]:
    """A Job running `flywheel registry alias set`: the registry moves the alias (with its
    reason, in the model's index), and the Job's annotations tell the operator, which
    reads no storage, where it moved once the Job completes (`status.aliases`). `tag`
    names a move apart from an earlier one to the same version (an undo)."""
    suffix = f"{alias}-{version.key}" + (f"-{tag}" if tag else "")
    args = ["registry", "alias", "set", "--model-root", model_root(version, settings.artifact_root)]
    args += ["--alias", alias, "--version", version.version, "--reason", reason]
    name = labels.child_name(owner["metadata"]["name"], suffix)
    job = jobs.runtime_job(owner, name, labels.ALIAS_COMPONENT, args, settings, backoff_limit=3)
    # The registry may sit on a claim of its own (spec.output.registryUri): mount it too.
    pod = job["spec"]["template"]["spec"]
    mounted = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
               if "persistentVolumeClaim" in v}  # fmt: skip
    claims = [c for c in pods.claims_in(args) if c not in mounted]
    pods.mount_claims(pod, claims, settings.pvc_root)
    job["metadata"]["annotations"] = {
        labels.MODEL_ANNOTATION: version.model_name,
        labels.ALIAS_ANNOTATION: alias,
        labels.VERSION_ANNOTATION: version.version,
        labels.ARTIFACT_ANNOTATION: version.artifact_uri,
    }
    return job


def model_root(version: ServedVersion, artifact_root: str) -> str:
    """The registry directory of a version's model: its URI up to `/versions/<version>`
    (the registry layout), else the model's directory under the artifact root.

    >>> model_root(ServedVersion("churn", "v2", "pvc://a/models/churn/versions/v2"), "/x")
    'pvc://a/models/churn'
    """
    tail = f"/versions/{version.version}"
    uri = version.artifact_uri.rstrip("/")
    if uri.endswith(tail):
        return uri[: -len(tail)]
    return f"{artifact_root.rstrip('/')}/models/{version.model_name}"


def url(resource: ModelDeployment, namespace: str) -> str:
    """Where clients send requests: the router Service (triton) or the Serve Service."""
    if resource.spec.backend == Backend.TRITON:
        return f"http://{resource.name}.{namespace}.svc"
    # KubeRay names the Serve Service <RayService name>-serve-svc, port 8000.
    return f"http://{labels.child_name(resource.name, 'serve')}-serve-svc.{namespace}.svc:8000"


def router_config(
    resource: ModelDeployment, versions: list[ServedVersion], traffic: dict[str, float]
) -> dict[str, Any]:
    """What the router needs to route: versions, the split and the strategy settings."""
    rollout = resource.spec.rollout
    return {
        "deployment": resource.name,
        "stable": versions[0].version,
        "candidate": versions[1].version if len(versions) > 1 else None,
        "traffic": traffic,
        "strategy": rollout.strategy,
        "shadow": rollout.shadow.to_wire() if rollout.shadow else None,
        "bandit": rollout.bandit.to_wire() if rollout.bandit else None,
        "requestLogging": resource.spec.request_logging.to_wire(),
    }


# --- Ray Serve -----------------------------------------------------------------------


def rayservice(
    owner: dict[str, Any],
    resource: ModelDeployment,
    settings: Settings,
    versions: list[ServedVersion],
    traffic: dict[str, float],
    feature_view: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The RayService: `serveConfigV2` is the runtime's Serve layout (`rayserve.serve_config`),
    so adding a version adds an application and a traffic step changes the router's
    `user_config` only; neither touches another application or the cluster spec.
    `feature_view`: its manifest goes in the router's args, and its online store's Secret
    and claim are mounted in the Ray pods, where the router replicas run."""
    spec = resource.spec
    res = spec.resources
    scaling = spec.autoscaling
    serve_config = rayserve.serve_config(
        resource.name,
        [{"model": v.model_name, "version": v.version, "uri": v.artifact_uri} for v in versions],
        router_config(resource, versions, traffic),
        num_cpus=_cpus(res.cpu),
        num_gpus=res.gpu,
        autoscaling={
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
        },
        # The view's spec only: a materialization (a new status) restarts no router.
        feature_view=pods.object_manifest(feature_view) if feature_view else None,
        artifact_root=settings.artifact_root,
    )
    worker = pods.resources(res)
    gpus_per_pod = math.ceil(res.gpu) if res.gpu else 0
    if gpus_per_pod:
        worker["requests"][pods.GPU_RESOURCE] = str(gpus_per_pod)
        worker["limits"][pods.GPU_RESOURCE] = str(gpus_per_pod)
    view_spec = feature_view["spec"] if feature_view else {}
    claims = pods.claims_in(settings.artifact_root, [v.artifact_uri for v in versions], view_spec)
    image = settings.ray_cluster_image
    head = raycluster.pod_template(
        owner, "ray-head", image, raycluster.head_resources(), {}, settings, claims
    )
    workers = raycluster.pod_template(
        owner, "ray-worker", image, worker, pods.placement(res), settings, claims
    )
    shared = spec.router_state.connection_secret_ref
    # The router replicas run in these pods: a shared bandit's Redis URL, and the
    # FeatureView's online store (a Redis URL Secret; a SQLite file is on a claim above).
    secrets = [(shared.name, shared.key)] if shared is not None else []
    secrets = list(dict.fromkeys(secrets + pods.secret_refs(view_spec)))
    for template in (head, workers):
        pods.mount_secrets(template["spec"], secrets)
        if shared is not None:  # every router replica adds its bandit counts to Redis totals
            for container in template["spec"]["containers"]:
                container.setdefault("env", []).append(
                    {"name": rayserve.STATE_URL_FILE_ENV, "value": _secret_file(shared)}
                )
    return {
        "apiVersion": raycluster.RAY_API_VERSION,
        "kind": "RayService",
        "metadata": labels.child_metadata(
            owner, labels.child_name(resource.name, "serve"), "serving"
        ),
        "spec": {
            "serveConfigV2": yaml.dump(serve_config, Dumper=_Plain, sort_keys=False),
            "rayClusterConfig": {
                "rayVersion": settings.ray_version,
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": head,
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "serve",
                        # KubeRay leaves replica counts out of the cluster's hash: a
                        # second version raises maxReplicas without a new cluster.
                        "replicas": max(scaling.min_replicas, 1),
                        "minReplicas": max(scaling.min_replicas, 1),
                        "maxReplicas": scaling.max_replicas * len(versions),
                        "rayStartParams": {},
                        "template": workers,
                    }
                ],
            },
        },
    }


def _cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


# --- Triton --------------------------------------------------------------------------


def triton_config(options: TritonOptions, gpus: float = 0) -> str:
    """The serving settings of a version's config.pbtxt: instance group and dynamic
    batching. `flywheel serve triton-repository` puts them over the config.pbtxt that
    training wrote (backend, inputs, outputs), so the model's signature stays training's."""
    # GPUs asked for means the instances run on them, whatever the default kind says.
    kind = "KIND_GPU" if gpus else str(options.instance_kind)
    lines = [
        f"max_batch_size: {options.max_batch_size}",
        f"instance_group [ {{ count: {options.instance_count} kind: {kind} }} ]",
    ]
    batching = options.dynamic_batching
    if batching is not None and options.max_batch_size > 0:
        lines.append("dynamic_batching {")
        if batching.preferred_batch_sizes:
            sizes = ", ".join(map(str, batching.preferred_batch_sizes))
            lines.append(f"  preferred_batch_size: [ {sizes} ]")
        lines.append(f"  max_queue_delay_microseconds: {batching.max_queue_delay_microseconds}")
        lines.append("}")
    return "\n".join(lines) + "\n"


def triton(
    owner: dict[str, Any],
    resource: ModelDeployment,
    settings: Settings,
    versions: list[ServedVersion],
    traffic: dict[str, float],
    feature_view: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    options = resource.spec.triton or TritonOptions()
    children: list[dict[str, Any]] = []
    endpoints: dict[str, str] = {}
    for v in versions:
        name = labels.child_name(resource.name, v.key)
        endpoints[v.version] = f"{name}:{TRITON_GRPC_PORT}"
        children += _triton_version(owner, resource, settings, v, name, options)
    config = {
        **router_config(resource, versions, traffic),
        "endpoints": endpoints,
        # Every version is laid out under the deployment's name, so clients and the
        # router ask for one model whichever version answers.
        "model": resource.name,
        "backend": "triton-grpc",
    }
    children += _router(owner, resource, settings, config, feature_view)
    return children


def _triton_version(
    owner: dict[str, Any],
    resource: ModelDeployment,
    settings: Settings,
    version: ServedVersion,
    name: str,
    options: TritonOptions,
) -> list[dict[str, Any]]:
    component = "model-server"
    extra = {"flywheel.dev/model-version": version.key}
    meta = labels.child_metadata(owner, name, component, extra)
    selector = {labels.owner_label("ModelDeployment"): resource.name, **extra}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": labels.child_metadata(owner, f"{name}-config", component, extra),
        "data": {SERVING_PBTXT: triton_config(options, resource.spec.resources.gpu)},
    }
    fetch = pods.runtime_container(
        "fetch-model",
        settings.runtime_image,
        [
            "serve",
            "triton-repository",
            "--uri",
            version.artifact_uri,
            "--model",
            resource.name,
            "--config",
            f"/etc/triton/{SERVING_PBTXT}",
            "--out",
            "/models",
        ],
        pods.object_manifest(owner),
        settings.image_pull_policy,
    )
    fetch["volumeMounts"] += [
        {"name": "models", "mountPath": "/models"},
        {"name": "config", "mountPath": "/etc/triton"},
    ]
    server = {
        "name": "triton",
        "image": options.image,
        "imagePullPolicy": settings.image_pull_policy,
        "args": [
            "tritonserver",
            "--model-repository=/models",
            "--strict-model-config=false",
            "--allow-metrics=true",
        ],
        "ports": [
            {"name": "http", "containerPort": 8000},
            {"name": "grpc", "containerPort": 8001},
            {"name": "metrics", "containerPort": 8002},
        ],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}},
        "resources": pods.resources(resource.spec.resources),
        "securityContext": pods.container_security_context(),
        "volumeMounts": [
            *pods.scratch_mounts(shm=True),
            {"name": "models", "mountPath": "/models"},
        ],
    }
    pod_spec = {
        "securityContext": pods.pod_security_context(TRITON_UID),
        "automountServiceAccountToken": False,
        "initContainers": [fetch],
        "containers": [server],
        "volumes": [
            *pods.scratch_volumes(shm=True),
            {"name": "models", "emptyDir": {}},
            {"name": "config", "configMap": {"name": f"{name}-config"}},
        ],
        **pods.placement(resource.spec.resources),
    }
    claims = pods.claims_in(version.artifact_uri)
    pods.mount_claims(pod_spec, claims, settings.pvc_root)
    scaling = resource.spec.autoscaling
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": max(scaling.min_replicas, 1),
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**meta["labels"]}}, "spec": pod_spec},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": selector,
            "ports": [
                {"name": "http", "port": 8000, "targetPort": "http"},
                {"name": "grpc", "port": 8001, "targetPort": "grpc"},
                {"name": "metrics", "port": 8002, "targetPort": "metrics"},
            ],
        },
    }
    return [config_map, deployment, service]


def _router(
    owner: dict[str, Any],
    resource: ModelDeployment,
    settings: Settings,
    config: dict[str, Any],
    feature_view: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The router: a ConfigMap it watches (a traffic step restarts nothing), a Deployment
    probed on the v2 health endpoints that drains on SIGTERM, a PodDisruptionBudget, and
    the Service clients call."""
    name = labels.child_name(resource.name, ROUTER)
    meta = labels.child_metadata(owner, name, ROUTER)
    selector = {
        labels.owner_label("ModelDeployment"): resource.name,
        "app.kubernetes.io/component": ROUTER,
    }
    container = pods.runtime_container(
        ROUTER,
        settings.runtime_image,
        [
            "serve",
            "router",
            "--config",
            "/etc/flywheel/router.json",
            "--port",
            str(ROUTER_PORT),
            "--drain-seconds",
            str(ROUTER_DRAIN_SECONDS),
            # Weights from the API server the moment they change; the file is the start.
            "--watch-configmap",
            name,
            *_state_args(resource),
            *_lookup_args(feature_view, settings),
        ],
        pods.object_manifest(owner),
        settings.image_pull_policy,
        # The view's spec only: a materialization (a new status) restarts no router.
        manifests=[pods.object_manifest(feature_view)] if feature_view else None,
    )
    container["ports"] = [{"name": "http", "containerPort": ROUTER_PORT}]
    container["readinessProbe"] = {
        "httpGet": {"path": "/v2/health/ready", "port": "http"},
        "periodSeconds": 2,
        "failureThreshold": 1,
    }
    container["livenessProbe"] = {
        "httpGet": {"path": "/v2/health/live", "port": "http"},
        "periodSeconds": 10,
        "failureThreshold": 3,
    }
    container["volumeMounts"].append({"name": "router-config", "mountPath": "/etc/flywheel"})
    pod_spec = pods.runtime_pod_spec([container], settings.runtime_service_account, "Always")
    # Its own account, which may read its own ConfigMap and nothing else; or the runtime's,
    # when one is set (it may carry the cloud identity the request log's storage needs).
    account = settings.runtime_service_account or name
    pod_spec["serviceAccountName"] = account
    pod_spec["automountServiceAccountToken"] = True
    pod_spec["volumes"].append({"name": "router-config", "configMap": {"name": name}})
    pod_spec["terminationGracePeriodSeconds"] = ROUTER_GRACE_SECONDS
    shared = resource.spec.router_state.connection_secret_ref
    secrets = [(shared.name, shared.key)] if shared is not None else []
    if feature_view is not None:  # its online store: a Redis URL Secret, or a file on a claim
        secrets += pods.secret_refs(feature_view["spec"])
        claims = pods.claims_in(settings.artifact_root, feature_view["spec"])
        pods.mount_claims(pod_spec, claims, settings.pvc_root)
    pods.mount_secrets(pod_spec, list(dict.fromkeys(secrets)))
    # An A/B test's counts live in one router's windows, and a bandit's in one router's
    # state file unless Redis shares them: one replica keeps one test or one bandit.
    strategy = resource.spec.rollout.strategy
    alone = strategy == "abtest" or (strategy == "bandit" and shared is None)
    replicas = 1 if alone else 2
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            # The router watches this object (and starts from its file): a traffic step
            # restarts nothing and reaches every replica at once.
            "data": {"router.json": json.dumps(config, sort_keys=True, indent=2)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                # Surge first: a new router is ready before an old one drains.
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "template": {"metadata": {"labels": meta["labels"]}, "spec": pod_spec},
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            # One router at a time may be evicted; with one replica a drain still proceeds.
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": labels.child_metadata(owner, resource.name, ROUTER),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
        # A ReplicaSet creates no Pod before its ServiceAccount exists: it retries.
        *_router_access(meta, name, account),
    ]


def _router_access(meta: dict[str, Any], name: str, account: str) -> list[dict[str, Any]]:
    """The router's ServiceAccount (unless it runs as one of the operator's settings),
    and a Role bound to it that may get, list and watch its ConfigMap only
    (`resourceNames`; a watch selects it by `metadata.name`)."""
    own = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}]
    return [
        *(own if account == name else []),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [name],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {"kind": "ServiceAccount", "name": account, "namespace": meta["namespace"]}
            ],
        },
    ]


def _state_args(resource: ModelDeployment) -> list[str]:
    """Where the router keeps bandit counts: a file in its Pod, or Redis shared by all."""
    shared = resource.spec.router_state.connection_secret_ref
    if shared is None:
        return ["--state-file", f"/tmp/{resource.name}.db"]
    return ["--state-url-file", _secret_file(shared)]


def _secret_file(ref: SecretKeySelector) -> str:
    """Where pods.mount_secrets puts a Secret key."""
    return f"{entrypoints.DEFAULT_SECRETS_DIR}/{ref.name}/{ref.key}"


def _lookup_args(feature_view: dict[str, Any] | None, settings: Settings) -> list[str]:
    if feature_view is None:
        return []
    name = feature_view["metadata"]["name"]
    return ["--feature-view", name, "--artifact-root", settings.artifact_root]


BATCH = "batch"


def batch_cronjob(
    owner: dict[str, Any],
    settings: Settings,
    model: ServedVersion,
    inputs: dict[str, Any],
    manifests: list[dict[str, Any]],
) -> dict[str, Any]:
    """spec.batchPrediction -> a CronJob `<md>-batch` running `flywheel batch-predict`
    with `model` (the stable version unless the spec names one): a promotion changes
    its template, not its schedule. `inputs`/`manifests`: the FeatureView's (and the
    entities Dataset's) statuses and manifests; the Secrets and claims they name (a
    redis online store's URL, a store on a claim) are mounted as their own Jobs mount
    them."""
    batch = owner["spec"]["batchPrediction"]
    args = ["batch-predict", "--model", model.artifact_uri, "--model-version", model.version]
    if model.model_name:
        args += ["--model-name", model.model_name]
    name = labels.child_name(owner["metadata"]["name"], BATCH, limit=52)
    cron = jobs.runtime_cronjob(
        owner, name, BATCH, batch["schedule"], args, settings, inputs, manifests
    )
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    mounted = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
               if "persistentVolumeClaim" in v}  # fmt: skip
    specs = [m.get("spec") or {} for m in manifests]
    claims = [c for c in pods.claims_in(args, *specs) if c not in mounted]
    pods.mount_claims(pod, claims, settings.pvc_root)
    have = {(v["secret"]["secretName"]) for v in pod["volumes"] if "secret" in v}
    pods.mount_secrets(pod, [r for r in pods.secret_refs(specs) if r[0] not in have])
    return cron
