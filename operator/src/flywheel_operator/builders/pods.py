"""Pod pieces every builder shares: Pod Security "restricted", scratch space, resources."""

from __future__ import annotations

import json
from typing import Any

from flywheel import entrypoints
from flywheel.api.common import ReplicaResources, Toleration

RUNTIME_UID = 10001
SCRATCH_VOLUME = "scratch"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
TERMINATION_LOG = "/dev/termination-log"


def pod_security_context(uid: int = RUNTIME_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes(shm: bool = False) -> list[dict[str, Any]]:
    """Writable space under a read-only root: /tmp, and /dev/shm for Ray's object store."""
    volumes: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "emptyDir": {}}]
    if shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    return volumes


def scratch_mounts(shm: bool = False) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [{"name": SCRATCH_VOLUME, "mountPath": "/tmp"}]
    if shm:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return mounts


def resources(spec: ReplicaResources) -> dict[str, Any]:
    """core/v1 ResourceRequirements; GPUs as whole `nvidia.com/gpu` requests and limits."""
    requests: dict[str, Any] = {"cpu": spec.cpu, "memory": spec.memory}
    limits: dict[str, Any] = {"memory": spec.memory}
    gpus = int(spec.gpu) if float(spec.gpu).is_integer() else 0
    if gpus:
        requests[GPU_RESOURCE] = str(gpus)
        limits[GPU_RESOURCE] = str(gpus)
    return {"requests": requests, "limits": limits}


def placement(spec: ReplicaResources) -> dict[str, Any]:
    """nodeSelector and tolerations; GPU pods tolerate the usual nvidia.com/gpu taint."""
    out: dict[str, Any] = {}
    selector = dict(spec.node_selector)
    if spec.gpu and spec.gpu_type:
        selector.setdefault(GPU_PRODUCT_LABEL, spec.gpu_type)
    if selector:
        out["nodeSelector"] = selector
    tolerations = [_toleration(t) for t in spec.tolerations]
    if spec.gpu and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        out["tolerations"] = tolerations
    return out


class EnvTooLarge(ValueError):
    """An environment value a container could not start with (execve's limit)."""


def env_value(name: str, value: Any) -> str:
    """`value` as compact JSON (a string as is), or EnvTooLarge naming the variable."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    size = len(text.encode())
    if size > entrypoints.ENV_VALUE_LIMIT_BYTES:
        raise EnvTooLarge(
            f"${name} would be {size} bytes, over the {entrypoints.ENV_VALUE_LIMIT_BYTES} a "
            "process environment takes: reference fewer or smaller inputs (e.g. split a "
            "FeatureView with many features)"
        )
    return text


def env_var(name: str, value: Any) -> dict[str, str]:
    return {"name": name, "value": env_value(name, value)}


def input_manifests(objects: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Upstream objects as the runtime reads their specs: kind, name, namespace, spec.

    Never a status (that is $FLYWHEEL_INPUTS) nor a Secret: inputs are flywheel kinds.
    """
    return [object_manifest(obj) for _, obj in sorted(objects.items())]


def _toleration(t: Toleration) -> dict[str, Any]:
    return t.to_wire()


