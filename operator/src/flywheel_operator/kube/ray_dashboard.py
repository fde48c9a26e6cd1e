"""The log of a RayJob's Ray job, from the Ray dashboard KubeRay points it at.

A TrainingJob's progress (e.g. `epoch 7/20`) is in that log while the job runs: the
entrypoint prints a `flywheel-progress {json}` line per epoch. The submitter Pod follows
the same log but holds no API token, so it cannot write status; the operator reads the log
where KubeRay itself reads the job's state: `status.dashboardURL` (the head Service,
port 8265) and `status.jobId`, with the Ray Jobs REST API. Reading is best effort: no
answer means no progress shown, never a failed reconcile.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Protocol

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 3.0


class JobLogs(Protocol):
    def __call__(self, dashboard_url: str, job_id: str, /) -> str | None:
        """The Ray job's log so far, or None when it cannot be read."""
        ...


def read_job_logs(dashboard_url: str, job_id: str, /) -> str | None:
    base = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
    url = f"{base.rstrip('/')}/api/jobs/{urllib.parse.quote(job_id, safe='')}/logs"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as e:  # URLError and timeouts are OSErrors
        log.debug("no log of Ray job %s from %s: %s", job_id, base, e)
        return None
    logs = body.get("logs") if isinstance(body, dict) else None
    return logs if isinstance(logs, str) else None
