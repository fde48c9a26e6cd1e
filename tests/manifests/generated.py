"""Manifests made from the quickstart by one change each: YAML 1.1 spellings, numeric
strings, special floats, int64 edges, unknown and snake_case fields, duplicate keys,
aliases, separators, encodings and metadata. Each goes through `flywheel validate` and
`kubectl apply --dry-run=server` in the parity test; most are refused by both.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from flywheel import kubeyaml, manifests

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
SENTINEL = "__FLYWHEEL_VALUE__"
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Unquoted spellings whose meaning depends on the YAML reader.
YAML11_WORDS = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off",
    "Off", "OFF", "true", "True", "TRUE", "false", "False", "FALSE", "~", "null", "Null",
    "NULL", "",
]  # fmt: skip
NUMBER_SPELLINGS = [
    "0x1F", "0o17", "0777", "08", "09.5", "1_000", "1e3", "1E3", "0b101", "-0b11", "+12",
    ".5", "1.", "1.0", "190:20:30", "2026-01-01", "2026-01-01T00:00:00Z", ".nan", ".NaN",
    ".inf", "-.Inf", "1e400", "1e-400", "9223372036854775807", "9223372036854775808",
    "18446744073709551615", "18446744073709551616", "-9223372036854775809", "1e18", "1e19",
    "0x8000000000000000", "'4'", '"4"', "'true'", '"no"', "4.5",
]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # also the file name
    content: bytes


@functools.cache
def quickstart_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(QUICKSTART.glob("*.yaml")):
        docs += [d.value for d in kubeyaml.read(path.read_bytes())]
    return docs


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {}) if isinstance(part, str) else obj[part]
    obj[path[-1]] = value


@functools.cache
def _closure(kind: str, name: str) -> frozenset[tuple[str, str]]:
    """The quickstart object and every object it needs, transitively."""
    docs = quickstart_documents()
    parsed = {(d["kind"], d["metadata"]["name"]): manifests.parse(d)[0] for d in docs}
    wanted: set[tuple[str, str]] = set()
    todo = [(kind, name)]
    while todo:
        key = todo.pop()
        if key not in wanted:
            wanted.add(key)
            resource = parsed[key]
            todo += resource.references() if resource is not None else []
    return frozenset(wanted)


def _needed(kind: str, name: str) -> list[dict[str, Any]]:
    wanted = _closure(kind, name)
    return [
        copy.deepcopy(d)
        for d in quickstart_documents()
        if (d["kind"], d["metadata"]["name"]) in wanted
    ]


def _with_raw(kind: str, name: str, path: tuple[Any, ...], raw: str) -> bytes:
    """The object at `path` written as `raw` YAML text, with the objects it needs."""
    docs = _needed(kind, name)
    _set(_find(docs, kind, name), path, SENTINEL)
    text = yaml.dump_all(docs, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
    return text.replace(SENTINEL, raw).encode()


def _with_key(kind: str, name: str, path: tuple[Any, ...], key: str, raw: str) -> bytes:
    docs = _needed(kind, name)
    target: Any = _find(docs, kind, name)
    for part in path:
        target = target[part]
    target[SENTINEL] = SENTINEL + "v"
    text = yaml.dump_all(docs, Dumper=_DUMPER, sort_keys=False, default_flow_style=False)
    return text.replace(SENTINEL + "v", raw).replace(SENTINEL, key).encode()


# (label, kind, name, path): where the spellings go.
VALUE_SITES = [
    ("column-name", "Dataset", "customer-events", ("spec", "schema", "columns", 3, "name")),
    ("allowed-value", "Dataset", "customer-events",
     ("spec", "schema", "columns", 3, "allowedValues", 0)),
    ("column-nullable", "Dataset", "customer-events", ("spec", "schema", "columns", 3, "nullable")),
    ("column-min", "Dataset", "customer-events", ("spec", "schema", "columns", 4, "min")),
    ("epochs", "TrainingJob", "churn-logistic", ("spec", "hyperparameters", "epochs")),
    ("seed", "TrainingJob", "churn-logistic", ("spec", "split", "seed")),
    ("model-param", "TrainingJob", "churn-mlp", ("spec", "model", "params", "dropout")),
    ("stable-version", "ModelDeployment", "churn", ("spec", "stable", "modelName")),
    ("label-value", "FeatureView", "customer-features", ("metadata", "labels", "tier")),
    ("ttl", "FeatureView", "customer-features", ("spec", "ttl")),
    ("start-time", "FeatureView", "customer-features", ("spec", "materialization", "startTime")),
    ("schedule", "DriftMonitor", "churn-drift", ("spec", "schedule")),
]  # fmt: skip

UNKNOWN_KEYS = [
    ("ModelDeployment", "churn", ("spec", "autoscaling"), "max_replicas", "3"),
    ("ModelDeployment", "churn", ("spec", "autoscaling"), "MaxReplicas", "3"),
    ("ModelDeployment", "churn", ("spec",), "replicas", "3"),
    ("TrainingJob", "churn-logistic", ("spec", "split"), "test_fraction", "0.3"),
    ("Dataset", "customer-events", ("metadata",), "labelz", "{}"),
    ("Dataset", "customer-events", ("spec",), "n", "1"),
    ("Dataset", "customer-events", ("spec",), "nullValue", "~"),
    ("Dataset", "customer-events", ("metadata",), "resourceVersion", '"1"'),
]

SMALL = """apiVersion: flywheel.dev/v1alpha1
kind: Dataset
metadata:
  name: events
