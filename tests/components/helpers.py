"""Building Datasets and contexts for runtime tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel.api.dataset import Dataset
from flywheel.entrypoints import RunContext


def dataset(name: str, spec: dict[str, Any]) -> Dataset:
    return Dataset.model_validate(
        {
            "apiVersion": "flywheel.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def context(tmp_path: Path) -> RunContext:
    return RunContext(artifact_root=tmp_path / "artifacts", base_dir=tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
