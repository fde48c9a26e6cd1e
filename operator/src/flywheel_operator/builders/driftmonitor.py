"""DriftMonitor -> a CronJob running the monitor; a retrain TrainingJob when drift says so."""

from __future__ import annotations

from typing import Any

from flywheel.api import DriftMonitor
from flywheel.api.common import API_VERSION
from flywheel.api.driftmonitor import DRIFT_EVENT_ANNOTATION, DriftEvent
from flywheel_operator import labels
from flywheel_operator.builders import jobs
from flywheel_operator.settings import Settings

MONITOR = "monitor"


def build(
    owner: dict[str, Any],
    resource: DriftMonitor,
    settings: Settings,
    inputs: dict[str, Any],
    manifests: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`inputs`: the statuses, `manifests`: the manifests of the deployment and the
    reference (and a TrainingJob reference's FeatureViews)."""
    return [
        jobs.runtime_cronjob(
            owner,
            labels.child_name(owner["metadata"]["name"], "monitor", limit=52),
            MONITOR,
            resource.spec.schedule,
            ["drift", "run"],
            settings,
            inputs,
            manifests,
        )
    ]


def retrain_job(
    owner: dict[str, Any], resource: DriftMonitor, number: int, cause: DriftEvent
) -> dict[str, Any]:
    """The n-th retrain: a TrainingJob from the template, owned by the monitor, naming
    the drift event that caused it (its model card and lineage will)."""
    retrain = resource.spec.action.retrain
    assert retrain is not None, "only called for action retrain"
    metadata = labels.child_metadata(
        owner, labels.child_name(owner["metadata"]["name"], f"retrain-{number}"), "retrain"
    )
    metadata["annotations"] = {DRIFT_EVENT_ANNOTATION: cause.to_annotation()}
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": metadata,
        "spec": retrain.template.spec.to_wire(),
    }