spec:
  source:
    uri: s3://bucket/events.parquet
    format: parquet
  timestampColumn: ts
  schema:
    columns:
    - name: id
      type: string
    - name: ts
      type: timestamp
"""

STRUCTURAL: dict[str, bytes] = {
    "empty.yaml": b"",
    "only-comments.yaml": b"# nothing here\n# at all\n",
    "only-separators.yaml": b"---\n---\n# x\n---\n",
    "null-document.yaml": b"~\n",
    "separator-with-content.yaml": b"--- " + SMALL.encode(),
    "separator-with-comment.yaml": b"--- # first\n" + SMALL.encode(),
    "dashes-four.yaml": SMALL.encode() + b"----\n" + SMALL.replace("events", "e2").encode(),
    "document-end-marker.yaml": SMALL.encode() + b"...\n" + SMALL.replace("events", "e2").encode(),
    "duplicate-key.yaml": SMALL.replace("    format: parquet\n",
                                        "    format: parquet\n    format: csv\n").encode(),
    "duplicate-top-key.yaml": (SMALL + "kind: Dataset\n").encode(),
    "anchors.yaml": SMALL.replace("    - name: id\n      type: string\n",
                                  "    - &c {name: id, type: string}\n").replace(
        "    - name: ts\n      type: timestamp\n",
        "    - {<<: *c, name: ts, type: timestamp}\n").encode(),
    "merge-overrides-earlier-key.yaml": SMALL.replace(
        "    - name: ts\n      type: timestamp\n",
        "    - {name: ts, type: string, <<: {type: timestamp}}\n").encode(),
    "recursive-alias.yaml": (SMALL + "x: &a [*a]\n").encode(),
    "alias-bomb.yaml": (
        SMALL.replace("metadata:\n", "metadata:\n  annotations: {x: y}\n")
        + "bomb:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
                  for i in range(8))
    ).encode(),
    "deep-nesting.yaml": (SMALL + "deep: " + "[" * 200 + "]" * 200 + "\n").encode(),
    "tab-indent.yaml": SMALL.replace("    format", "\tformat").encode(),
    "kind-list.yaml": SMALL.replace("kind: Dataset", "kind: [Dataset]").encode(),
    "kind-number.yaml": SMALL.replace("kind: Dataset", "kind: 5").encode(),
    "no-apiversion.yaml": SMALL.replace("apiVersion: flywheel.dev/v1alpha1\n", "").encode(),
    "metadata-list.yaml": SMALL.replace("metadata:\n  name: events\n", "metadata: [events]\n")
    .encode(),
    "no-name.yaml": SMALL.replace("  name: events\n", "  labels: {a: b}\n").encode(),
    "uppercase-name.yaml": SMALL.replace("name: events", "name: Events").encode(),
    "label-key-bad.yaml": SMALL.replace("metadata:\n", "metadata:\n  labels: {'a b': c}\n")
    .encode(),
    "label-value-number.yaml": SMALL.replace("metadata:\n", "metadata:\n  labels: {a: 1}\n")
    .encode(),
    "label-value-long.yaml": SMALL.replace(
        "metadata:\n", "metadata:\n  labels: {a: " + "x" * 64 + "}\n").encode(),
    "annotation-ok.yaml": SMALL.replace("metadata:\n", "metadata:\n  annotations: {a: '1'}\n")
    .encode(),
    "annotation-number.yaml": SMALL.replace("metadata:\n", "metadata:\n  annotations: {a: 1}\n")
    .encode(),
    "creation-timestamp-null.yaml": SMALL.replace(
        "metadata:\n", "metadata:\n  creationTimestamp: null\n").encode(),
    "huge-annotation.yaml": SMALL.replace(
        "metadata:\n", "metadata:\n  annotations: {big: " + "x" * 140_000 + "}\n").encode(),
    "finalizers-number.yaml": SMALL.replace("metadata:\n", "metadata:\n  finalizers: [1]\n")
    .encode(),
    "finalizers-ok.yaml": SMALL.replace(
        "metadata:\n", "metadata:\n  finalizers: [example.com/keep]\n").encode(),
    "server-fields.yaml": SMALL.replace(
        "metadata:\n", "metadata:\n  uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n"
        "  resourceVersion: '12'\n  generation: 3\n  creationTimestamp: '2026-01-01T00:00:00Z'\n"
    ).encode(),
    "generate-name-only.yaml": SMALL.replace("  name: events\n", "  generateName: events-\n")
    .encode(),
    "status-garbage.yaml": (SMALL + "status: {rows: many}\n").encode(),
    "spec-null.yaml": SMALL.split("spec:")[0].encode() + b"spec: ~\n",
    "null-optional.yaml": SMALL.replace("      type: timestamp\n",
                                        "      type: timestamp\n      nullable: ~\n").encode(),
    "null-in-list.yaml": SMALL.replace("    columns:\n", "    columns:\n    - ~\n").encode(),
    "binary-tag.yaml": SMALL.replace("name: id", "name: !!binary aWQ=").encode(),
    "str-tag.yaml": SMALL.replace("      type: string\n", "      type: !!str string\n").encode(),
    "custom-tag.yaml": SMALL.replace("name: id", "name: !Ref id").encode(),
    "int-tag-on-text.yaml": SMALL.replace("name: id", "name: !!int id").encode(),
    "null-key.yaml": (SMALL + "~: x\n").encode(),
    "number-key.yaml": (SMALL + "1: x\n").encode(),
    "bool-key.yaml": (SMALL + "y: x\n").encode(),
    "credentials-in-uri.yaml": SMALL.replace("s3://bucket", "s3://AKIA1:s3cr3t@bucket").encode(),
    "token-in-uri.yaml": SMALL.replace("s3://bucket/events.parquet",
                                       "https://token@example.com/events.parquet").encode(),
    "bom.yaml": b"\xef\xbb\xbf" + SMALL.encode(),
    "utf16.yaml": SMALL.encode("utf-16"),
    "latin1.yaml": SMALL.replace("name: id", "name: caf\xe9").encode("latin-1"),
    "nul-bytes.yaml": SMALL.encode() + b"\0\0\0",
    "control-char.yaml": SMALL.replace("name: id", "name: 'i\x07d'").encode(),
    "regex-backreference.yaml": SMALL.replace(
        "      type: string\n", "      type: string\n      regex: '(a)\\1'\n").encode(),
    "regex-lookahead.yaml": SMALL.replace(
        "      type: string\n", "      type: string\n      regex: 'a(?=b)'\n").encode(),
    "cron-arabic-digits.yaml": (SMALL + "  refresh: {schedule: '\u0665 * * * *'}\n").encode(),
    "cron-unicode-space.yaml": (SMALL + "  refresh: {schedule: '5\u2003*\u2003*\u2003*\u2003*'}\n")
    .encode(),
    "timestamp-format-none.yaml": SMALL.replace(
        "      type: timestamp\n", "      type: timestamp\n      timestampFormat: yyyy-mm-dd\n")
    .encode(),
    "timestamp-format-f.yaml": SMALL.replace(
        "      type: timestamp\n",
        "      type: timestamp\n      timestampFormat: '%Y-%m-%d %H:%M:%S.%f'\n").encode(),
    "csv-delimiter-is-quote.yaml": SMALL.replace(
        "    format: parquet\n", "    format: csv\n    csv: {delimiter: '\"'}\n").encode(),
    "json-ok.json": json.dumps(yaml.safe_load(SMALL)).encode(),
    "json-nan.json": json.dumps(yaml.safe_load(SMALL)).replace('"ts"}]', '"ts", "min": NaN}]')
    .encode(),
    "json-duplicate.json": json.dumps(yaml.safe_load(SMALL)).replace(
        '"kind": "Dataset"', '"kind": "Dataset", "kind": "Dataset"').encode(),
    "json-stream.json": (json.dumps(yaml.safe_load(SMALL))
                         + json.dumps(yaml.safe_load(SMALL.replace("events", "e2")))).encode(),
    "json-big-int.json": json.dumps(yaml.safe_load(SMALL)).replace(
        '"format": "parquet"', '"format": "parquet", "x": 1e400').encode(),
}  # fmt: skip


def cases() -> Iterator[Case]:
    for label, kind, name, path in VALUE_SITES:
        for i, raw in enumerate(YAML11_WORDS + NUMBER_SPELLINGS):
            yield Case(f"{label}-{i:02d}.yaml", _with_raw(kind, name, path, raw))
    for i, (kind, name, path, key, raw) in enumerate(UNKNOWN_KEYS):
        yield Case(f"key-{i:02d}-{key}.yaml", _with_key(kind, name, path, key, raw))
    for i, ttl in enumerate(["99999999999w", "36501d", "36500d", "0.5s", "1h30m", "00s"]):
        yield Case(f"ttl-value-{i}.yaml", _with_raw("FeatureView", "customer-features",
                                                    ("spec", "ttl"), ttl))  # fmt: skip
    for name, content in STRUCTURAL.items():
        yield Case(name, content)
