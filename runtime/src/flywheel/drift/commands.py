"""`flywheel drift ...`: the command the monitor's CronJob runs.

flywheel drift run -f manifests/ --name churn-drift --result out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flywheel import entrypoints
from flywheel.api.driftmonitor import DriftMonitor, DriftMonitorStatus


def register(sub: Any) -> None:
    p = sub.add_parser("drift", help="DriftMonitor work: compare live traffic with the reference")
    dsub = p.add_subparsers(dest="drift_command", required=True, metavar="COMMAND")
    r = dsub.add_parser("run", help="test the latest window; write status, report and metrics")
    entrypoints.add_object_arguments(r)
    r.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from flywheel.drift import runner

    monitor, context = entrypoints.select_object(args, "DriftMonitor")
    assert isinstance(monitor, DriftMonitor)
    status = runner.run_driftmonitor(monitor, context)
    entrypoints.write_result(args.result, runner.fit_result(status, fits_result))
    ready = status.conditions[0] if status.conditions else None
    if status.phase == "Failed" and ready is not None:
        print(f"DriftMonitor/{monitor.name}: {ready.reason}: {ready.message}", file=sys.stderr)
        return 1
    drifted = ", ".join(status.drifted_features) or "-"
    print(
        f"DriftMonitor/{monitor.name}: {status.verdict} ({status.samples} requests; "
        f"drifted: {drifted}); report {status.report_uri}",
        file=sys.stderr,
    )
    return 0


def fits_result(status: DriftMonitorStatus) -> bool:
    text = json.dumps(entrypoints.result_of(status), separators=(",", ":"))
    return len(text.encode()) <= entrypoints.RESULT_LIMIT_BYTES
