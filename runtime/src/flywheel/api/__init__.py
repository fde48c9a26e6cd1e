"""The flywheel.dev/v1alpha1 contract: pydantic models of the five kinds.

These models are the single source of truth: the CRDs in `crds/` are generated from
them, `flywheel validate` checks manifests with them, and the operator and the runtime
read specs through them. Importing this package needs only pydantic.
"""

from __future__ import annotations

from flywheel.api.common import API_VERSION, GROUP, VERSION, Resource
from flywheel.api.dataset import Dataset
from flywheel.api.driftmonitor import DriftMonitor
from flywheel.api.featureview import FeatureView
from flywheel.api.modeldeployment import ModelDeployment
from flywheel.api.trainingjob import TrainingJob

# In dependency order: a kind only refers to kinds before it (the baseline gate of a
# TrainingJob is the one exception, and ordering handles it per object).
KINDS: dict[str, type[Resource]] = {
    cls.kind_name: cls for cls in (Dataset, FeatureView, TrainingJob, ModelDeployment, DriftMonitor)
}

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
