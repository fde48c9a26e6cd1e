"""`flywheel-operator render -f DIR`: the objects the operator would create, as YAML.

Like `helm template`: it reads the manifests, validates them with the same models, and
calls the same builders as the handlers, so a review or a diff reads their real output.
Inputs are assumed Ready: an upstream object's status fields are not known here, and a
TrainingJob a ModelDeployment refers to stands for the version `<trainingjob name>` under
the artifact root. A ModelDeployment renders as its first pass does: the rollout at its
first step, and on Ray Serve the candidate's application deployed with no weight yet.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from flywheel import manifests
from flywheel.api import Dataset, DriftMonitor, FeatureView, ModelDeployment, TrainingJob
from flywheel.api.common import Resource, resource_key
from flywheel.api.modeldeployment import Backend, ModelRef
from flywheel.serving import rollout
from flywheel.serving.versions import ServedVersion
from flywheel_operator import settings as settings_mod
from flywheel_operator.builders import dataset, driftmonitor, featureview, trainingjob
from flywheel_operator.builders import modeldeployment as md_build
from flywheel_operator.status import modeldeployment as md_status
from flywheel_operator.status import results

# Children need an owner uid; the API server assigns the real one on create.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"


def owner_body(resource: Resource, namespace: str) -> dict[str, Any]:
    """The object as the operator receives it from the API server (no status yet)."""
    body: dict[str, Any] = resource.to_wire()
    meta = body.setdefault("metadata", {})
    meta.setdefault("namespace", namespace)
    meta.setdefault("uid", PLACEHOLDER_UID)
    meta.setdefault("generation", 1)
    return body


def assumed_inputs(resource: Resource) -> dict[str, Any]:
    """Every upstream object assumed Ready, with no status fields known."""
    return results.as_inputs({resource_key(kind, name): {} for kind, name in resource.references()})


def served_version(ref: ModelRef, artifact_root: str) -> ServedVersion:
    if ref.training_job_ref is None:
        return md_status.resolve(ref, {}, artifact_root) or _unreachable(ref)
    job = ref.training_job_ref.name
    model = ref.model_name or job
    return ServedVersion(model, job, f"{artifact_root.rstrip('/')}/models/{model}/{job}")


def _unreachable(ref: ModelRef) -> ServedVersion:
    raise AssertionError(f"a registry reference always resolves: {ref}")


def children(
    resource: Resource, namespace: str, settings: settings_mod.Settings, now: datetime
) -> list[dict[str, Any]]:
    """What the operator's handler for `resource` applies on its first pass."""
    owner = owner_body(resource, namespace)
    if isinstance(resource, Dataset):
        return dataset.build(owner, resource, settings)
    if isinstance(resource, FeatureView):
        return featureview.build(owner, resource, settings, assumed_inputs(resource))
    if isinstance(resource, TrainingJob):
        return [trainingjob.build(owner, resource, settings, assumed_inputs(resource))]
    if isinstance(resource, DriftMonitor):
        return driftmonitor.build(owner, resource, settings, assumed_inputs(resource))
    assert isinstance(resource, ModelDeployment)
    spec = resource.spec
    stable = served_version(spec.stable, settings.artifact_root)
    candidate = served_version(spec.candidate, settings.artifact_root) if spec.candidate else None
    plan = md_status.plan_rollout(spec.rollout, rollout.State(), stable, candidate, None, now)
    if spec.backend == Backend.RAYSERVE and candidate is not None:
        plan = md_status.hold_candidate(plan, stable.version, (False, "not deployed yet"))
    return md_build.build(owner, resource, settings, plan.versions, plan.split)


def render(
    paths: Sequence[str], namespace: str, settings: settings_mod.Settings, now: datetime
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the children of every manifest, in manifest order; the errors met reading them)."""
    loaded = manifests.load(paths)
    if loaded.errors:
        return [], [str(e) for e in loaded.errors]
    out: list[dict[str, Any]] = []
    for item in loaded.resources:
        out += children(item.resource, namespace, settings, now)
    return out, []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flywheel-operator render",
        description="Print, as YAML, the objects the operator would create for the manifests.",
    )
    parser.add_argument(
        "-f", "--filename", action="append", required=True, help="a manifest file or directory"
    )
    parser.add_argument("-n", "--namespace", default="default", help="namespace of the objects")
    args = parser.parse_args(argv)
    # The operator's own settings (image, artifact root, ...) from the same environment.
    objects, errors = render(
        args.filename, args.namespace, settings_mod.from_env(), datetime.now(UTC)
    )
    if errors:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0
