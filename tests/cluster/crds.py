"""Cluster-wide CRDs that a test changes, put back as they were."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from .kubectl import Kubectl

# The CRDs the chart installs: flywheel's and kopf's peering objects.
CHART_CRD_NAMES = (
    "datasets.flywheel.dev",
    "featureviews.flywheel.dev",
    "trainingjobs.flywheel.dev",
    "modeldeployments.flywheel.dev",
    "driftmonitors.flywheel.dev",
    "clusterkopfpeerings.kopf.dev",
    "kopfpeerings.kopf.dev",
)


@contextlib.contextmanager
def crds_restored(kubectl: Kubectl, names: Sequence[str]) -> Iterator[None]:
    """Whatever the body does to these cluster-wide CRDs, put them back as they were: the
    ones that existed are re-created or replaced from a copy, the others deleted.
    Tests run in random order, so none may see what another left behind."""
    before = {name: _crd_manifest(kubectl, name) for name in names}
    try:
        yield
    finally:
        for name, manifest in before.items():
            now = _crd_manifest(kubectl, name)
            if now == manifest:
                continue
            if manifest is None:
                kubectl.delete("crd", name, wait=True)
                continue
            if now is None:
                kubectl.create(json.dumps(manifest))
            else:  # changed: put the copy back in place (a delete would drop every object)
                kubectl.run("replace", "-f", "-", input=json.dumps(manifest))
            kubectl.wait("--for=condition=Established", f"crd/{name}", timeout=60)


def _crd_manifest(kubectl: Kubectl, name: str) -> dict[str, Any] | None:
    """The CRD as it could be created again (no server-set fields), or None."""
    if not kubectl.exists("crd", name):
        return None
    crd: dict[str, Any] = kubectl.get("crd", name)
    crd.pop("status", None)
    crd["metadata"] = {
        k: v for k, v in crd["metadata"].items() if k in ("name", "labels", "annotations")
    }
    return crd
