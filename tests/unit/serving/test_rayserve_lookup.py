"""The Ray Serve router's entity lookup: what its application args carry, and the errors
a wrong one gets before any store is opened."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flywheel.serving import lookup, rayserve

QUICKSTART = Path(__file__).parents[3] / "examples" / "quickstart" / "02-featureview.yaml"
VIEW = yaml.safe_load(QUICKSTART.read_text())
VIEW["metadata"] = {"name": "customer", "namespace": "ml"}


def test_the_view_rides_in_the_router_args_never_in_its_user_config() -> None:
    config = rayserve.serve_config(
        "churn",
        [{"model": "churn", "version": "v1", "uri": "/m/v1"}],
        {"stable": "v1", "traffic": {"v1": 100}},
        feature_view=VIEW,
        artifact_root="pvc://artifacts/",
    )
    router = config["applications"][-1]
    assert router["args"] == {
        "deployment": "churn",
        "featureView": VIEW,
        "artifactRoot": "pvc://artifacts/",
    }
    assert "featureView" not in router["deployments"][0]["user_config"]
    plain = rayserve.serve_config("churn", [], {"stable": "v1", "traffic": {"v1": 100}})
    assert plain["applications"][-1]["args"] == {"deployment": "churn"}


def test_a_view_without_its_artifact_root_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="feature_view needs the artifact_root"):
        rayserve.router_args("churn", VIEW)


def test_no_view_means_no_lookup() -> None:
    assert rayserve.open_lookup({}) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"featureView": "customer", "artifactRoot": "/a"}, "featureView must be the Feature"),
        ({"featureView": VIEW}, "artifactRoot is required with featureView"),
        (
            {"featureView": {**VIEW, "kind": "Dataset"}, "artifactRoot": "/a"},
            "router args: featureView: the manifests given are not valid",
        ),
        (
            {"featureView": {**VIEW, "spec": {"ttl": 3}}, "artifactRoot": "/a"},
            "router args: featureView: the manifests given are not valid",
        ),
        (
            {"featureView": VIEW, "artifactRoot": "s3://bucket/root"},
            "must be a local path, file:// or pvc://",
        ),
    ],
)
def test_wrong_lookup_args_name_the_field(args: dict[str, object], expected: str) -> None:
    with pytest.raises(lookup.FeatureLookupError, match=expected):
        rayserve.open_lookup(args)
