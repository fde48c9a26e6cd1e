"""Reading runs: the Pods of a Job, and the Jobs a CronJob made with their Pods."""

from __future__ import annotations

from typing import Any

from flywheel_operator.kube.client import Kube

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its Pods


def job_pods(kube: Kube, namespace: str, job_name: str) -> list[dict[str, Any]]:
    return kube.select("Pod", namespace, {JOB_NAME_LABEL: job_name})


def jobs_with_pods(
    kube: Kube, namespace: str, selector: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The Jobs matching `selector` (e.g. a CronJob's), and each one's Pods by Job name."""
    jobs = kube.select("Job", namespace, selector)
    names = [j["metadata"]["name"] for j in jobs]
    return jobs, {name: job_pods(kube, namespace, name) for name in names}
