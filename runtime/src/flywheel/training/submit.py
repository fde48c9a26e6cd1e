"""`flywheel train submit`: the RayJob's submitter.

KubeRay runs it in the submitter Pod with $RAY_DASHBOARD_ADDRESS and
$RAY_JOB_SUBMISSION_ID set. It submits the RayJob's entrypoint with the RayJob's
runtimeEnvYAML (both handed over by the operator in its env, as KubeRay's own submitter
would pass them) under that id, so KubeRay tracks the same job; a retried submitter Pod
finds the job already submitted and follows it. It follows the job's log to the end and
writes the run's result, the last JSON line of the log, to its own termination message:
that is how the model version and metrics reach the TrainingJob's status without an API
token or object-store access in the operator. It exits 0 exactly when the Ray job
succeeded with a result (a failed gate included: the result says so, and a retry could not
change it), so KubeRay retries only runs that broke.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flywheel import entrypoints
from flywheel.api.trainingjob import TrainingJob

ADDRESS_ENV = "RAY_DASHBOARD_ADDRESS"
SUBMISSION_ID_ENV = "RAY_JOB_SUBMISSION_ID"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# What Ray's dashboard says before the head's job agent is up; worth waiting for.
NO_AGENT = "No available agent to submit job"
AGENT_WAIT_SECONDS = 180.0


def entrypoint(artifact_root: str) -> str:
    """What a RayJob runs: progress lines for whoever follows the log, and a failed gate
    is a finished job (exit 0), not a failure to retry."""
    return shlex.join(
        [
            "flywheel",
            *entrypoints.ENTRYPOINTS["TrainingJob"].command,
            "--artifact-root",
            artifact_root,
            "--progress-lines",
            "--verdict-exit-code",
            "0",
        ]
    )


def submission(artifact_root: str, env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The entrypoint and runtime environment to submit: the RayJob's own when the
    operator handed them over, else built here from the object in the env."""
    if entrypoints.RAY_ENTRYPOINT_ENV in env:
        runtime_env = yaml.safe_load(env.get(entrypoints.RAY_RUNTIME_ENV_ENV) or "{}") or {}
        return env[entrypoints.RAY_ENTRYPOINT_ENV], dict(runtime_env)
    keep = (
        entrypoints.MANIFEST_ENV,
        entrypoints.INPUTS_ENV,
        entrypoints.INPUT_MANIFESTS_ENV,
        entrypoints.NAMESPACE_ENV,
    )
    return entrypoint(artifact_root), {"env_vars": {k: env[k] for k in keep if k in env}}


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
    command, runtime_env = submission(artifact_root, os.environ)
    env_vars = runtime_env.setdefault("env_vars", {})
    env_vars.setdefault(entrypoints.MANIFEST_ENV, json.dumps(job.to_wire()))
    # Given as files: the Ray job reads the inputs' specs (the join) from its env.
    inputs = [r.to_wire() for key, r in context.resources.items() if key != job.key]
    env_vars.setdefault(entrypoints.INPUT_MANIFESTS_ENV, json.dumps(inputs))
    client = JobSubmissionClient(address)
    submission_id = os.environ.get(SUBMISSION_ID_ENV)
    existing = None
    if submission_id:
        try:
            existing = client.get_job_info(submission_id)
        except RuntimeError:
            existing = None
    if existing is None:
        submission_id = _submit(client, command, submission_id, runtime_env)
    assert submission_id is not None
    _follow(client, submission_id)
    status = str(client.get_job_status(submission_id))
    logs = client.get_job_logs(submission_id)
    found = result_line(logs)
    # Exit 0 when the Ray job succeeded with a result, a failed gate included (`train run`
    # exits 0 for it: the result says Failed, and a retry could not change it).
    code = 0 if status == "SUCCEEDED" and found is not None else 1
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
    return code


def _submit(
    client: Any,
    command: str,
    submission_id: str | None,
    runtime_env: dict[str, Any],
    deadline_seconds: float = AGENT_WAIT_SECONDS,
    pause: float = 0.5,
) -> str:
    """Submit, waiting while the head's job agent is still starting: Ray answers "No
    available agent" until it registers, and a submitter Pod retried for that would spend
    the RayJob's backoff before any training ran."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            found: str = client.submit_job(
                entrypoint=command, submission_id=submission_id, runtime_env=runtime_env
            )
            return found
        except RuntimeError as exc:
            if NO_AGENT not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


def _follow(client: Any, submission_id: str) -> None:
    """Copy the job's log to stderr as it is written, until the job ends."""
    import asyncio

    async def tail() -> None:
        async for chunk in client.tail_job_logs(submission_id):
            sys.stderr.write(chunk)

    asyncio.run(tail())
