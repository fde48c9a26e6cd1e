"""FeatureView -> a materialization Job per (spec, source version), a CronJob when scheduled."""

from __future__ import annotations

from typing import Any

from flywheel.api import FeatureView
from flywheel_operator import labels
from flywheel_operator.builders import jobs
from flywheel_operator.settings import Settings

MATERIALIZE = "materialize"


def build(
    owner: dict[str, Any],
    resource: FeatureView,
    settings: Settings,
    inputs: dict[str, Any],
    manifests: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`inputs`: {"Dataset/<name>": <its status>}, `manifests`: the source Dataset's
    manifest; a new source version re-materializes."""
    name = owner["metadata"]["name"]
    versions = {k: v.get("version") for k, v in inputs.items()}
    # A Job's template is immutable: whatever it carries is in its name.
    key = labels.content_hash(owner["spec"], versions, *([manifests] if manifests else []))
    args = ["features", "materialize"]
    children = [
        jobs.runtime_job(
            owner,
            labels.child_name(name, f"materialize-{key}"),
            MATERIALIZE,
            args,
            settings,
            inputs,
            manifests=manifests,
        )
    ]
    schedule = resource.spec.materialization.schedule
    if schedule is not None:
        children.append(
            jobs.runtime_cronjob(
                owner,
                labels.child_name(name, "materialize", limit=52),
                MATERIALIZE,
                schedule,
                [*args, "--incremental"],
                settings,
                inputs,
                manifests,
            )
        )
    return children
