"""Every child carries the owner reference, the common labels and a short name."""

from __future__ import annotations

from flywheel_operator import labels
from flywheel_operator.settings import Settings
from tests.unit.operator.children import all_children


def test_children_carry_owner_reference_and_labels(settings: Settings) -> None:
    for child in all_children(settings):
        meta = child["metadata"]
        [ref] = meta["ownerReferences"]
        assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
        assert ref["uid"].startswith("uid-")
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "flywheel-operator"
        assert meta["namespace"] == "ml"
        assert len(meta["name"]) <= 63


def test_long_names_are_shortened_with_a_hash() -> None:
    name = labels.child_name("x" * 60, "materialize", limit=52)
    assert len(name) == 52 and name.startswith("x" * 43)
    assert name == labels.child_name("x" * 60, "materialize", limit=52)
    assert labels.child_name("churn", "serve") == "churn-serve"


def test_owner_label_uses_the_api_group() -> None:
    assert labels.owner_label("Dataset") == "flywheel.dev/dataset"
