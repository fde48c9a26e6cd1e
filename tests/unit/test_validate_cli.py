"""`flywheel validate`: the quickstart passes, every broken manifest fails with its message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flywheel import cli, manifests
from tests.manifests import InvalidCase, invalid_cases

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def test_quickstart_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-f", str(QUICKSTART)]) == 0
    out = capsys.readouterr().out
    for kind in ("Dataset", "FeatureView", "TrainingJob", "ModelDeployment", "DriftMonitor"):
        assert f"{kind}/" in out


def test_there_are_enough_invalid_cases() -> None:
    assert len(invalid_cases()) >= 20


@pytest.mark.parametrize("case", invalid_cases(), ids=lambda c: c.path.stem)
def test_invalid_manifest_is_rejected_with_its_message(
    case: InvalidCase, capsys: pytest.CaptureFixture[str]
) -> None:
    if case.valid_per_document:
        for doc in yaml.safe_load_all(case.path.read_text()):
            resource, errors = manifests.parse(doc)
            assert resource is not None, errors
        return
    assert cli.main(["validate", "-f", str(case.path)]) == 1
    err = capsys.readouterr().err
    assert case.expect in err, f"expected {case.expect!r} in:\n{err}"
    # Every error names the file and the object it is about.
    assert case.path.name in err


def test_errors_name_document_object_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "two.yaml"
    bad.write_text(
        (QUICKSTART / "04-modeldeployment.yaml").read_text()
        + "---\n"
        + (ROOT / "tests/manifests/invalid/08-bandit-floor.yaml").read_text()
    )
    loaded = manifests.load([bad])
    [error] = loaded.errors
    assert error.source == f"{bad}#2"
    assert error.obj == "ModelDeployment/churn"
    assert error.field == "spec.rollout.bandit.floor"
    assert "less than or equal to 0.5" in error.message


def test_unknown_field_lists_the_allowed_ones() -> None:
    doc = yaml.safe_load((ROOT / "tests/manifests/invalid/01-unknown-field.yaml").read_text())
    _, [error] = manifests.parse(doc)
    assert "allowed here: backend, stable, candidate" in error.message


def test_duplicate_objects_are_reported(tmp_path: Path) -> None:
    text = (QUICKSTART / "04-modeldeployment.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text + "---\n" + text)
    loaded = manifests.load([tmp_path])
    assert [e.message for e in loaded.errors] == ["defined twice; names must be unique per kind"]


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    assert manifests.load([tmp_path]).errors[0].message.startswith("no manifest files")


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: [Dataset\n")
    [error] = manifests.load([tmp_path]).errors
    assert "broken.yaml" in str(error) and "not valid YAML" in error.message
