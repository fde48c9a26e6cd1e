"""Ordering manifests by references: unknown references and cycles are named."""

from __future__ import annotations

from pathlib import Path

import yaml

from flywheel import cli, manifests, plan

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"


def test_quickstart_order_follows_the_chain() -> None:
    steps, errors = plan.order(manifests.load([QUICKSTART]).resources)
    assert errors == []
    keys = [s.key for s in steps]
    assert keys == [
        "Dataset/customer-events",
        "Dataset/churn-labels",
        "FeatureView/customer-features",
        "TrainingJob/churn-logistic",
        "TrainingJob/churn-mlp",
        "ModelDeployment/churn",
        "DriftMonitor/churn-drift",
    ]
    for i, step in enumerate(steps):
        assert all(keys.index(d) < i for d in step.depends_on)


def test_unknown_reference_is_named(tmp_path: Path) -> None:
    (tmp_path / "fv.yaml").write_text((QUICKSTART / "02-featureview.yaml").read_text())
    _, errors = plan.order(manifests.load([tmp_path]).resources)
    assert [(e.field, e.message) for e in errors] == [
        (
            "spec.source.datasetRef",
            "refers to Dataset/customer-events, which is not in the manifests",
        )
    ]


def test_cycle_is_reported_as_a_path(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((QUICKSTART / "03-trainingjobs.yaml").read_text()))
    tj = docs[0]
    tj["spec"]["evaluation"]["notWorseThanDeployed"] = {"deploymentRef": {"name": "churn"}}
    md = yaml.safe_load((QUICKSTART / "04-modeldeployment.yaml").read_text())
    md["spec"]["candidate"] = None
    md["spec"]["rollout"] = {"strategy": "none"}
    (tmp_path / "all.yaml").write_text(yaml.safe_dump_all([tj, md]))
    for name in ("01-datasets.yaml", "02-featureview.yaml"):
        (tmp_path / name).write_text((QUICKSTART / name).read_text())
    _, errors = plan.order(manifests.load([tmp_path]).resources)
    [error] = errors
    assert "reference cycle" in error.message
    assert "TrainingJob/churn-logistic -> ModelDeployment/churn" in error.message or (
        "ModelDeployment/churn -> TrainingJob/churn-logistic" in error.message
    )


def test_run_plan_only_prints_the_plan(capsys: object) -> None:
    assert cli.main(["run", "-f", str(QUICKSTART), "--plan-only"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.splitlines()[0].split() == ["STEP", "OBJECT", "DEPENDS", "ON", "ACTION"]
    assert "ModelDeployment/churn" in out and "canary" in out
