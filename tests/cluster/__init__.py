"""Test helpers for a real local Kubernetes control plane (see hack/k8s/README.md)."""

from . import kuberay
from .controlplane import (
    DEFAULT_NODES,
    GPU_NODE,
    GPU_RESOURCE,
    ClusterError,
    ControlPlane,
    FakeNode,
    Tools,
    ToolsMissingError,
    find_tools,
)
from .crds import CHART_CRD_NAMES, crds_restored
from .kubectl import CommandError, Helm, Kubectl, WaitTimeout, wait_for

__all__ = [
    "CHART_CRD_NAMES",
    "DEFAULT_NODES",
    "GPU_NODE",
    "GPU_RESOURCE",
    "ClusterError",
    "CommandError",
    "ControlPlane",
    "FakeNode",
    "Helm",
    "Kubectl",
    "Tools",
    "ToolsMissingError",
    "WaitTimeout",
    "crds_restored",
    "find_tools",
    "kuberay",
    "wait_for",
]
