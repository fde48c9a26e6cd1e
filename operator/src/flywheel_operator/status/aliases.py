"""Registry aliases as the cluster saw them move: the operator reads no storage.

An alias moves in two places, and both leave a record in the API:

    TrainingJob Succeeded   status.aliases: what the version got at registration
                            (`champion` for a model's first version, `candidate` for a
                            later one that passed its gates), at status.completionTime
    alias Job Complete      a promotion moved `champion` (`builders.modeldeployment.
                            alias_job`): its annotations say to which version, at
                            status.completionTime

An alias names the version of its newest record. Records of TrainingJobs still running,
failed or without the alias, and alias Jobs not yet complete, move nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flywheel.api.modeldeployment import ModelDeploymentSpec, ModelRef
from flywheel.serving.versions import ServedVersion
from flywheel_operator.labels import (
    ALIAS_ANNOTATION,
    ARTIFACT_ANNOTATION,
    MODEL_ANNOTATION,
    VERSION_ANNOTATION,
)

CHAMPION = "champion"
CANDIDATE = "candidate"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Assignment:
    """One move of an alias: `alias` of `model` names `version` since `time`."""

    model: str
    alias: str
    version: str
    uri: str  # where the version's artifact lives
    time: datetime
    source: str  # what moved it: "tj/<name>" or "job/<name>"

    def served(self) -> ServedVersion:
        return ServedVersion(self.model, self.version, self.uri)


def _time(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        return _EPOCH
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _condition(obj: dict[str, Any], type_: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def model_of(job: dict[str, Any]) -> str:
    """The registry name a TrainingJob registers under."""
    status = job.get("status") or {}
    return str(status.get("modelName") or job["spec"]["output"]["modelName"])


def from_training_jobs(jobs: Iterable[dict[str, Any]]) -> list[Assignment]:
    """The aliases each Succeeded TrainingJob's version got at registration."""
    found = []
    for job in jobs:
        status = job.get("status") or {}
        version, uri = status.get("modelVersion"), status.get("artifactUri")
        if status.get("phase") != "Succeeded" or not version or not uri:
            continue
        when = _time(status.get("completionTime") or job["metadata"].get("creationTimestamp"))
        for alias in status.get("aliases") or []:
            name = f"tj/{job['metadata']['name']}"
            found.append(Assignment(model_of(job), alias, version, uri, when, name))
    return found


def from_alias_jobs(jobs: Iterable[dict[str, Any]]) -> list[Assignment]:
    """The moves of the alias Jobs that completed."""
    found = []
    for job in jobs:
        notes = job["metadata"].get("annotations") or {}
        wanted = (MODEL_ANNOTATION, ALIAS_ANNOTATION, VERSION_ANNOTATION, ARTIFACT_ANNOTATION)
        if not _condition(job, "Complete") or not all(notes.get(k) for k in wanted):
            continue
        status = job.get("status") or {}
        found.append(
            Assignment(
                notes[MODEL_ANNOTATION],
                notes[ALIAS_ANNOTATION],
                notes[VERSION_ANNOTATION],
                notes[ARTIFACT_ANNOTATION],
                _time(status.get("completionTime")),
                f"job/{job['metadata']['name']}",
            )
        )
    return found


def resolve(model: str, alias: str, assignments: Iterable[Assignment]) -> Assignment | None:
    """The newest move of `alias` of `model`, or None when it never moved.

    >>> t = datetime(2026, 5, 1, tzinfo=UTC)
    >>> moves = [Assignment("churn", "candidate", "v2", "s3://m/v2", t, "tj/a"),
    ...          Assignment("churn", "candidate", "v3", "s3://m/v3", t.replace(day=2), "tj/b")]
    >>> resolve("churn", "candidate", moves).version
    'v3'
    >>> resolve("churn", "champion", moves) is None
    True
    """
    moves = [a for a in assignments if a.model == model and a.alias == alias]
    return max(moves, key=lambda a: (a.time, a.source), default=None)


def follows_aliases(spec: ModelDeploymentSpec) -> bool:
    """Whether the deployment names a version by alias (then it follows their moves, and
    a promotion moves `champion`)."""
    refs: list[ModelRef] = [spec.stable] + ([spec.candidate] if spec.candidate else [])
    return any(r.alias is not None for r in refs)


def model_of_deployment(spec: ModelDeploymentSpec) -> str | None:
    """The registry model an alias-following deployment serves."""
    refs: list[ModelRef] = [spec.stable] + ([spec.candidate] if spec.candidate else [])
    return next((r.model_name for r in refs if r.alias is not None), None)


def newest_training(model: str, jobs: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The TrainingJob of `model` created last (a retrain under way, or how it ended)."""
    mine = [j for j in jobs if model_of(j) == model]
    return max(
        mine,
        key=lambda j: (_time(j["metadata"].get("creationTimestamp")), j["metadata"]["name"]),
        default=None,
    )


def last_move_outcome(
    jobs: Iterable[dict[str, Any]], owner_uid: str
) -> tuple[bool, str, str] | None:
    """(moved, reason, message) of the newest alias Job this deployment made: whether the
    registry move a promotion asked for happened, or why not; None before any.

    >>> job = {"metadata": {"name": "churn-champion-v2", "creationTimestamp": "2026-05-01",
    ...        "ownerReferences": [{"uid": "u"}], "annotations": {ALIAS_ANNOTATION: "champion",
    ...        VERSION_ANNOTATION: "v2", MODEL_ANNOTATION: "churn"}},
    ...        "status": {"conditions": [{"type": "Failed", "status": "True",
    ...        "reason": "BackoffLimitExceeded", "message": "Job has reached the limit"}]}}
    >>> last_move_outcome([job], "u")[:2]
    (False, 'AliasMoveFailed')
    """
    mine = [
        j
        for j in jobs
        if any(r.get("uid") == owner_uid for r in j["metadata"].get("ownerReferences") or [])
    ]
    if not mine:
        return None
    job = max(
        mine, key=lambda j: (j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"])
    )
    notes = job["metadata"].get("annotations") or {}
    what = (
        f"{notes.get(MODEL_ANNOTATION)}@{notes.get(ALIAS_ANNOTATION)} -> "
        f"{notes.get(VERSION_ANNOTATION)} (job/{job['metadata']['name']})"
    )
    if _condition(job, "Complete"):
        return True, "AliasMoved", what
    failed = next(
        (c for c in (job.get("status") or {}).get("conditions") or []
         if c.get("type") == "Failed" and c.get("status") == "True"),
        None,
    )  # fmt: skip
    if failed is not None:
        why = failed.get("message") or failed.get("reason") or "failed"
        return (
            False,
            "AliasMoveFailed",
            (
                f"{what} failed: {why}. The registry still gives {notes.get(ALIAS_ANNOTATION)} "
                f"to the version before; see kubectl logs job/{job['metadata']['name']}"
            ),
        )
    return False, "AliasMoving", what
