"""`kubectl-flywheel`: the kubectl plugin for watching and steering rollouts.

    kubectl flywheel rollout status md/NAME [-w] [-n NS]   steps, weights, the last analysis
    kubectl flywheel rollout promote md/NAME               the candidate becomes stable now
    kubectl flywheel rollout abort md/NAME                 back to stable now
    kubectl flywheel rollout undo md/NAME                  after a promotion: stable of before

The actions write the `flywheel.dev/rollout-action` annotation ("<action>@<time>"); the
operator acts once per value and records it in `status.lastAction`. kubectl hands the
plugin every flag after its name, so it takes `-n` and `--kubeconfig` itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from flywheel.api.modeldeployment import ROLLOUT_ACTION_ANNOTATION, RolloutAction

GROUP, VERSION, PLURAL = "flywheel.dev", "v1alpha1", "modeldeployments"
KIND_NAMES = {"md", "mds", "modeldeployment", "modeldeployments", f"modeldeployment.{GROUP}",
              f"modeldeployments.{GROUP}"}  # fmt: skip
FINISHED = {"Promoted": 0, "RolledBack": 1}  # phase -> exit code of `status -w`


class UsageError(Exception):
    pass


def object_name(ref: str) -> str:
    """`md/churn` (or `modeldeployment/churn`, or `churn`) -> `churn`.

    >>> object_name("md/churn")
    'churn'
    """
    kind, _, name = ref.rpartition("/")
    if (kind and kind.lower() not in KIND_NAMES) or not name:
        raise UsageError(f"{ref!r}: name a ModelDeployment as md/<name>, e.g. md/churn")
    return name


def describe(md: dict[str, Any]) -> str:
    """What `rollout status` prints: phase, versions, steps with weights, the analysis."""
    spec, status = md.get("spec") or {}, md.get("status") or {}
    rollout = spec.get("rollout") or {}
    strategy = rollout.get("strategy", "none")
    lines = [
        f"Name:          {md['metadata']['name']}",
        f"Namespace:     {md['metadata'].get('namespace', '')}",
        f"Phase:         {status.get('phase', '(not reconciled yet)')}",
        f"Strategy:      {strategy}",
        f"Stable:        {status.get('stableVersion') or '-'}",
        f"Candidate:     {status.get('candidateVersion') or '-'}",
        f"Traffic:       {status.get('trafficSummary') or '-'}",
    ]
    if status.get("previousStableVersion"):
        lines.append(f"Previous:      {status['previousStableVersion']} (undo returns to it)")
    steps = (rollout.get("canary") or {}).get("steps") or []
    if steps:
        current = status.get("step") or 0
        done = status.get("phase") == "Promoted"
        lines.append(f"Step:          {status.get('stepSummary') or '-'}")
        lines.append("Steps:")
        for i, step in enumerate(steps):
            mark = "done" if done or i < current else ("now" if i == current else "")
            pause = f", pause {step['pause']}" if step.get("pause") else ""
            lines.append(f"  {i + 1}. weight {step['weight']}%{pause}  {mark}".rstrip())
    analysis = status.get("lastAnalysis")
    if analysis:
        measured = [f"{analysis.get('requests', 0)} requests"]
        if analysis.get("errorRate") is not None:
            measured.append(f"error rate {analysis['errorRate']:.4f}")
        if analysis.get("p99LatencyMs") is not None:
            measured.append(f"p99 {analysis['p99LatencyMs']:.1f}ms")
        lines.append(
            f"Analysis:      {analysis.get('decision')} at {analysis.get('time')}: "
            f"{analysis.get('message', '')} ({', '.join(measured)})"
        )
    if status.get("lastAction"):
        lines.append(f"Last action:   {status['lastAction']}")
    conditions = " ".join(f"{c['type']}={c['status']}" for c in status.get("conditions") or [])
    lines.append(f"Conditions:    {conditions or '-'}")
    return "\n".join(lines)


def _api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return client.CustomObjectsApi()


def _namespace(given: str | None, kubeconfig: str | None) -> str:
    if given:
        return given
    from kubernetes import config

    _, current = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return str((current or {}).get("context", {}).get("namespace") or "default")


def status(api: Any, namespace: str, name: str, watch: bool, timeout: float) -> int:
    from kubernetes import watch as k8s_watch

    md = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    print(describe(md), flush=True)
    if not watch:
        return 0
    seen = md["metadata"]["resourceVersion"]
    phase = (md.get("status") or {}).get("phase")
    if phase in FINISHED:
        return FINISHED[phase]
    stream = k8s_watch.Watch().stream(  # type: ignore[no-untyped-call]
        api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
        field_selector=f"metadata.name={name}", resource_version=seen,
        timeout_seconds=int(timeout),
    )  # fmt: skip
    for event in stream:
        md = event["object"]
        if event["type"] == "DELETED":
            print(f"modeldeployment {name} was deleted", file=sys.stderr)
            return 1
        print("\n" + describe(md), flush=True)
        phase = (md.get("status") or {}).get("phase")
        if phase in FINISHED:
            return FINISHED[phase]
    print(f"error: {name} did not finish within --timeout {timeout:g}s", file=sys.stderr)
    return 1


def act(api: Any, namespace: str, name: str, action: RolloutAction) -> int:
    value = f"{action.value}@{datetime.now(UTC).isoformat().replace('+00:00', 'Z')}"
    patch = {"metadata": {"annotations": {ROLLOUT_ACTION_ANNOTATION: value}}}
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
    print(f"modeldeployment.{GROUP}/{name} {action.value} requested ({value})")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubectl flywheel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("-n", "--namespace", help="the ModelDeployment's namespace")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    sub = p.add_subparsers(dest="group", required=True)
    rollout = sub.add_parser("rollout", help="watch and steer a rollout")
    verbs = rollout.add_subparsers(dest="verb", required=True)
    for verb in ["status", *(a.value for a in RolloutAction)]:
        v = verbs.add_parser(verb)
        v.add_argument("ref", metavar="md/NAME")
        v.add_argument("-n", "--namespace", dest="namespace_", help=argparse.SUPPRESS)
        v.add_argument("--kubeconfig", dest="kubeconfig_", help=argparse.SUPPRESS)
        if verb == "status":
            v.add_argument("-w", "--watch", action="store_true", help="follow until it finishes")
            v.add_argument("--timeout", type=float, default=600, help="seconds -w waits at most")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    kubeconfig = args.kubeconfig_ or args.kubeconfig
    try:
        name = object_name(args.ref)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from kubernetes.client.exceptions import ApiException

    api = _api(kubeconfig)
    namespace = _namespace(args.namespace_ or args.namespace, kubeconfig)
    try:
        if args.verb == "status":
            return status(api, namespace, name, args.watch, args.timeout)
        return act(api, namespace, name, RolloutAction(args.verb))
    except ApiException as exc:
        if exc.status == 404:
            print(f"error: modeldeployment {name!r} not found in namespace {namespace}",
                  file=sys.stderr)  # fmt: skip
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
