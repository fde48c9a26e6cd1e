"""Names, labels and owner references every child carries."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flywheel.api.common import GROUP

FIELD_MANAGER = "flywheel-operator"
MANAGED_BY = "flywheel-operator"
PART_OF = "flywheel"
# On every child: the hash of its desired content as last applied. A child that carries
# the hash of what is desired now is not applied again.
DESIRED_HASH = f"{GROUP}/desired-hash"

# A Job that moves a registry alias (`flywheel registry alias set`): its component, and
# its annotations, which say what it sets; the operator reads them back once it completed.
ALIAS_COMPONENT = "alias"
MODEL_ANNOTATION = f"{GROUP}/model"
ALIAS_ANNOTATION = f"{GROUP}/alias"
VERSION_ANNOTATION = f"{GROUP}/version"
ARTIFACT_ANNOTATION = f"{GROUP}/artifact-uri"


def owner_label(kind: str) -> str:
    """The label naming the owner: `flywheel.dev/dataset: <name>`."""
    return f"{GROUP}/{kind.lower()}"


def common_labels(owner: dict[str, Any], component: str) -> dict[str, str]:
    kind, name = owner["kind"], owner["metadata"]["name"]
    return {
        "app.kubernetes.io/name": "flywheel",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        owner_label(kind): name,
    }


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """The controller reference that lets the garbage collector clean up children."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    owner: dict[str, Any], name: str, component: str, extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": {**common_labels(owner, component), **(extra_labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }


def child_name(owner_name: str, suffix: str, limit: int = 63) -> str:
    """`<owner>-<suffix>`, shortened with a hash when it would pass `limit` characters.

    Job names end up in a label value (at most 63 characters); CronJob names get 11
    characters appended for their Jobs, so callers pass limit=52 for them.
    """
    name = f"{owner_name}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-.')}-{digest}"


def content_hash(*parts: Any, length: int = 8) -> str:
    """A short, stable hash of JSON-able parts: children keyed by what they run."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
