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
