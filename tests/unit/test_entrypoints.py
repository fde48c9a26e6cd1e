"""The Job side of the runner contract: what a runtime Pod reads from its environment."""

from __future__ import annotations

import argparse
import json

import pytest

from flywheel import entrypoints

DATASET = {
    "apiVersion": "flywheel.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "events", "namespace": "ml"},
    "spec": {"source": {"uri": "./data/events.csv", "format": "csv"}},
}


def test_input_manifests_become_resources_keyed_by_kind_and_name() -> None:
    [found] = entrypoints.input_manifests(json.dumps([DATASET]))
    assert found.key == "Dataset/events"
    assert entrypoints.input_manifests(None) == [] == entrypoints.input_manifests("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"Dataset/events": {}}', "expected a JSON list of manifests"),
        ("[1", "JSON"),
        (json.dumps([{**DATASET, "spec": {"source": {"uri": 3}}}]), r"item 0.*spec\.source"),
    ],
)
def test_bad_input_manifests_name_the_item_and_field(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        entrypoints.input_manifests(text)


def test_a_command_names_the_variable_it_cannot_read(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = {**DATASET, "kind": "Dataset"}
    monkeypatch.setenv(entrypoints.MANIFEST_ENV, json.dumps(manifest))
    monkeypatch.setenv(entrypoints.INPUT_MANIFESTS_ENV, "{}")
    args = argparse.Namespace(filename=None, name=None, namespace="ml", artifact_root="/tmp/a")
    with pytest.raises(SystemExit, match=r"\$FLYWHEEL_INPUT_MANIFESTS: expected a JSON list"):
        entrypoints.select_object(args, "Dataset")


def test_the_object_itself_never_comes_from_the_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(entrypoints.MANIFEST_ENV, json.dumps({**DATASET, "metadata": {"name": "a"}}))
    monkeypatch.setenv(entrypoints.INPUT_MANIFESTS_ENV, json.dumps([DATASET]))
    args = argparse.Namespace(filename=None, name=None, namespace="ml", artifact_root="/tmp/a")
    resource, context = entrypoints.select_object(args, "Dataset")
    assert resource.name == "a"
    assert set(context.resources) == {"Dataset/a", "Dataset/events"}
