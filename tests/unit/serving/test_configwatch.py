"""The router's ConfigMap watch: what it takes from an object, and what it needs from the
Pod. Against the API server: tests/integration/test_rollout.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.serving import configwatch


class Taken:
    def __init__(self) -> None:
        self.configs: list[bytes] = []

    def apply(self, new: bytes) -> bool:
        self.configs.append(new)
        return True


def credentials(tmp_path: Path) -> Path:
    for name, text in (("token", "t0k3n\n"), ("namespace", "ml\n"), ("ca.crt", "")):
        (tmp_path / name).write_text(text)
    return tmp_path


def cluster(tmp_path: Path) -> configwatch.InCluster:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    return configwatch.InCluster.from_env(env, credentials(tmp_path))


def test_the_pod_s_environment_names_the_api_server_and_the_account(tmp_path: Path) -> None:
    found = cluster(tmp_path)
    assert found.server == "https://10.96.0.1:443"
    assert (found.namespace(), found.token()) == ("ml", "t0k3n")
    six = configwatch.InCluster.from_env(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
        credentials(tmp_path),
    )
    assert six.server == "https://[fd00::1]:443"


def test_outside_a_pod_the_watch_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="KUBERNETES_SERVICE_HOST"):
        configwatch.InCluster.from_env({}, credentials(tmp_path))
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(ValueError, match="automountServiceAccountToken"):
        configwatch.InCluster.from_env(env, tmp_path / "nowhere")


def test_only_a_changed_router_config_is_applied(tmp_path: Path) -> None:
    router = Taken()
    watch = configwatch.ConfigMapWatch(router, cluster(tmp_path), "churn-router")
    assert watch.namespace == "ml"
    first = {"metadata": {"resourceVersion": "1"}, "data": {"router.json": '{"a": 1}'}}
    watch.take(first)
    # A label or an annotation changed: the same config, not applied again (a router
    # that took it again would start its rollout window over).
    watch.take({**first, "metadata": {"resourceVersion": "2", "labels": {"x": "y"}}})
    watch.take({"metadata": {"resourceVersion": "3"}, "data": {"router.json": '{"a": 2}'}})
    watch.take({"metadata": {"resourceVersion": "4"}, "data": {}})  # no config: kept
    assert router.configs == [b'{"a": 1}', b'{"a": 2}']


def test_watch_events_other_than_changes_are_ignored(tmp_path: Path) -> None:
    router = Taken()
    watch = configwatch.ConfigMapWatch(router, cluster(tmp_path), "churn-router")
    watch._on({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    watch._on({"type": "DELETED", "object": {"data": {"router.json": "{}"}}})
    assert router.configs == []
    watch._on({"type": "MODIFIED", "object": {"data": {"router.json": "{}"}}})
    assert router.configs == [b"{}"]
