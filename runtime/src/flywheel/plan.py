"""Ordering manifests by their references: what must exist before what.

Pure: resources in, an ordered plan (or the reference problems) out.
"""

from __future__ import annotations

import dataclasses
import heapq
import posixpath
from pathlib import Path

from flywheel import api
from flywheel.api import common
from flywheel.api.common import Resource
from flywheel.manifests import Loaded, ManifestError

KIND_RANK = {kind: i for i, kind in enumerate(api.KINDS)}


@dataclasses.dataclass(frozen=True)
class Step:
    resource: Resource
    source: str
    depends_on: tuple[str, ...]  # "Kind/name" of the steps it waits for

    @property
    def key(self) -> str:
        return self.resource.key


def order(items: list[Loaded]) -> tuple[list[Step], list[ManifestError]]:
    """Steps in dependency order; unknown references and cycles as errors.

    Ties are broken by kind (Dataset first) and then by the order the files gave, so the
    same manifests always give the same plan.
    """
    by_key = {i.resource.key: i for i in items}
    position = {k: n for n, k in enumerate(by_key)}
    deps: dict[str, list[str]] = {}
    errors = problems(items)
    for key, item in by_key.items():
        refs = item.resource.references() + _alias_trainings(item.resource, items)
        if isinstance(item.resource, api.ModelDeployment):  # batch prediction reads these
            refs += [(k, n) for _, k, n in item.resource.batch_references()]
        wanted = list(dict.fromkeys(f"{k}/{n}" for k, n in refs))
        deps[key] = [r for r in wanted if r in by_key and r != key]
    if errors:
        return [], errors

    waiting = {k: len(v) for k, v in deps.items()}
    users: dict[str, list[str]] = {k: [] for k in by_key}
    for k, v in deps.items():
        for d in v:
            users[d].append(k)

    def rank(key: str) -> tuple[int, int]:
        return (KIND_RANK[by_key[key].resource.kind_name], position[key])

    ready = [(rank(k), k) for k, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    steps: list[Step] = []
    while ready:
        _, key = heapq.heappop(ready)
        item = by_key[key]
        steps.append(Step(item.resource, item.source, tuple(deps[key])))
        for user in users[key]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (rank(user), user))
    if len(steps) < len(by_key):
        cycle = _find_cycle({k: v for k, v in deps.items() if waiting[k] > 0})
        first = by_key[cycle[0]]
        errors.append(
            ManifestError(first.source, cycle[0], "", "reference cycle: " + " -> ".join(cycle))
        )
    return steps, errors


def _alias_trainings(resource: Resource, items: list[Loaded]) -> list[tuple[str, str]]:
    """A deployment naming a version by registry alias runs after the trainings of that
    model in the same files: they are what give the aliases."""
    if not isinstance(resource, api.ModelDeployment):
        return []
    spec = resource.spec
    batch = spec.batch_prediction.model if spec.batch_prediction else None
    refs = (spec.stable, spec.candidate, batch)
    models = {r.model_name for r in refs if r is not None and r.alias}
    return [
        ("TrainingJob", i.resource.name)
        for i in items
        if isinstance(i.resource, api.TrainingJob) and i.resource.spec.output.model_name in models
    ]


def problems(items: list[Loaded]) -> list[ManifestError]:
    """What no single object shows: references to objects not in the manifests, and store
    roots that two objects (or a Dataset and its own source) would share."""
    return _unknown_references(items) + _shared_stores(items)


def _unknown_references(items: list[Loaded]) -> list[ManifestError]:
    known = {(i.resource.kind_name, i.resource.name) for i in items}
    errors = []
    for item in items:
        key = f"{item.resource.kind_name}/{item.resource.name}"
        seen = set()
        for field, kind, name in reference_fields(item.resource):
            if (kind, name) in known or (field, kind, name) in seen:
                continue
            seen.add((field, kind, name))
            errors.append(
                ManifestError(
                    item.source,
                    key,
                    field,
                    f"refers to {kind}/{name}, which is not in the manifests",
                )
            )
    return errors


def reference_fields(resource: Resource) -> list[tuple[str, str, str]]:
    """(field, kind, name) of every reference an object holds, the retrain template's too."""
    match resource:
        case api.FeatureView(spec=spec):
            return [("spec.source.datasetRef", "Dataset", spec.source.dataset_ref.name)]
        case api.TrainingJob(spec=spec):
            return _training_references("spec", spec)
        case api.ModelDeployment(spec=spec):
            refs = [("stable", spec.stable), ("candidate", spec.candidate)]
            return [
                (f"spec.{field}.trainingJobRef", "TrainingJob", ref.training_job_ref.name)
                for field, ref in refs
                if ref is not None and ref.training_job_ref is not None
            ] + resource.batch_references()
        case api.DriftMonitor(spec=spec):
            out = [("spec.deploymentRef", "ModelDeployment", spec.deployment_ref.name)]
            target = spec.reference.target()
            if target is not None:  # servingVersion names no object: found per run
                kind, name = target
                ref_field = {"Dataset": "datasetRef", "FeatureView": "featureViewRef"}.get(
                    kind, "trainingJobRef"
                )
                out.append((f"spec.reference.{ref_field}", kind, name))
            if spec.skew is not None:
                view = spec.skew.feature_view_ref.name
                out.append(("spec.skew.featureViewRef", "FeatureView", view))
            if spec.action.retrain is not None:
                prefix = "spec.action.retrain.template.spec"
                out += _training_references(prefix, spec.action.retrain.template.spec)
            return out
    return [("", k, n) for k, n in resource.references()]


