"""KubeRay's own CRDs (RayJob, RayService, RayCluster) as the tests install them.

hack/k8s/kuberay-crds.sh fetches them from the Go module of the KubeRay release pinned in
versions.env into the cache, checked against hack/k8s/kuberay-crds.sha256; this module
only finds them there.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .controlplane import ToolsMissingError, cache_dir, read_versions
from .kubectl import Kubectl

# The file of each CRD in KubeRay's config/crd/bases/.
CRD_FILES = {
    "rayclusters.ray.io": "ray.io_rayclusters.yaml",
    "rayjobs.ray.io": "ray.io_rayjobs.yaml",
    "rayservices.ray.io": "ray.io_rayservices.yaml",
}
CRD_NAMES = tuple(CRD_FILES)
FETCH_HINT = "run `make k8s-tools` (hack/k8s/kuberay-crds.sh) to fetch them"


def crds_dir(versions: Mapping[str, str] | None = None) -> Path:
    """Same layout as kuberay-crds.sh: <cache>/kuberay-<version>/crds."""
    v = versions or read_versions()
    return cache_dir() / f"kuberay-{v['KUBERAY_VERSION']}" / "crds"


def crd_files(versions: Mapping[str, str] | None = None) -> list[Path]:
    """The three CRD files; missing ones fail with how to fetch them."""
    base = crds_dir(versions)
    files = [base / name for name in CRD_FILES.values()]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ToolsMissingError(f"KubeRay CRDs missing: {', '.join(missing)}; {FETCH_HINT}")
    return files


def install(kubectl: Kubectl) -> None:
    """Server-side apply, as KubeRay tells its users to: a client-side apply would not fit
    these CRDs into its last-applied annotation."""
    for path in crd_files():
        kubectl.apply(path)
    for name in CRD_NAMES:
        kubectl.wait("--for=condition=Established", f"crd/{name}", timeout=60)


def pruned(sent: Any, returned: Any, path: str = "") -> list[str]:
    """Every field of `sent` that `returned` lacks or holds changed, as a path; fields the
    server added (defaults, metadata) are not differences.

    >>> pruned({"spec": {"a": 1, "b": [{"c": 2}]}}, {"spec": {"a": 1, "b": [{}]}, "status": {}})
    ['.spec.b[0].c']
    """
    if isinstance(sent, dict) and isinstance(returned, dict):
        out: list[str] = []
        for key, value in sent.items():
            if key not in returned:
                out.append(f"{path}.{key}")
            else:
                out += pruned(value, returned[key], f"{path}.{key}")
        return out
    if isinstance(sent, list) and isinstance(returned, list) and len(sent) == len(returned):
        return [p for i, (a, b) in enumerate(zip(sent, returned, strict=True))
                for p in pruned(a, b, f"{path}[{i}]")]  # fmt: skip
    return [] if sent == returned else [f"{path}: {sent!r} -> {returned!r}"]
