"""Dataset -> an ingest Job per spec (and a refresh CronJob when scheduled)."""

from __future__ import annotations

from typing import Any

from flywheel.api import Dataset
from flywheel_operator import labels
from flywheel_operator.builders import jobs
from flywheel_operator.settings import Settings

INGEST = "ingest"


def ingest_job_name(owner: dict[str, Any]) -> str:
    # Keyed by the spec: a changed contract or policy means a new ingest.
    return labels.child_name(
        owner["metadata"]["name"], f"ingest-{labels.content_hash(owner['spec'])}"
    )


def build(owner: dict[str, Any], resource: Dataset, settings: Settings) -> list[dict[str, Any]]:
    children = [
        jobs.runtime_job(owner, ingest_job_name(owner), INGEST, ["dataset", "ingest"], settings)
    ]
    if resource.spec.refresh is not None:
        children.append(
            jobs.runtime_cronjob(
                owner,
                labels.child_name(owner["metadata"]["name"], "refresh", limit=52),
                INGEST,
                resource.spec.refresh.schedule,
                ["dataset", "ingest"],
                settings,
            )
        )
    return children
