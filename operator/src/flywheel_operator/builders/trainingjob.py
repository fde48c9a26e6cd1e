"""TrainingJob -> a KubeRay RayJob whose entrypoint is `flywheel train run`.

The submitter (a Kubernetes Job KubeRay creates from `submitterPodTemplate`) runs
`flywheel train submit`, which submits the entrypoint with the runtimeEnvYAML (handed to
it in its env: it cannot read the RayJob), follows its logs and writes the training result
to its termination message, where the operator reads it. The entrypoint prints a progress
line per epoch, which the operator reads from the Ray job's log while it runs.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import yaml

from flywheel import entrypoints
from flywheel.api import TrainingJob
from flywheel_operator import labels
from flywheel_operator.builders import pods, raycluster
from flywheel_operator.settings import Settings

COMPONENT = "training"


def rayjob_name(owner: dict[str, Any]) -> str:
    return labels.child_name(owner["metadata"]["name"], "train")


def build(
    owner: dict[str, Any],
    resource: TrainingJob,
    settings: Settings,
    inputs: dict[str, Any],
    manifests: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`inputs`: the statuses, `manifests`: the manifests of the FeatureViews, the label
    Dataset and a baseline ModelDeployment; the training-set join reads their specs."""
    spec = resource.spec
    manifest = pods.object_manifest(owner)
    env_vars = {
        entrypoints.MANIFEST_ENV: json.dumps(manifest, sort_keys=True),
        entrypoints.INPUTS_ENV: json.dumps(inputs, sort_keys=True),
        entrypoints.INPUT_MANIFESTS_ENV: json.dumps(manifests or [], sort_keys=True),
    }
    # Data and models on a PVC are mounted where the runtime resolves pvc:// URIs.
    claims = pods.claims_in(settings.artifact_root, owner["spec"], inputs)
    runtime_env = yaml.safe_dump({"env_vars": env_vars}, sort_keys=True)
    # The submitter gets the whole runtime env in one variable; the Ray job's driver gets
    # each of its values.
    pods.env_value(entrypoints.RAY_RUNTIME_ENV_ENV, runtime_env)
    rayjob_spec: dict[str, Any] = {
        "entrypoint": entrypoint(settings.artifact_root),
        "runtimeEnvYAML": runtime_env,
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "backoffLimit": spec.backoff_limit,
        "submissionMode": "K8sJobMode",
        "submitterPodTemplate": _submitter(
            owner, settings, claims, entrypoint(settings.artifact_root), runtime_env
        ),
        "rayClusterSpec": _cluster(owner, resource, settings, claims),
    }
    if spec.active_deadline_seconds:
        rayjob_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": raycluster.RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": labels.child_metadata(owner, rayjob_name(owner), COMPONENT),
        "spec": rayjob_spec,
    }


def entrypoint(artifact_root: str) -> str:
    """`flywheel train run` with progress lines, and a failed gate ending the Ray job well
    (exit 0): KubeRay retries a failed RayJob, and a retry cannot change a verdict."""
    command = entrypoints.ENTRYPOINTS["TrainingJob"].command
    return shlex.join(
        ["flywheel", *command, "--artifact-root", artifact_root, "--progress-lines",
         "--verdict-exit-code", "0"]
    )  # fmt: skip


def _submitter(
    owner: dict[str, Any], settings: Settings, claims: list[str], command: str, runtime_env: str
) -> dict[str, Any]:
    container = pods.runtime_container(
        "submitter",
        settings.runtime_image,
        ["train", "submit", "--result", pods.TERMINATION_LOG],
        pods.object_manifest(owner),
        settings.image_pull_policy,
    )
    container["env"] += [
        {"name": entrypoints.RAY_ENTRYPOINT_ENV, "value": command},
        {"name": entrypoints.RAY_RUNTIME_ENV_ENV, "value": runtime_env},
    ]
    return {
        "metadata": {"labels": labels.common_labels(owner, "submitter")},
        "spec": pods.mount_claims(
            pods.runtime_pod_spec([container], settings.runtime_service_account),
            claims,
            settings.pvc_root,
        ),
    }


def _cluster(
    owner: dict[str, Any], resource: TrainingJob, settings: Settings, claims: list[str]
) -> dict[str, Any]:
    spec = resource.spec
    worker = spec.scaling.resources_per_worker
    image = spec.ray.image or settings.ray_cluster_image
    return {
        "rayVersion": spec.ray.version,
        "headGroupSpec": {
            # The head schedules no training work: workers hold the GPUs.
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
            "template": raycluster.pod_template(
                owner, "ray-head", image, raycluster.head_resources(), {}, settings, claims
            ),
        },
        "workerGroupSpecs": [
            {
                "groupName": "workers",
                "replicas": spec.scaling.num_workers,
                "minReplicas": spec.scaling.num_workers,
                "maxReplicas": spec.scaling.num_workers,
                "rayStartParams": {},
                "template": raycluster.pod_template(
                    owner,
                    "ray-worker",
                    image,
                    pods.resources(worker),
                    pods.placement(worker),
                    settings,
                    claims,
                ),
            }
        ],
    }
