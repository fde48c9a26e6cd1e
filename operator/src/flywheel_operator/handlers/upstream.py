"""Looking up the objects a resource refers to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flywheel_operator.kube.client import Kube
from flywheel_operator.status import dependencies


def look_up(
    kube: Kube,
    namespace: str,
    refs: Iterable[tuple[str, str]],
    ready: dependencies.Ready,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The referenced objects that are ready (keyed "Kind/name"), and what is waited for."""
    wanted = list(dict.fromkeys(refs))
    found = {(kind, name): kube.get(kind, namespace, name) for kind, name in wanted}
    return dependencies.sort_out(wanted, found, ready)


def deployment_training_jobs(objects: dict[str, dict[str, Any]]) -> list[str]:
    """The TrainingJobs the ModelDeployments among `objects` serve, by name.

    >>> deployment_training_jobs({"ModelDeployment/m": {"spec": {
    ...     "stable": {"trainingJobRef": {"name": "a"}},
    ...     "candidate": {"modelName": "churn", "alias": "candidate"}}}})
    ['a']
    """
    return [
        ref["trainingJobRef"]["name"]
        for key, obj in sorted(objects.items())
        if key.startswith("ModelDeployment/")
        for ref in ((obj.get("spec") or {}).get(f) for f in ("stable", "candidate"))
        if isinstance(ref, dict) and isinstance(ref.get("trainingJobRef"), dict)
    ]


def feature_views(objects: dict[str, dict[str, Any]]) -> list[str]:
    """The FeatureViews the TrainingJobs among `objects` train on, by name.

    >>> feature_views({"TrainingJob/t": {"spec": {"featureViewRefs": [{"name": "f"}]}},
    ...                "Dataset/d": {"spec": {}}})
    ['f']
    """
    return [
        ref["name"]
        for key, obj in sorted(objects.items())
        if key.startswith("TrainingJob/")
        for ref in (obj.get("spec") or {}).get("featureViewRefs", [])
    ]
