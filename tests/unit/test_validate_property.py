"""Whatever a file holds, `flywheel validate` answers exit 0 or 1: never a traceback, never
a hang. Random bytes, random YAML trees, and the quickstart with random values spliced in."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel import cli
from tests.manifests import generated

PROPERTY = settings(
    max_examples=150,
    deadline=2000,  # ms per example: a hang fails, it does not wait
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def validate(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["validate", "-f", str(path)])
    assert code in (0, 1)
    return code


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(generated.YAML11_WORDS + generated.NUMBER_SPELLINGS),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["apiVersion", "kind", "metadata", "name", "spec", "source", "n", "y"]),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=40,
)


@PROPERTY
@given(data=st.binary(max_size=2000))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    validate(tmp_path / "random.yaml", data)


@PROPERTY
@given(tree=trees, kind=st.sampled_from(["Dataset", "ModelDeployment", "List", None]))
def test_random_yaml_trees(tmp_path: Path, tree: Any, kind: str | None) -> None:
    doc = {"apiVersion": "flywheel.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}}
    doc["spec"] = tree
    for body in (tree, doc):
        validate(tmp_path / "tree.yaml", yaml.safe_dump(body, allow_unicode=True).encode())


@PROPERTY
@given(
    index=st.integers(min_value=0, max_value=2000),
    raw=st.one_of(
        st.sampled_from(generated.YAML11_WORDS + generated.NUMBER_SPELLINGS),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    ),
)
def test_quickstart_with_a_spliced_value(tmp_path: Path, index: int, raw: str) -> None:
    text = (generated.QUICKSTART / "04-modeldeployment.yaml").read_text()
    at = index % len(text)
    validate(tmp_path / "md.yaml", (text[:at] + raw + text[at:]).encode())
