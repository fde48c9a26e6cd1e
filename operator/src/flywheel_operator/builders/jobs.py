"""Jobs and CronJobs that run one `flywheel ...` command on one object."""

from __future__ import annotations

from typing import Any

from flywheel_operator import labels
from flywheel_operator.builders import pods
from flywheel_operator.settings import Settings


def runtime_job(
    owner: dict[str, Any],
    name: str,
    component: str,
    args: list[str],
    settings: Settings,
    inputs: dict[str, Any] | None = None,
    backoff_limit: int = 1,
    active_deadline_seconds: int | None = None,
    manifests: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Job running `flywheel <args>` with the owner's manifest; kept until superseded.

    `inputs`: the statuses, `manifests`: the manifests of what the owner depends on."""
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": _pod_template(owner, component, args, settings, inputs, manifests),
    }
    if active_deadline_seconds:
        spec["activeDeadlineSeconds"] = active_deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": labels.child_metadata(owner, name, component),
        "spec": spec,
    }


def runtime_cronjob(
    owner: dict[str, Any],
    name: str,
    component: str,
    schedule: str,
    args: list[str],
    settings: Settings,
    inputs: dict[str, Any] | None = None,
    manifests: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A CronJob for scheduled runs; one at a time, a few finished Jobs kept for status."""
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": labels.child_metadata(owner, name, component),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels.common_labels(owner, component)},
                "spec": {
                    "backoffLimit": 1,
                    "template": _pod_template(owner, component, args, settings, inputs, manifests),
                },
            },
        },
    }


def _pod_template(
    owner: dict[str, Any],
    component: str,
    args: list[str],
    settings: Settings,
    inputs: dict[str, Any] | None,
    manifests: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    container = pods.runtime_container(
        component,
        settings.runtime_image,
        [*args, "--artifact-root", settings.artifact_root, "--result", pods.TERMINATION_LOG],
        pods.object_manifest(owner),
        settings.image_pull_policy,
        inputs,
        manifests=manifests,
    )
    spec = pods.runtime_pod_spec([container], settings.runtime_service_account)
    claims = pods.claims_in(settings.artifact_root, owner["spec"], inputs)
    pods.mount_secrets(spec, pods.secret_refs(owner["spec"]))
    return {
        "metadata": {"labels": labels.common_labels(owner, component)},
        "spec": pods.mount_claims(spec, claims, settings.pvc_root),
    }
