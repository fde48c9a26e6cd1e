"""`kubectl flywheel rollout ...` as a user types it: kubectl finds the `kubectl-flywheel`
executable the operator package installs on PATH, and the operator on the real API server
honours the actions it writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import ControlPlane, Kubectl, wait_for
from tests.integration.test_operator import free_port, running_operator

BIN = Path(sys.executable).parent


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "backend": "triton",
            "stable": {"modelName": "churn", "version": "v1"},
            "candidate": {"modelName": "churn", "version": "v2"},
            "scaleDownDelay": "3s",
            "rollout": {
                "strategy": "canary",
                "canary": {"steps": [{"weight": 20}, {"weight": 50}, {"weight": 100}]},
            },
        },
    }


def plugin(control_plane: ControlPlane, namespace: str) -> tuple[list[str], dict[str, str]]:
    """The argv prefix and environment of `kubectl flywheel` (the plugin found on PATH)."""
    tools = control_plane.tools
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig),
           "PATH": os.pathsep.join([str(BIN), tools.path_env()])}  # fmt: skip
    return [str(tools.kubectl), "flywheel", "-n", namespace], env


def test_rollout_status_promote_and_undo_through_the_plugin(
    control_plane: ControlPlane,
    namespace: str,
    kubectl: Kubectl,
    flywheel_crds: list[str],
    tmp_path: Path,
) -> None:
    argv, env = plugin(control_plane, namespace)

    def flywheel(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        run = subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=60)
        assert not check or run.returncode == 0, run.stderr
        return run

    # Nothing answers on this port: every analysis is inconclusive, the canary holds.
    router = {"FLYWHEEL_ROUTER_URL": f"http://127.0.0.1:{free_port()}",
              "FLYWHEEL_ROLLOUT_SECONDS": "1"}  # fmt: skip
    log = tmp_path / "operator.log"
    with running_operator(
        control_plane, namespace, log, "file:///var/lib/flywheel/", extra_env=router
    ):
        kubectl.apply(yaml.safe_dump(deployment()))
        wait_for(
            lambda: (kubectl.get("md", "churn").get("status") or {}).get("stepSummary") == "1/3",
            what="the canary at its first step",
            timeout=60,
        )
        shown = flywheel("rollout", "status", "md/churn").stdout
        assert "Candidate:     v2" in shown and "Traffic:       v1=80 v2=20" in shown, shown
        assert "1. weight 20%  now" in shown and "3. weight 100%" in shown, shown
        assert "Analysis:      Inconclusive" in shown, shown

        # `status -w` follows the rollout until it finishes: here, the user promotes it.
        with subprocess.Popen(
            [*argv, "rollout", "status", "md/churn", "-w", "--timeout", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        ) as watching:  # fmt: skip
            said = flywheel("rollout", "promote", "md/churn").stdout
            assert "promote requested" in said, said
            out, err = watching.communicate(timeout=120)
        assert watching.returncode == 0, err
        assert "Phase:         Promoted" in out, out
        kubectl.wait("--for=condition=Promoted", "md/churn", timeout=60)
        md = kubectl.get("md", "churn")
        assert md["status"]["stableVersion"] == "v2" and md["status"]["traffic"] == {"v2": 100.0}
        assert md["status"]["lastAction"].startswith("promote@")
        told = kubectl.items("event", "--field-selector", "involvedObject.name=churn")
        assert ("Normal", "promoted by the user") in {
            (e["type"], e["message"]) for e in told if e["reason"] == "RolloutAction"
        }
        # The stable of before stays warm (no traffic) for previousStableWindow: undo is instant.
        assert kubectl.exists("deployment", "churn-v1")

        flywheel("rollout", "undo", "md/churn")
        kubectl.wait("--for=condition=RolledBack", "md/churn", timeout=60)
        md = kubectl.get("md", "churn")
        assert md["status"]["stableVersion"] == "v1" and md["status"]["traffic"] == {"v1": 100.0}
        finished = flywheel("rollout", "status", "md/churn", "-w", check=False)
        assert finished.returncode == 1 and "Phase:         RolledBack" in finished.stdout
        # The demoted version is scaled down after scaleDownDelay.
        wait_for(
            lambda: not kubectl.exists("deployment", "churn-v2"),
            what="the demoted candidate's Deployment pruned after scaleDownDelay",
            timeout=60,
        )
        events = kubectl.items("event", "--field-selector", "involvedObject.name=churn")
        assert [e["reason"] for e in events].count("RolloutAction") == 2

        # A second undo has nothing to undo: the operator says why, nothing changes.
        flywheel("rollout", "undo", "md/churn")
        wait_for(
            lambda: (
                sum(
                    e["reason"] == "RolloutAction" and e["type"] == "Warning"
                    for e in kubectl.items("event", "--field-selector", "involvedObject.name=churn")
                )
                == 1
            ),
            what="the refused undo's Warning event",
            timeout=60,
        )
        assert kubectl.get("md", "churn")["status"]["stableVersion"] == "v1"

    bad = flywheel("rollout", "status", "deploy/churn", check=False)
    assert bad.returncode == 2 and "md/<name>" in bad.stderr
