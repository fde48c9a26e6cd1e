"""Writing an owner's children: apply the desired ones, delete owned ones no longer desired."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flywheel_operator import labels
from flywheel_operator.kube.client import Kube


def apply(
    kube: Kube,
    owner: dict[str, Any],
    children: list[dict[str, Any]],
    kinds: Iterable[str],
    prune: bool = True,
) -> list[dict[str, Any]]:
    """Apply the desired children, then delete owned children of `kinds` not desired.

    Returns the children as applied, with their current status.
    """
    applied = [_apply(kube, child) for child in children]
    if not prune:
        return applied
    desired = {(c["kind"], c["metadata"]["name"]) for c in children}
    namespace = owner["metadata"]["namespace"]
    selector = {labels.owner_label(owner["kind"]): owner["metadata"]["name"]}
    uid = owner["metadata"]["uid"]
    for kind in kinds:
        for item in kube.select(kind, namespace, selector):
            name = item["metadata"]["name"]
            if _owned_by(item, uid) and (kind, name) not in desired:
                kube.delete(kind, namespace, name)
    return applied


def _apply(kube: Kube, child: dict[str, Any]) -> dict[str, Any]:
    """Apply `child` stamped with the hash of its content, unless the watches show it
    already carries that hash (applied before, by this or an earlier operator)."""
    digest = labels.content_hash(child, length=16)
    meta = child["metadata"]
    annotations = {**(meta.get("annotations") or {}), labels.DESIRED_HASH: digest}
    stamped = {**child, "metadata": {**meta, "annotations": annotations}}
    if kube.cache is not None and kube.cache.serves(child["kind"]):
        seen = kube.get(child["kind"], meta.get("namespace"), meta["name"])
        if seen is not None and _carries(seen, digest):
            return seen
    return kube.apply(stamped)


def _carries(seen: dict[str, Any], digest: str) -> bool:
    meta = seen["metadata"]
    stamp = (meta.get("annotations") or {}).get(labels.DESIRED_HASH)
    return stamp == digest and not meta.get("deletionTimestamp")


def _owned_by(item: dict[str, Any], uid: str) -> bool:
    return any(r.get("uid") == uid for r in item["metadata"].get("ownerReferences", []))
