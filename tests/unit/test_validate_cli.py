"""`flywheel validate`: the quickstart passes, every broken manifest fails with its message."""

from __future__ import annotations

import os
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


# --- read as kubectl reads, validated as strictly as the API server ---------------------

SMALL = """apiVersion: flywheel.dev/v1alpha1
kind: Dataset
metadata:
  name: events
spec:
  source:
    uri: s3://bucket/events.parquet
    format: parquet
  schema:
    columns:
    - name: id
      type: string
    - name: amount
      type: float64
"""


def validate(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "m.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    code = cli.main(["validate", "-f", str(path)])
    out = capsys.readouterr()
    assert code == (0 if not out.err else 1), out
    return out.err


def test_small_manifest_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(tmp_path, SMALL, capsys) == ""


@pytest.mark.parametrize("text", ["", "# nothing\n", "---\n# x\n---\n", "~\n"])
def test_no_objects_is_an_error(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "no objects" in validate(tmp_path, text, capsys)


def test_yaml11_boolean_column_name_says_how_to_quote_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = validate(tmp_path, SMALL.replace("name: amount", "name: n"), capsys)
    assert "spec.schema.columns[1].name" in err and "line 13" in err
    assert "kubectl reads the unquoted 'n' as the boolean false" in err
    assert 'quote it: "n"' in err


def test_a_number_out_of_range_is_not_told_to_be_quoted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    invalid = Path(__file__).parents[1] / "manifests" / "invalid"
    case = invalid / "67-quantization-drop-above-one.yaml"
    err = validate(tmp_path, case.read_text(), capsys)
    assert "spec.quantization.maxMetricDrop" in err and "less than or equal to 1" in err
    assert "kubectl reads" not in err and "quote it" not in err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("type: string", "type: string\n      unique: 'true'"), "write true or false without"),
        (("type: string", "type: string\n      unique: no"), None),
        (("type: float64", "type: float64\n      min: '0'"), "write it without quotes"),
        (("type: float64", "type: float64\n      min: .nan"), "not a number JSON can carry"),
        (
            ("format: parquet", "format: parquet\n    credentials_secret_ref: {}"),
            "write credentialsSecretRef",
        ),
        (("kind: Dataset", "kind: [Dataset]"), "kind is a list, not text"),
        (("name: events", "name: events\n  foo: bar"), "metadata.foo: unknown field"),
        (("name: events", "name: events\n  labels: {a: 'b c'}"), "label value 'b c' is not valid"),
        (("name: events", "name: events\n  finalizers: [1]"), "expected a list of names"),
        (("name: events", "name: events\n  uid: abc\n  resourceVersion: '7'"), None),
        (("s3://bucket", "s3://AKIA:s3cr3t@bucket"), "credentialsSecretRef"),
        (("format: parquet", "format: csv\n    csv: {delimiter: '\"'}"), "delimiter and quoteChar"),
        (("type: string", "type: string\n      regex: '(a)\\1'"), "not valid RE2 syntax"),
        (("type: string", "type: timestamp\n      timestampFormat: yyyy-mm-dd"), "no % directive"),
    ],
)
def test_strict_types_and_fields(
    tmp_path: Path,
    change: tuple[str, str],
    expected: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = validate(tmp_path, SMALL.replace(*change, 1), capsys)
    if expected is None:
        assert err == ""
    else:
        assert expected in err
        assert "m.yaml" in err
    assert "s3cr3t" not in err


def test_int64_overflow_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (QUICKSTART / "03-trainingjobs.yaml").read_text().replace("epochs: 20", "epochs: 1e19")
    for name in ("01-datasets.yaml", "02-featureview.yaml"):
        (tmp_path / name).write_text((QUICKSTART / name).read_text())
    (tmp_path / "tj.yaml").write_text(text)
    assert cli.main(["validate", "-f", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "spec.hyperparameters.epochs: 10000000000000000000 is outside the int64 range" in err


def test_cross_object_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = SMALL.replace("name: events", "name: other")
    with_dest = SMALL.replace("format: parquet", "format: parquet\n  destination: s3://b/x")
    text = (
        with_dest
        + "---\n"
        + with_dest.replace("name: events", "name: other").replace("s3://b/x", "s3://b/x/y")
    )
    err = validate(tmp_path, text, capsys)
    assert (
        "(Dataset/other): spec.destination: this store root overlaps the one of Dataset/events"
        in err
    )
    inside = SMALL.replace("s3://bucket/events.parquet", "./data/").replace(
        "format: parquet", "format: parquet\n  destination: ./data/out"
    )
    assert "the destination is inside the source" in validate(
        tmp_path, inside + "---\n" + second, capsys
    )


def test_retrain_template_references_must_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = [d for p in sorted(QUICKSTART.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    dm = next(d for d in docs if d["kind"] == "DriftMonitor")
    dm["spec"]["action"] = {
        "type": "retrain",
        "retrain": {
            "template": {
                "spec": {
                    "featureViewRefs": [{"name": "customer-features"}],
                    "label": {
                        "datasetRef": {"name": "gone"},
                        "column": "churned",
                        "entityColumns": ["customer_id"],
                        "timestampColumn": "label_time",
                    },
                    "output": {"modelName": "churn"},
                }
            }
        },
    }
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all(docs))
    assert cli.main(["validate", "-f", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        "spec.action.retrain.template.spec.label.datasetRef: refers to Dataset/gone, "
        "which is not in the manifests"
    ) in err


def test_a_fifo_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    assert cli.main(["validate", "-f", str(fifo)]) == 1
    assert "not a regular file" in capsys.readouterr().err


def test_errors_name_the_feature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (QUICKSTART / "02-featureview.yaml").read_text()
    docs = list(yaml.safe_load_all(text))
    docs[0]["spec"]["features"][1]["aggregation"] = {
        "column": "x",
        "function": "median",
        "window": "1d",
    }
    (tmp_path / "fv.yaml").write_text(yaml.safe_dump_all(docs))
    assert cli.main(["validate", "-f", str(tmp_path / "fv.yaml")]) == 1
    name = docs[0]["spec"]["features"][1]["name"]
    assert f"in feature {name!r}" in capsys.readouterr().err


def test_norway_is_a_boolean_to_kubectl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (QUICKSTART / "01-datasets.yaml").read_text().replace("IN, BR]", "IN, NO]")
    (tmp_path / "ds.yaml").write_text(text)
    assert cli.main(["validate", "-f", str(tmp_path)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "allowedValues[5]: expected an integer or text, got the boolean false" in line
    assert "kubectl reads the unquoted 'NO' as the boolean false" in line
    assert 'quote it: "NO"' in line and "in column 'country'" in line


def test_a_huge_file_is_refused_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB that are never read
    assert cli.main(["validate", "-f", str(huge)]) == 1
    assert "over the 4194304 allowed" in capsys.readouterr().err
