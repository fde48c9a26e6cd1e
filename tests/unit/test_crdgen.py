"""The generated CRDs are structural, complete and match the committed files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import api
from flywheel.api import crdgen

ROOT = Path(__file__).resolve().parents[2]
CRDS = crdgen.all_crds()


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.get("properties", {}).items():
            yield from walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("name", sorted(CRDS))
def test_schema_is_structural(name: str) -> None:
    schema = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "const", "title", "$defs"):
            assert banned not in node, f"{name}{path} has {banned}"
        assert (
            "type" in node
            or node.get("x-kubernetes-int-or-string")
            or node.get("x-kubernetes-preserve-unknown-fields")
        ), f"{name}{path} has no type"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{name}{path}: {bound} must be boolean"


@pytest.mark.parametrize("name", sorted(CRDS))
def test_committed_files_match_the_models(name: str) -> None:
    text = crdgen.render(CRDS[name])
    for folder in ("crds", "charts/flywheel/crds"):
        assert (ROOT / folder / name).read_text() == text, f"run `make crds` ({folder}/{name})"


def test_names_status_and_printer_columns() -> None:
    md = CRDS["flywheel.dev_modeldeployments.yaml"]["spec"]
    assert md["names"]["shortNames"] == ["md"]
    assert md["names"]["categories"] == ["flywheel"]
    version = md["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Stable", "Candidate", "Strategy", "Traffic", "Step", "Age"]
    short = {c["spec"]["names"]["kind"]: c["spec"]["names"]["shortNames"] for c in CRDS.values()}
    assert short == {
        "Dataset": ["ds", "dset"],
        "FeatureView": ["fv"],
        "TrainingJob": ["tj"],
        "ModelDeployment": ["md"],
        "DriftMonitor": ["dm"],
    }


def spec_schema(kind: str) -> dict[str, Any]:
    model = api.KINDS[kind]
    crd = CRDS[f"flywheel.dev_{model.plural}.yaml"]
    props: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    spec: dict[str, Any] = props["spec"]
    return spec


def test_cel_rules_are_carried_to_the_schema() -> None:
    md = spec_schema("ModelDeployment")
    rules = [r["message"] for r in md["x-kubernetes-validations"]]
    assert "a candidate is required when rollout.strategy is not none" in rules
    canary = md["properties"]["rollout"]["properties"]["canary"]
    assert "strictly increasing" in canary["x-kubernetes-validations"][0]["message"]
    ds = spec_schema("Dataset")
    assert ds["properties"]["source"]["x-kubernetes-validations"][-1]["rule"] == "self == oldSelf"


def test_defaults_from_factories_are_written_out() -> None:
    md = spec_schema("ModelDeployment")
    assert md["properties"]["rollout"]["default"] == {"strategy": "none"}
    assert md["properties"]["autoscaling"]["default"] == {
        "minReplicas": 1,
        "maxReplicas": 1,
        "targetOngoingRequests": 2.0,
    }


def test_features_are_a_list_map_so_duplicates_are_rejected() -> None:
    features = spec_schema("FeatureView")["properties"]["features"]
    assert features["x-kubernetes-list-type"] == "map"
    assert features["x-kubernetes-list-map-keys"] == ["name"]


def test_free_form_maps_are_marked() -> None:
    params = spec_schema("TrainingJob")["properties"]["model"]["properties"]["params"]
    assert params["x-kubernetes-preserve-unknown-fields"] is True


def test_rendered_yaml_has_no_anchors() -> None:
    for crd in CRDS.values():
        text = crdgen.render(crd)
        assert "&id" not in text and "*id" not in text
        assert yaml.safe_load(text) == crd
