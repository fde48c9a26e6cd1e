"""Ordering manifests by their references: what must exist before what.

Pure: resources in, an ordered plan (or the reference problems) out.
"""

from __future__ import annotations

import dataclasses
import heapq

from flywheel import api
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
    errors: list[ManifestError] = []
    for key, item in by_key.items():
        wanted = list(dict.fromkeys(f"{k}/{n}" for k, n in item.resource.references()))
        for ref in wanted:
            if ref not in by_key:
                errors.append(
                    ManifestError(
                        item.source, key, "", f"refers to {ref}, which is not in the manifests"
                    )
                )
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
    """One line saying what running this object does."""
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
