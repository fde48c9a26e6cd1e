"""Test helpers for a real local Kubernetes control plane (see hack/k8s/README.md)."""

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
from .kubectl import CommandError, Helm, Kubectl, WaitTimeout, wait_for

__all__ = [
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
    "find_tools",
    "wait_for",
]
