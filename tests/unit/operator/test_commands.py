"""Every command the operator puts into a Pod exists: the CLI's own parser accepts it.

Commands that later work adds are listed once, in NOT_YET_BUILT. Such a command must not
parse yet (so the list cannot go stale: whoever builds it removes it here), and every
command not listed must parse.
"""

from __future__ import annotations

import importlib
import shlex
from typing import Any

import pytest
import yaml

from flywheel import cli
from flywheel_operator.builders import dataset
from flywheel_operator.settings import Settings
from tests.unit.operator.children import all_children
from tests.unit.operator.conftest import model, owners

NOT_YET_BUILT: set[str] = set()  # every command the builders emit exists
SETTINGS = Settings(runtime_image="flywheel/runtime:test", artifact_root="s3://ml/flywheel")


def _children() -> list[dict[str, Any]]:
    body = owners()["Dataset/customer-events"]
    body["spec"]["refresh"] = {"schedule": "@daily"}  # the CronJob too
    return [*all_children(SETTINGS), *dataset.build(body, model(body), SETTINGS)]


def commands_in(obj: Any) -> list[tuple[str, list[str]]]:
    """(name, argv) of every flywheel command in a manifest; argv without `flywheel`.

    Containers whose command is `flywheel`, RayJob entrypoints, and the import paths of
    Serve applications (argv empty).
    """
    found: list[tuple[str, list[str]]] = []
    if isinstance(obj, dict):
        if obj.get("command") == ["flywheel"]:
            found.append((_name(obj["args"]), obj["args"]))
        entrypoint = obj.get("entrypoint")
        if isinstance(entrypoint, str):
            words = shlex.split(entrypoint)
            assert words[0] == "flywheel", entrypoint
            found.append((_name(words[1:]), words[1:]))
        if isinstance(obj.get("serveConfigV2"), str):
            for app in yaml.safe_load(obj["serveConfigV2"])["applications"]:
                found.append((app["import_path"], []))
        for value in obj.values():
            found += commands_in(value)
    elif isinstance(obj, list):
        for value in obj:
            found += commands_in(value)
    return found


def _name(argv: list[str]) -> str:
    return " ".join(["flywheel", *argv[:2]])


COMMANDS = sorted({(name, tuple(argv)) for name, argv in commands_in(_children())})


def exists(name: str, argv: list[str]) -> bool:
    if not argv:  # a "module:function" import path
        module, _, function = name.partition(":")
        try:
            return hasattr(importlib.import_module(module), function)
        except ModuleNotFoundError:
            return False
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def test_the_builders_run_commands_of_every_kind() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"flywheel dataset ingest", "flywheel features materialize"} <= names
    assert names >= NOT_YET_BUILT, f"listed but no builder runs it: {NOT_YET_BUILT - names}"


@pytest.mark.parametrize(("name", "argv"), COMMANDS, ids=[" ".join(c[1]) or c[0] for c in COMMANDS])
def test_every_command_parses_unless_not_yet_built(
    name: str, argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    if name in NOT_YET_BUILT:
        assert not exists(name, list(argv)), f"{name} exists now: remove it from NOT_YET_BUILT"
    else:
        assert exists(name, list(argv)), capsys.readouterr().err
