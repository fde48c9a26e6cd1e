"""Ray cluster pieces the TrainingJob (RayJob) and ModelDeployment (RayService) builders
share: the KubeRay API version and the head and worker Pod templates."""

from __future__ import annotations

from typing import Any

from flywheel_operator import labels
from flywheel_operator.builders import pods
from flywheel_operator.settings import Settings

RAY_API_VERSION = "ray.io/v1"
RAY_UID = 1000  # the `ray` user of the rayproject images


def head_resources() -> dict[str, Any]:
    """The head schedules no work (`num-cpus: 0`): it needs room for the GCS only."""
    return {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}


def pod_template(
    owner: dict[str, Any],
    name: str,
    image: str,
    resources: dict[str, Any],
    placement: dict[str, Any],
    settings: Settings,
    claims: list[str],
) -> dict[str, Any]:
    """A Ray head or worker pod: restricted, /tmp and /dev/shm as scratch, claims mounted."""
    spec = {
        "securityContext": pods.pod_security_context(RAY_UID),
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": name,
                "image": image,
                "imagePullPolicy": settings.image_pull_policy,
                "resources": resources,
                "securityContext": pods.container_security_context(),
                "volumeMounts": pods.scratch_mounts(shm=True),
            }
        ],
        "volumes": pods.scratch_volumes(shm=True),
        **placement,
    }
    return {
        "metadata": {"labels": labels.common_labels(owner, name)},
        "spec": pods.mount_claims(spec, claims, settings.pvc_root),
    }
