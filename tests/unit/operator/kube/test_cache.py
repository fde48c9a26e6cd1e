"""The store of watched objects: newer versions win, labels select, readers are recorded."""

from __future__ import annotations

from typing import Any

from flywheel_operator.kube import cache


def obj(kind: str, name: str, version: str, **labels: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ml", "resourceVersion": version, "labels": labels}
    return {"kind": kind, "metadata": meta}


def test_an_older_or_equal_version_does_not_replace_a_newer_one() -> None:
    store = cache.Store(["Job"])
    assert store.put(obj("Job", "j", "12"))
    assert not store.put(obj("Job", "j", "12"))  # our own write, then its watch event
    assert not store.put(obj("Job", "j", "9"))  # a late event
    assert store.put(obj("Job", "j", "13"))
    assert store.get("Job", "ml", "j") == obj("Job", "j", "13")


def test_kinds_not_served_are_not_held() -> None:
    store = cache.Store(["Job"])
    assert not store.put(obj("Event", "e", "1"))
    assert not store.serves("Event")


def test_select_by_labels_follows_relabelling_and_removal() -> None:
    store = cache.Store(["Job"])
    store.put(obj("Job", "a", "1", owner="d", app="x"))
    store.put(obj("Job", "b", "2", owner="d", app="y"))
    store.put(obj("Job", "c", "3", owner="e"))
    assert [j["metadata"]["name"] for j in store.select("Job", "ml", {"owner": "d"})] == ["a", "b"]
    assert [
        j["metadata"]["name"] for j in store.select("Job", "ml", {"owner": "d", "app": "y"})
    ] == ["b"]
    store.put(obj("Job", "b", "4", owner="e"))
    store.remove("Job", "ml", "a")
    assert store.select("Job", "ml", {"owner": "d"}) == []
    assert [j["metadata"]["name"] for j in store.select("Job", "ml", {})] == ["b", "c"]
    assert store.select("Job", "other", {}) == []


def test_what_a_reconcile_reads_of_another_owner_makes_it_a_dependent() -> None:
    store = cache.Store(["Dataset", "FeatureView", "Job"], tracked=["Dataset", "FeatureView"])
    with cache.reading_for(("FeatureView", "ml", "fv")):
        store.get("Dataset", "ml", "d")  # not there yet: still a dependent
        store.get("FeatureView", "ml", "fv")  # itself
        store.get("Job", "ml", "j")  # not tracked
    store.get("Dataset", "ml", "other")  # outside any reconcile
    assert store.dependents(("Dataset", "ml", "d")) == [("FeatureView", "ml", "fv")]
    assert store.dependents(("FeatureView", "ml", "fv")) == []
    assert store.dependents(("Job", "ml", "j")) == []
    assert store.dependents(("Dataset", "ml", "other")) == []


def test_a_change_of_bookkeeping_only_wakes_nobody() -> None:
    """The Job controller drops its tracking finalizer from every Pod it counted, and
    each write moves resourceVersion and managedFields: nothing a reconcile reads."""
    woken: list[str] = []
    store = cache.Store(["Pod"], on_change=lambda o, written: woken.append(o["metadata"]["name"]))
    pod = obj("Pod", "p", "1", owner="d")
    pod["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]
    pod["status"] = {"phase": "Succeeded"}
    assert store.put(pod) and woken == ["p"]
    bookkeeping = {**pod, "metadata": {**pod["metadata"], "resourceVersion": "2"}}
    del bookkeeping["metadata"]["finalizers"]
    bookkeeping["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    assert store.put(bookkeeping)  # held: the newest version
    assert store.get("Pod", "ml", "p") == bookkeeping
    assert woken == ["p"]
    relabelled = obj("Pod", "p", "3", owner="e")
    relabelled["status"] = {"phase": "Succeeded"}
    assert store.put(relabelled) and woken == ["p", "p"]
    finished = {**relabelled, "metadata": {**relabelled["metadata"], "resourceVersion": "4"}}
    finished["status"] = {"phase": "Failed"}
    assert store.put(finished) and woken == ["p", "p", "p"]