def _training_references(
    prefix: str, spec: api.trainingjob.TrainingJobSpec
) -> list[tuple[str, str, str]]:
    out = [
        (f"{prefix}.featureViewRefs[{i}]", "FeatureView", r.name)
        for i, r in enumerate(spec.feature_view_refs)
    ]
    out.append((f"{prefix}.label.datasetRef", "Dataset", spec.label.dataset_ref.name))
    baseline = spec.evaluation.not_worse_than_deployed
    if baseline is not None:
        out.append(
            (
                f"{prefix}.evaluation.notWorseThanDeployed.deploymentRef",
                "ModelDeployment",
                baseline.deployment_ref.name,
            )
        )
    warm = spec.warm_start
    if warm is not None and warm.deployment_ref is not None:
        out.append(
            (f"{prefix}.warmStart.deploymentRef", "ModelDeployment", warm.deployment_ref.name)
        )
    return out


@dataclasses.dataclass(frozen=True)
class _Store:
    item: Loaded
    field: str
    root: str  # normalized: an absolute local path, or scheme://rest without a trailing /

    @property
    def key(self) -> str:
        return f"{self.item.resource.kind_name}/{self.item.resource.name}"


def _shared_stores(items: list[Loaded]) -> list[ManifestError]:
    """A store root belongs to one object: no two may be equal or nested."""
    stores: list[_Store] = []
    errors = []
    for item in items:
        for field, uri in _store_uris(item.resource):
            stores.append(_Store(item, field, _normalized(uri, item.source)))
        if isinstance(item.resource, api.Dataset) and item.resource.spec.destination:
            source = _normalized(_glob_base(item.resource.spec.source.uri), item.source)
            dest = _normalized(item.resource.spec.destination, item.source)
            if _nested(source, dest):
                errors.append(
                    ManifestError(
                        item.source,
                        f"Dataset/{item.resource.name}",
                        "spec.destination",
                        "the destination is inside the source, so every ingest would read its "
                        "own output; publish somewhere else",
                    )
                )
    for i, later in enumerate(stores):
        for earlier in stores[:i]:
            if _nested(earlier.root, later.root):
                same = "is" if earlier.root == later.root else "overlaps"
                errors.append(
                    ManifestError(
                        later.item.source,
                        later.key,
                        later.field,
                        f"this store root {same} the one of {earlier.key} ({earlier.field}); "
                        "a store root belongs to one object, give each its own",
                    )
                )
                break
    return errors


def _store_uris(resource: Resource) -> list[tuple[str, str]]:
    match resource:
        case api.Dataset(spec=spec) if spec.destination:
            return [("spec.destination", spec.destination)]
        case api.FeatureView(spec=spec):
            out = []
            if spec.offline_store.uri:
                out.append(("spec.offlineStore.uri", spec.offline_store.uri))
            online = spec.online_store
            if online.enabled and online.type == "sqlite" and online.path:
                out.append(("spec.onlineStore.path", online.path))
            return out
        case api.ModelDeployment(spec=spec) if spec.request_logging.uri:
            return [("spec.requestLogging.uri", spec.request_logging.uri)]
    return []


def _glob_base(uri: str) -> str:
    """The directory part of a source before any glob: ./data/*.csv -> ./data."""
    head = uri.split("*", 1)[0]
    return head.rsplit("/", 1)[0] if "*" in uri else uri


def _normalized(uri: str, source: str) -> str:
    if "://" in uri and not uri.startswith("file://"):
        scheme, _, rest = uri.partition("://")
        return f"{scheme}://{posixpath.normpath('/' + rest).lstrip('/')}"
    path = uri.removeprefix("file://")
    base = Path(source.rsplit("#", 1)[0]).resolve().parent
    return posixpath.normpath(str(base / path))


def _nested(a: str, b: str) -> bool:
    """Whether a and b are one root, or one lies inside the other."""
    return a == b or b.startswith(a.rstrip("/") + "/") or a.startswith(b.rstrip("/") + "/")


def _find_cycle(deps: dict[str, list[str]]) -> list[str]:
    """One cycle among nodes that all wait on each other, as a closed path."""
    start = min(deps)
    path = [start]
    seen = {start: 0}
    node = start
    while True:
        node = next(d for d in deps[node] if d in deps)
        if node in seen:
            return [*path[seen[node] :], node]
        seen[node] = len(path)
        path.append(node)


def describe(resource: Resource) -> str:
    """One line saying what running this object does (credentials in URIs redacted)."""
    return common.redact(_describe(resource))


def _describe(resource: Resource) -> str:
    match resource:
        case api.Dataset(spec=spec):
            src = spec.source
            return (
                f"ingest {src.format} {src.uri} -> snapshot (on error: {spec.validation.on_error})"
            )
        case api.FeatureView(spec=spec):
            store = spec.online_store.type if spec.online_store.enabled else "offline only"
            keys = ",".join(spec.join_keys)
            return f"materialize {len(spec.features)} features by {keys} ({store})"
        case api.TrainingJob(spec=spec):
            s = spec.scaling
            gpus = f", {s.resources_per_worker.gpu} gpu" if s.resources_per_worker.gpu else ""
            workers = f"{s.num_workers} worker(s){gpus}"
            return f"train {spec.model.type} on {workers} -> model {spec.output.model_name}"
        case api.ModelDeployment(spec=spec):
            cand = f" -> {spec.candidate.describe()}" if spec.candidate else ""
            return (
                f"serve {spec.stable.describe()}{cand} on {spec.backend} ({spec.rollout.strategy})"
            )
        case api.DriftMonitor(spec=spec):
            t = spec.tests
            tests = f"{t.numerical.method}/{t.categorical.method}"
            return f"monitor md/{spec.deployment_ref.name} ({tests}), on drift: {spec.action.type}"
    return resource.kind_name
