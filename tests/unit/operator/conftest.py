"""Owners as the API server returns them: the quickstart objects with uid and namespace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel import api
from flywheel.api.common import resource_key
from flywheel_operator.settings import Settings

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart"


def owners() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(QUICKSTART.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            doc["metadata"].update(namespace="ml", uid=f"uid-{path.stem}-{i}", generation=1)
            out[resource_key(doc["kind"], doc["metadata"]["name"])] = doc
    return out


@pytest.fixture
def owner() -> dict[str, dict[str, Any]]:
    return owners()


def model(body: dict[str, Any]) -> Any:
    return api.KINDS[body["kind"]].model_validate(
        {k: v for k, v in body.items() if k != "metadata"}
        | {"metadata": {"name": body["metadata"]["name"]}}
    )


@pytest.fixture
def settings() -> Settings:
    return Settings(runtime_image="flywheel/runtime:test", artifact_root="s3://ml/flywheel")