def runtime_container(
    name: str,
    image: str,
    args: list[str],
    manifest: dict[str, Any],
    pull_policy: str,
    inputs: dict[str, Any] | None = None,
    resources_spec: dict[str, Any] | None = None,
    manifests: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A container running a `flywheel ...` command on one object's manifest.

    `inputs` are the statuses and `manifests` the manifests of what the object depends on.
    The result JSON is written to the termination log, where the operator reads it from
    the Pod status; `FallbackToLogsOnError` keeps the last log lines of a crash.
    """
    env = [env_var(entrypoints.MANIFEST_ENV, manifest)]
    if inputs:
        env.append(env_var(entrypoints.INPUTS_ENV, inputs))
    if manifests:
        env.append(env_var(entrypoints.INPUT_MANIFESTS_ENV, manifests))
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["flywheel"],
        "args": args,
        "env": env,
        "resources": resources_spec
        or {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        "securityContext": container_security_context(),
        "volumeMounts": scratch_mounts(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def runtime_pod_spec(
    containers: list[dict[str, Any]],
    service_account: str | None,
    restart_policy: str = "Never",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart_policy,
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": scratch_volumes(),
        "automountServiceAccountToken": service_account is not None,
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    return spec


def object_manifest(resource_wire: dict[str, Any]) -> dict[str, Any]:
    """What a runtime command needs of its object: kind, name, namespace and spec."""
    meta = resource_wire["metadata"]
    return {
        "apiVersion": resource_wire["apiVersion"],
        "kind": resource_wire["kind"],
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default")},
        "spec": resource_wire["spec"],
    }


def claims_in(*objs: Any) -> list[str]:
    """PersistentVolumeClaims named by `pvc://<claim>/...` strings anywhere in `objs`."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, str) and obj.startswith("pvc://"):
            claim = obj[len("pvc://") :].split("/", 1)[0]
            if claim and claim not in found:
                found.append(claim)
        elif isinstance(obj, dict):
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    for obj in objs:
        walk(obj)
    return found


def mount_claims(pod_spec: dict[str, Any], claims: list[str], root: str) -> dict[str, Any]:
    """Mount each claim at `<root>/<claim>` in every container: where the runtime looks
    for `pvc://<claim>/path` (FLYWHEEL_PVC_ROOT)."""
    containers = pod_spec["containers"] + pod_spec.get("initContainers", [])
    for claim in claims:
        volume = f"pvc-{claim}"[:63].rstrip("-.")
        pod_spec["volumes"].append({"name": volume, "persistentVolumeClaim": {"claimName": claim}})
        for c in containers:
            c.setdefault("volumeMounts", []).append(
                {"name": volume, "mountPath": f"{root.rstrip('/')}/{claim}"}
            )
    if claims:
        for c in containers:
            env = c.setdefault("env", [])
            if not any(e["name"] == entrypoints.PVC_ROOT_ENV for e in env):
                env.append({"name": entrypoints.PVC_ROOT_ENV, "value": root})
    return pod_spec


def secret_refs(spec: Any) -> list[tuple[str, str]]:
    """Every `...SecretRef` ({name, key}) in a spec, as (name, key), in order, once.

    >>> secret_refs({"source": {"credentialsSecretRef": {"name": "s3", "key": "creds"}}})
    [('s3', 'creds')]
    """
    found: list[tuple[str, str]] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k.endswith("SecretRef") and isinstance(v, dict) and "name" in v and "key" in v:
                    if (v["name"], v["key"]) not in found:
                        found.append((v["name"], v["key"]))
                else:
                    walk(v)
        elif isinstance(obj, list):
            for item in obj:
                walk(item)

    walk(spec)
    return found


def mount_secrets(pod_spec: dict[str, Any], refs: list[tuple[str, str]]) -> dict[str, Any]:
    """Mount each referenced Secret key read-only at `<secrets dir>/<name>/<key>` in every
    container: where the runtime looks for it (FLYWHEEL_SECRETS_DIR). Only the named key
    is projected; the operator itself never reads the Secret."""
    containers = pod_spec["containers"] + pod_spec.get("initContainers", [])
    names = sorted({name for name, _ in refs})
    for name in names:
        volume = f"secret-{name}"[:63].rstrip("-.")
        keys = [key for n, key in refs if n == name]
        pod_spec["volumes"].append({
            "name": volume,
            "secret": {"secretName": name, "items": [{"key": k, "path": k} for k in keys]},
        })  # fmt: skip
        for c in containers:
            c.setdefault("volumeMounts", []).append({
                "name": volume,
                "mountPath": f"{entrypoints.DEFAULT_SECRETS_DIR}/{name}",
                "readOnly": True,
            })  # fmt: skip
    if names:
        for c in containers:
            env = c.setdefault("env", [])
            if not any(e["name"] == entrypoints.SECRETS_DIR_ENV for e in env):
                env.append(
                    {"name": entrypoints.SECRETS_DIR_ENV, "value": entrypoints.DEFAULT_SECRETS_DIR}
                )
    return pod_spec
