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

from flywheel import kubeyaml, manifests
from flywheel.api import Dataset, DriftMonitor, FeatureView, ModelDeployment, TrainingJob, crdgen
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


def defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """`value` with the schema's defaults filled in where fields are missing, as the API
    server does for a structural schema (children names hash the defaulted spec).

    >>> defaulted({"a": {}}, {"properties": {"a": {"properties": {"b": {"default": 1}}}}})
    {'a': {'b': 1}}
    """
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        out = {}
        for key, item in value.items():
            sub = props.get(key) or schema.get("additionalProperties") or {}
            out[key] = defaulted(item, sub if isinstance(sub, dict) else {})
        for key, sub in props.items():
            if key not in out and "default" in sub:
                out[key] = defaulted(sub["default"], sub)
        return out
    if isinstance(value, list):
        return [defaulted(item, schema.get("items") or {}) for item in value]
    return value


def as_served(value: Any) -> Any:
    """Numbers as the API server returns them: it holds JSON numbers as float64 and writes
    a whole one without a fraction (0.0 comes back as 0), and the hash sees the difference.

    >>> as_served({"a": [0.0, 0.5, True]})
    {'a': [0, 0.5, True]}
    """
    if isinstance(value, dict):
        return {k: as_served(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_served(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def owner_body(
    resource: Resource, namespace: str, written: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The object as the operator receives it from the API server (no status yet): what
    the manifest says (`written`, as written: 0 stays 0, not 0.0), with the CRD's defaults."""
    if written is None:
        written = resource.model_dump(by_alias=True, exclude_unset=True, mode="json")
    body: dict[str, Any] = as_served(defaulted(written, crdgen.structural_schema(type(resource))))
    body.setdefault("apiVersion", resource.api_version)
    body.setdefault("kind", resource.kind_name)
    meta = body.setdefault("metadata", {})
    meta.setdefault("namespace", namespace)
    meta.setdefault("uid", PLACEHOLDER_UID)
    meta.setdefault("generation", 1)
    return body


def assumed_inputs(resource: Resource) -> dict[str, Any]:
    """Every upstream object assumed Ready, with no status fields known."""
    return results.as_inputs({resource_key(kind, name): {} for kind, name in resource.references()})


def served_version(ref: ModelRef, artifact_root: str) -> ServedVersion:
    if ref.alias is not None:  # resolved in the cluster; rendered under the alias's name
        model = ref.model_name or ref.alias
        return ServedVersion(model, ref.alias, f"{artifact_root.rstrip('/')}/models/{model}")
    if ref.training_job_ref is None:
        return md_status.resolve(ref, {}, artifact_root) or _unreachable(ref)
    job = ref.training_job_ref.name
    model = ref.model_name or job
    return ServedVersion(model, job, f"{artifact_root.rstrip('/')}/models/{model}/{job}")


def _unreachable(ref: ModelRef) -> ServedVersion:
    raise AssertionError(f"a registry reference always resolves: {ref}")


def children(
    resource: Resource,
    namespace: str,
    settings: settings_mod.Settings,
    now: datetime,
    written: dict[str, Any] | None = None,
    others: dict[tuple[str, str], Resource] | None = None,
) -> list[dict[str, Any]]:
    """What the operator's handler for `resource` applies on its first pass; `others`:
    the objects beside it (a deployment's FeatureView)."""
    owner = owner_body(resource, namespace, written)
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
    view = None
    if spec.feature_view_ref is not None:
        found = (others or {}).get(("FeatureView", spec.feature_view_ref.name))
        view = owner_body(found, namespace) if found is not None else None
    return md_build.build(owner, resource, settings, plan.versions, plan.split, view)


def render(
    paths: Sequence[str], namespace: str, settings: settings_mod.Settings, now: datetime
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the children of every manifest, in manifest order; the errors met reading them)."""
    loaded = manifests.load(paths)
    if loaded.errors:
        return [], [str(e) for e in loaded.errors]
    written = written_documents(paths)
    out: list[dict[str, Any]] = []
    objects = {(i.resource.kind_name, i.resource.name): i.resource for i in loaded.resources}
    for item in loaded.resources:
        raw = written.get((item.resource.kind_name, item.resource.name))
        out += children(item.resource, namespace, settings, now, raw, objects)
    return out, []


def written_documents(paths: Sequence[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> the document as written in the files (already read once, valid)."""
    out = {}
    for path in manifests.manifest_files(paths):
        for doc in kubeyaml.read(path.read_bytes()):
            value = doc.value
            if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
                out[(str(value.get("kind")), str(value["metadata"].get("name")))] = value
    return out


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
