"""`flywheel train submit`: the RayJob's submitter.

KubeRay runs it in the submitter Pod with $RAY_DASHBOARD_ADDRESS and
$RAY_JOB_SUBMISSION_ID set. It submits `flywheel train run` under that id (so KubeRay
tracks the same job), with the object and its inputs in the job's runtime environment,
follows the job's log to the end, and writes the run's result, the last JSON line of the
log, to its own termination message: that is how the model version and metrics reach the
TrainingJob's status without an API token or object-store access in the operator.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from flywheel import entrypoints
from flywheel.api.trainingjob import TrainingJob

ADDRESS_ENV = "RAY_DASHBOARD_ADDRESS"
SUBMISSION_ID_ENV = "RAY_JOB_SUBMISSION_ID"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def entrypoint(artifact_root: str) -> str:
    return shlex.join(
        [
            "flywheel",
            *entrypoints.ENTRYPOINTS["TrainingJob"].command,
            "--artifact-root",
            artifact_root,
        ]
    )


def result_line(logs: str) -> dict[str, Any] | None:
    """The last line of a log that is a JSON object: what `train run` printed."""
    for line in reversed(logs.splitlines()):
        text = line.strip()
        if text.startswith("{") and text.endswith("}"):
            try:
                found = json.loads(text)
            except ValueError:
                continue
            if isinstance(found, dict):
                return found
    return None


def submit(
    job: TrainingJob,
    context: entrypoints.RunContext,
    address: str | None,
    result: Path | None,
    artifact_root: str,
) -> int:
    from ray.job_submission import JobSubmissionClient

    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        raise SystemExit(f"error: give --address or ${ADDRESS_ENV}")
    if "://" not in address:
        address = f"http://{address}"
    env = {
        k: os.environ[k]
        for k in (entrypoints.MANIFEST_ENV, entrypoints.INPUTS_ENV, entrypoints.NAMESPACE_ENV)
        if k in os.environ
    }
    if entrypoints.MANIFEST_ENV not in env:
        env[entrypoints.MANIFEST_ENV] = json.dumps(job.to_wire())
    client = JobSubmissionClient(address)
    submission_id = os.environ.get(SUBMISSION_ID_ENV)
    existing = None
    if submission_id:
        try:
            existing = client.get_job_info(submission_id)
        except RuntimeError:
            existing = None
    if existing is None:
        submission_id = client.submit_job(
            entrypoint=entrypoint(artifact_root),
            submission_id=submission_id,
            runtime_env={"env_vars": env},
        )
    assert submission_id is not None
    _follow(client, submission_id)
    status = str(client.get_job_status(submission_id))
    logs = client.get_job_logs(submission_id)
    found = result_line(logs)
    if found is None:
        found = {
            "phase": "Failed",
            "error": f"Ray job {submission_id} ended {status} "
            f"without a result; log tail: {logs[-600:]}",
        }
    text = json.dumps(found, separators=(",", ":"))
    if result is None:
        print(text)
    else:
        with open(result, "w") as f:
            f.write(text + "\n")
    return 0 if found.get("phase") == "Succeeded" else 1


def _follow(client: Any, submission_id: str) -> None:
    """Copy the job's log to stderr as it is written, until the job ends."""
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(submission_id):
            sys.stderr.write(chunk)

    asyncio.run(tail())
