"""Applying children prunes owned children that are no longer desired, and only those."""

from __future__ import annotations

from typing import Any

from flywheel_operator.kube import children

OWNER = {"kind": "Dataset", "metadata": {"name": "d", "namespace": "ml", "uid": "u1"}}


def child(name: str, owner_uid: str = "u1") -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": name, "ownerReferences": [{"uid": owner_uid}]}}


class Recorder:
    """The three calls `children.apply` makes, answered from a fixed listing."""

    def __init__(self, listed: list[dict[str, Any]]) -> None:
        self.listed = listed
        self.calls: list[tuple[str, ...]] = []

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", obj["metadata"]["name"]))
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
