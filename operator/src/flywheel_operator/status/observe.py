"""Reading children's status: Jobs, CronJobs, Pods, RayJobs, RayServices, Deployments.

Pure: dicts as the API returns them in, small typed observations out.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from flywheel_operator.redaction import redact


class RunState(enum.StrEnum):
    MISSING = "Missing"  # not created yet (or already cleaned up)
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED)


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of runtime work and what it reported."""

    name: str
    state: RunState
    result: dict[str, Any] | None = None  # the JSON the runtime wrote, when it did
    message: str = ""  # why it failed, from the Job or the container


def job_run(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Run:
    """A Job and its Pods -> one Run; the result is the termination message of a Pod."""
    if job is None:
        return Run("", RunState.MISSING)
    name = job["metadata"]["name"]
    status = job.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions", []) if c.get("status") == "True"}
    result, text = _termination(pods)
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        return Run(name, RunState.SUCCEEDED, result, text if result is None else "")
    if "Failed" in conditions:
        cond = conditions["Failed"]
        reason = (
            (result or {}).get("error") or text or cond.get("message") or cond.get("reason", "")
        )
        return Run(name, RunState.FAILED, result, str(reason))
    if status.get("active") and any(_phase(p) == "Running" for p in pods):
        return Run(name, RunState.RUNNING)
    return Run(name, RunState.PENDING, message=_waiting_reason(pods))


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


def _waiting_reason(pods: list[dict[str, Any]]) -> str:
    """Why a run's Pod does not run yet: unschedulable, image pull, ... (first found)."""
    for pod in pods:
        status = pod.get("status") or {}
        for c in status.get("conditions", []):
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return f"{c.get('reason', 'Unschedulable')}: {c.get('message', '')}"
        for cs in status.get("containerStatuses", []):
            waiting = (cs.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
                return f"{waiting['reason']}: {waiting.get('message', '')}"
    return ""


def _termination(pods: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The newest terminated container's message: parsed JSON, or the raw text."""
    newest: tuple[str, str] | None = None
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses", []):
            term = (cs.get("state") or {}).get("terminated")
            if term and term.get("message"):
                stamp = term.get("finishedAt") or ""
                if newest is None or stamp >= newest[0]:
                    newest = (stamp, term["message"])
    if newest is None:
        return None, ""
    text = redact(newest[1].strip())
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text[-1000:]
    return (parsed, "") if isinstance(parsed, dict) else (None, text[-1000:])


# KubeRay's RayJob (v1.5.0): jobDeploymentStatus is the custom resource's state machine,
# jobStatus the Ray job's. Only Complete, Failed and ValidationFailed are final: a Failed
# RayJob with retries left under its backoffLimit is written as Retrying (then New,
# Initializing, Running again with a new jobId), so a FAILED jobStatus alone is not the end.
_FINAL_FAILED = ("Failed", "ValidationFailed")


def rayjob_run(rayjob: dict[str, Any] | None, submitter_pods: list[dict[str, Any]]) -> Run:
    """The RayJob's run; its result is what the submitter wrote to its termination message."""
    if rayjob is None:
        return Run("", RunState.MISSING)
    name = rayjob["metadata"]["name"]
    status = rayjob.get("status") or {}
    deployment = status.get("jobDeploymentStatus", "")
    job = status.get("jobStatus", "")
    if deployment == "Complete":
        state = RunState.SUCCEEDED if job == "SUCCEEDED" else RunState.FAILED
    elif deployment in _FINAL_FAILED:
        state = RunState.FAILED
    elif job == "RUNNING" and deployment in ("Running", ""):
        state = RunState.RUNNING
    else:
        state = RunState.PENDING
    result, text = _termination(submitter_pods) if state.finished else (None, "")
    if state == RunState.FAILED:
        message = (result or {}).get("error") or status.get("message", "") or text
    elif state == RunState.PENDING and status.get("failed"):
        message = f"retrying after {status['failed']} failed attempt(s)"
    else:
        message = ""
    return Run(name, state, result, str(message))


def rayjob_dashboard(rayjob: dict[str, Any]) -> tuple[str, str] | None:
    """Where the Ray job's log is: KubeRay's dashboard URL and job id, once it set both."""
    status = rayjob.get("status") or {}
    url, job_id = status.get("dashboardURL"), status.get("jobId")
    return (str(url), str(job_id)) if url and job_id else None


def rayservice_ready(rayservice: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a RayService serves, from its Ready condition (or the older serviceStatus)."""
    if rayservice is None:
        return False, "RayService not created yet"
    status = rayservice.get("status") or {}
    for c in status.get("conditions", []):
        if c.get("type") == "Ready":
            return c.get("status") == "True", c.get("message", "") or c.get("reason", "")
    running = status.get("serviceStatus") == "Running"
    return running, "" if running else f"serviceStatus {status.get('serviceStatus', 'unknown')}"


def serve_application(rayservice: dict[str, Any] | None, app: str) -> tuple[bool, str]:
    """Whether one Serve application of a RayService is RUNNING, from the application
    statuses KubeRay copies from Serve into `status.activeServiceStatus`."""
    status = (rayservice or {}).get("status") or {}
    apps = (status.get("activeServiceStatus") or {}).get("applicationStatuses") or {}
    app_status = apps.get(app) or {}
    state = app_status.get("status") or "NOT_STARTED"
    if state == "RUNNING":
        return True, ""
    message = app_status.get("message") or ""
    return False, f"Serve application {app} is {state}" + (f": {message}" if message else "")


def deployment_ready(deployment: dict[str, Any] | None) -> tuple[bool, str]:
    if deployment is None:
        return False, "not created yet"
    status = deployment.get("status") or {}
    want = (deployment.get("spec") or {}).get("replicas", 1)
    have = status.get("availableReplicas", 0)
    return have >= max(want, 1), f"{have}/{want} replicas available"


def last_cronjob_run(
    jobs: list[dict[str, Any]], pods_by_job: dict[str, list[dict[str, Any]]]
) -> Run:
    """The newest finished Job a CronJob made, or its running one."""
    ordered = sorted(jobs, key=lambda j: j["metadata"].get("creationTimestamp", ""), reverse=True)
    runs = [job_run(j, pods_by_job.get(j["metadata"]["name"], [])) for j in ordered]
    finished = [r for r in runs if r.state.finished]
    return finished[0] if finished else (runs[0] if runs else Run("", RunState.MISSING))
