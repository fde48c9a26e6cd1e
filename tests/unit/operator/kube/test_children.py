"""Applying children prunes owned children that are no longer desired, and only those."""

from __future__ import annotations

from typing import Any

from flywheel_operator import labels
from flywheel_operator.kube import cache, children

OWNER = {"kind": "Dataset", "metadata": {"name": "d", "namespace": "ml", "uid": "u1"}}


def child(name: str, owner_uid: str = "u1") -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": name, "ownerReferences": [{"uid": owner_uid}]}}


class Recorder:
    """The three calls `children.apply` makes, answered from a fixed listing."""

    cache: cache.Store | None = None

    def __init__(self, listed: list[dict[str, Any]]) -> None:
        self.listed = listed
        self.calls: list[tuple[str, ...]] = []

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", obj["metadata"]["name"]))
        assert obj["metadata"]["annotations"][labels.DESIRED_HASH]
        return {**obj, "status": {"active": 1}}

    def select(self, kind: str, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        self.calls.append(("select", kind, namespace, *sorted(selector.items())[0]))
        return self.listed if kind == "Job" else []

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.calls.append(("delete", kind, name))


def test_owned_children_not_desired_are_deleted() -> None:
    kube = Recorder([child("d-new"), child("d-old"), child("d-adopted", owner_uid="other")])
    applied = children.apply(kube, OWNER, [child("d-new")], ("Job", "CronJob"))  # type: ignore[arg-type]
    assert applied[0]["status"] == {"active": 1}
    assert kube.calls == [
        ("apply", "d-new"),
        ("select", "Job", "ml", "flywheel.dev/dataset", "d"),
        ("delete", "Job", "d-old"),
        ("select", "CronJob", "ml", "flywheel.dev/dataset", "d"),
    ]


def test_without_prune_nothing_is_listed() -> None:
    kube = Recorder([child("d-old")])
    children.apply(kube, OWNER, [child("d-new")], ("Job",), prune=False)  # type: ignore[arg-type]
    assert kube.calls == [("apply", "d-new")]


class Watched(Recorder):
    """As `Recorder`, with the children the watches hold."""

    def __init__(self, held: list[dict[str, Any]]) -> None:
        super().__init__([])
        self.store = cache.Store(["Job"])
        self.cache = self.store
        for obj in held:
            self.store.put(obj)

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.store.get(kind, namespace, name)


def stamped(desired: dict[str, Any], digest: str) -> dict[str, Any]:
    meta = {**desired["metadata"], "namespace": "ml", "resourceVersion": "7"}
    meta["annotations"] = {labels.DESIRED_HASH: digest}
    return {**desired, "metadata": meta, "status": {"succeeded": 1}}


def test_a_child_that_carries_the_desired_hash_is_not_applied_again() -> None:
    desired = child("d-new")
    desired["metadata"]["namespace"] = "ml"
    digest = labels.content_hash(desired, length=16)
    kube = Watched([stamped(desired, digest)])
    applied = children.apply(kube, OWNER, [desired], ("Job",), prune=False)  # type: ignore[arg-type]
    assert kube.calls == []
    assert applied[0]["status"] == {"succeeded": 1}  # as the watch last saw it


def test_a_child_whose_desired_content_changed_is_applied() -> None:
    desired = child("d-new")
    desired["metadata"]["namespace"] = "ml"
    kube = Watched([stamped(desired, "an-older-hash")])
    children.apply(kube, OWNER, [desired], ("Job",), prune=False)  # type: ignore[arg-type]
    assert kube.calls == [("apply", "d-new")]
