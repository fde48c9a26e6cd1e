"""`render`: the builders' output for the manifests of a directory."""

from __future__ import annotations

from pathlib import Path

from flywheel_operator import render
from flywheel_operator.settings import Settings
from tests.unit.operator.status.helpers import T0

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"


def test_the_quickstart_renders_every_kind_s_children() -> None:
    objects, errors = render.render([str(QUICKSTART)], "ml", Settings(), T0)
    assert errors == []
    kinds = {o["kind"] for o in objects}
    assert {"Job", "RayJob"} <= kinds and ({"RayService"} & kinds or {"Deployment"} & kinds)
    assert {o["metadata"]["namespace"] for o in objects} == {"ml"}


def test_a_bad_manifest_is_an_error_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "md.yaml").write_text(
        "apiVersion: flywheel.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\n"
        "spec: {stable: {modelName: m, version: v1}, backend: nope}\n"
    )
    objects, errors = render.render([str(tmp_path)], "ml", Settings(), T0)
    assert objects == [] and len(errors) == 1 and "spec.backend" in errors[0]


def test_a_deployment_that_looks_entities_up_renders_with_its_feature_view(
    tmp_path: Path,
) -> None:
    (tmp_path / "fv.yaml").write_text((QUICKSTART / "02-featureview.yaml").read_text())
    (tmp_path / "md.yaml").write_text(
        "apiVersion: flywheel.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: churn}\n"
        "spec: {backend: triton, stable: {modelName: churn, version: v1},\n"
        "       featureViewRef: {name: customer-features}}\n"
    )
    objects, errors = render.render([str(tmp_path)], "ml", Settings(), T0)
    assert errors == []
    [router] = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "churn-router"
    ]
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--feature-view") + 1] == "customer-features"
