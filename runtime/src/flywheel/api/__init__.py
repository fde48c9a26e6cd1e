"""The flywheel.dev/v1alpha1 contract: pydantic models of the five kinds.

These models are the single source of truth: the CRDs in `crds/` are generated from
them, `flywheel validate` checks manifests with them, and the operator and the runtime
read specs through them. Importing this package needs only pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flywheel.api.common import API_VERSION, GROUP, VERSION, Resource

if TYPE_CHECKING:
    from flywheel.api.dataset import Dataset
    from flywheel.api.driftmonitor import DriftMonitor
    from flywheel.api.featureview import FeatureView
    from flywheel.api.modeldeployment import ModelDeployment
    from flywheel.api.trainingjob import TrainingJob

    KINDS: dict[str, type[Resource]]

# In dependency order: a kind only refers to kinds before it (the baseline gate of a
# TrainingJob is the one exception, and ordering handles it per object). Each kind's
# module is imported when first asked for: a process that reads one kind (a point-in-time
# join reading a FeatureView) does not build the models of all five.
_MODULES = {
    "Dataset": "dataset",
    "FeatureView": "featureview",
    "TrainingJob": "trainingjob",
    "ModelDeployment": "modeldeployment",
    "DriftMonitor": "driftmonitor",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"flywheel.api.{_MODULES[name]}"), name)
    if name == "KINDS":
        kinds = {kind: __getattr__(kind) for kind in _MODULES}
        globals()["KINDS"] = kinds
        return kinds
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Dataset",
    "DriftMonitor",
    "FeatureView",
    "ModelDeployment",
    "Resource",
    "TrainingJob",
]
