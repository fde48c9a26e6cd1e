"""Static checks of the two Dockerfiles (no Docker engine needed): exact base tags, a
multi-stage build, a non-root final user, exec-form entrypoints that exist as console
scripts, and a .dockerignore that lets exactly the copied sources in."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGES = {
    "operator": (REPO_ROOT / "operator" / "Dockerfile", "flywheel-operator"),
    "runtime": (REPO_ROOT / "runtime" / "Dockerfile", "flywheel"),
}
EXACT_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "git", "curl", "wget")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    result = []
    for line in joined:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages(path: Path) -> list[Stage]:
    """Stages with ${ARG} in FROM resolved from the global ARG defaults."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base, name))
        elif keyword == "ARG" and not found and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value.strip("\"'")
        elif found:
            found[-1].instructions.append((keyword, rest))
    return found


@pytest.fixture(params=sorted(IMAGES))
def image(request: pytest.FixtureRequest) -> tuple[str, Path, str]:
    name = request.param
    path, entrypoint = IMAGES[name]
    return name, path, entrypoint


def test_base_images_are_exact_tags(image: tuple[str, Path, str]) -> None:
    _, path, _ = image
    for stage in stages(path):
        if stage.base in {s.name for s in stages(path)}:
            continue  # FROM an earlier stage
        assert EXACT_BASE.match(stage.base), f"{path}: FROM {stage.base} is not an exact tag"
        assert "latest" not in stage.base


def test_both_images_share_one_base() -> None:
    bases = {stages(path)[-1].base for path, _ in IMAGES.values()}
    assert len(bases) == 1, bases


def test_multi_stage_with_non_root_final_user(image: tuple[str, Path, str]) -> None:
    _, path, _ = image
    all_stages = stages(path)
    assert len(all_stages) >= 2, f"{path}: not a multi-stage build"
    final = all_stages[-1]
    copies = [rest for kw, rest in final.instructions if kw == "COPY"]
    assert any(c.startswith("--from=") for c in copies), "final stage copies nothing built"
    users = [rest for kw, rest in final.instructions if kw == "USER"]
    assert users, f"{path}: final stage runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and int(user) == 10001, users[-1]
    # Nothing may switch back to root after USER, nor install build tools in the final stage.
    runs = " ".join(rest for kw, rest in final.instructions if kw == "RUN")
    assert "apt-get install" not in runs and "pip install" not in runs, runs
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", runs), tool


def test_entrypoint_is_a_declared_console_script(image: tuple[str, Path, str]) -> None:
    name, path, entrypoint = image
    final = stages(path)[-1]
    (exec_form,) = [rest for kw, rest in final.instructions if kw == "ENTRYPOINT"]
    assert exec_form == f'["{entrypoint}"]'
    scripts = tomllib.loads((REPO_ROOT / name / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint in scripts


def test_runtime_extras_are_a_build_argument() -> None:
    path, _ = IMAGES["runtime"]
    build = stages(path)[0]
    args = dict(rest.partition("=")[::2] for kw, rest in build.instructions if kw == "ARG")
    assert args.get("EXTRAS") == "data"
    assert args.get("EXTRA_INDEX_URL") == '""', "PyPI only unless asked"
    runs = " ".join(rest for kw, rest in build.instructions if kw == "RUN")
    assert "./runtime[${EXTRAS}]" in runs


def test_dockerignore_lets_in_exactly_what_is_copied() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context should be an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for path, _ in IMAGES.values():
        for stage in stages(path):
            for kw, rest in stage.instructions:
                if kw == "COPY" and not rest.startswith("--from="):
                    copied |= {src.rstrip("/") for src in rest.split()[:-1]}
    assert copied <= allowed, copied - allowed
    for src in allowed:
        assert (REPO_ROOT / src).exists(), src
