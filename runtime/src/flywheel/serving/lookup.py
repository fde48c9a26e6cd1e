"""Entity lookups: a FeatureView's online store as the router's source of features.

Both routers open it here, from what the operator gives them: the view's manifest (its
spec, never its status, so a materialization restarts no router), the artifact root and
the namespace. The standalone router (`flywheel serve router --feature-view`) gets the
manifest in $FLYWHEEL_INPUT_MANIFESTS; the Ray Serve router in its application's args.
The store's Redis URL Secret or SQLite claim is mounted where the runtime looks for it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from flywheel import entrypoints


class FeatureLookupError(ValueError):
    """The FeatureView cannot be opened from what was given; the message says what to fix."""


class OnlineFeatures:
    """A FeatureView's online store as the router's feature lookup."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self.feature_names: list[str] = view.feature_names
        # Tells a reopened store from the same one (a router must keep it across configs).
        self.opened_at = time.time()

    def get(self, entities: Any) -> list[dict[str, Any] | None]:
        # Blocking I/O (SQLite, Redis): the router calls it on a worker thread.
        rows: list[dict[str, Any] | None] = self.view.get(entities)
        return rows


def open_view(view: Any, context: entrypoints.RunContext) -> OnlineFeatures:
    """The view's online store, with its join keys typed as the offline store has them."""
    from flywheel.features import runner

    return OnlineFeatures(runner.open_online_view(view, context))


def from_manifests(
    manifests: str | list[dict[str, Any]] | None,
    name: str,
    artifact_root: str,
    namespace: str = "default",
    what: str = "the FeatureView",
) -> OnlineFeatures:
    """Open the FeatureView `name` found among `manifests` (JSON text or the list itself).

    `what` names where the caller took the name from, for the error (a flag, a field).
    """
    from flywheel.api.featureview import FeatureView

    text = manifests if isinstance(manifests, str) or manifests is None else json.dumps(manifests)
    try:
        given = entrypoints.input_manifests(text)
    except ValueError as exc:
        raise FeatureLookupError(f"{what}: the manifests given are not valid: {exc}") from None
    found = [r for r in given if isinstance(r, FeatureView) and r.name == name]
    if not found:
        raise FeatureLookupError(f"{what} {name}: its manifest is not among the manifests given")
    view = found[0]
    try:
        root = entrypoints.local_directory(artifact_root)
    except ValueError as exc:
        raise FeatureLookupError(f"{what} {name}: {exc}") from None
    context = entrypoints.RunContext(
        artifact_root=root,
        base_dir=Path.cwd(),
        namespace=view.metadata.namespace or namespace,
        resources={r.key: r for r in given},
    )
    return open_view(view, context)
