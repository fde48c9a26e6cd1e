"""Every bad input fails the job with a reason and a message, and registers nothing.

All of these fail before Ray is started; a non-finite loss (which needs training) is in
test_train_on_ray.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flywheel.data import runner as datasets
from flywheel.entrypoints import RunContext
from flywheel.training import runner
from tests.training import world

LABEL_COLUMNS: list[dict[str, Any]] = [
    {"name": "cust", "type": "string", "nullable": False},
    {"name": "label_time", "type": "timestamp", "nullable": False},
    {"name": "churned", "type": "int64"},
]


def with_labels(context: RunContext, tmp_path: Path, name: str, rows: list[str]) -> RunContext:
    (tmp_path / f"{name}.csv").write_text("cust,label_time,churned\n" + "\n".join(rows) + "\n")
    ds = world.dataset(name, f"./{name}.csv", "label_time", LABEL_COLUMNS)
    status = datasets.run_dataset(ds, context.replace(base_dir=tmp_path))
    assert status.phase == "Ready", status.conditions
    return context.replace(
        resources={**context.resources, ds.key: ds},
        statuses={**context.statuses, ds.key: status},
    )


def label_rows(count: int, value: Any = None, prefix: str = "C") -> list[str]:
    return [
        f"{prefix}{i:06d},2026-01-22 10:00:00,{value if value is not None else i % 2}"
        for i in range(count)
    ]


def fails(job: Any, context: RunContext, reason: str, *words: str) -> None:
    status = runner.run_trainingjob(job, context)
    assert status.phase == "Failed"
    [condition] = status.conditions
    assert (condition.reason, condition.status) == (reason, "False"), condition.message
    for word in words:
        assert word in condition.message
    assert status.model_version is None and status.artifact_uri is None
    assert not (context.artifact_root / "models" / job.spec.output.model_name).exists()


def bad(**spec: Any) -> Any:
    return world.job(output={"modelName": "bad"}, **spec)


def test_an_import_path_that_does_not_import(world_context: RunContext) -> None:
    model = {"type": "custom", "importPath": "no_such_package.models:build"}
    fails(bad(model=model), world_context, "ModelImportFailed", "no_such_package.models")


def test_a_module_whose_input_size_does_not_match(world_context: RunContext) -> None:
    model = {"type": "custom", "importPath": "tests.training.custom_models:fixed_width"}
    fails(bad(model=model), world_context, "ModelInputMismatch", "feature inputs")


def test_a_missing_label_column(world_context: RunContext) -> None:
    label = {"column": "cancelled"}
    fails(bad(label=label), world_context, "LabelColumnMissing", "'cancelled'", "churned")


def test_a_constant_label_column(world_context: RunContext, tmp_path: Path) -> None:
    context = with_labels(world_context, tmp_path, "constant", label_rows(200, value=0))
    job = bad(label={"datasetRef": {"name": "constant"}})
    fails(job, context, "ConstantLabel", "single value 0")


def test_an_empty_training_window(world_context: RunContext, tmp_path: Path) -> None:
    context = with_labels(world_context, tmp_path, "few", label_rows(2))
    fails(bad(label={"datasetRef": {"name": "few"}}), context, "EmptyTrainingWindow", "too few")


def test_labels_with_no_rows_joinable_to_the_features(
    world_context: RunContext, tmp_path: Path
) -> None:
    context = with_labels(world_context, tmp_path, "strangers", label_rows(50, prefix="X"))
    job = bad(label={"datasetRef": {"name": "strangers"}})
    fails(job, context, "NoJoinableRows", "none of the 50 label rows")


def test_a_slice_column_that_is_not_in_the_training_set(world_context: RunContext) -> None:
    job = bad(evaluation={"sliceColumns": ["country"]})
    fails(job, world_context, "SliceColumnMissing", "['country']")


@pytest.mark.parametrize("params", [{"layers": 2}, {"hiddenUnits": [4], "depth": 1}])
def test_unknown_model_parameters(world_context: RunContext, params: dict[str, Any]) -> None:
    fails(bad(model={"type": "mlp", "params": params}), world_context, "InvalidModelParams")
