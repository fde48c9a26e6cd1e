"""Generate the CustomResourceDefinitions from the api models.

Pydantic's JSON schema is turned into a Kubernetes *structural* schema: references
inlined, `null` alternatives dropped (the API server prunes nulls), int-or-string marked,
free-form maps marked with `x-kubernetes-preserve-unknown-fields`, draft-2020 exclusive
bounds rewritten to the OpenAPI v3.0 form, and defaults (including those of
`default_factory`) written out so the API server fills in what the models would.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema, to_jsonable_python

from flywheel import api
from flywheel.api.common import GROUP, VERSION, Resource

CATEGORY = "flywheel"
_DROP_KEYS = {"title", "discriminator", "examples"}


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, but defaults from factories are written out too."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            schema = {**schema, "default": factory()}  # type: ignore[call-arg]
            schema.pop("default_factory", None)
        return super().default_schema(schema)

    def encode_default(self, dft: Any) -> Any:
        return to_jsonable_python(dft, by_alias=True, exclude_none=True)


def structural_schema(model: type[Resource]) -> dict[str, Any]:
    """The openAPIV3Schema of one kind."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_Generator)
    defs = raw.get("$defs", {})
    props = raw["properties"]
    return {
        "type": "object",
        "description": (model.__doc__ or model.kind_name).strip().splitlines()[0],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _convert(props["spec"], defs),
            "status": _convert(props["status"], defs),
        },
        "required": ["spec"],
    }


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _inline(node, defs)
    if "anyOf" in node:
        node = _collapse_any_of(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS or (key == "default" and value is None):
            continue
        if key == "properties":
            out["properties"] = {k: _convert(v, defs) for k, v in value.items()}
        elif key == "items":
            out["items"] = _convert(value, defs)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:
                out["additionalProperties"] = _convert(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        else:
            out[key] = value
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _inline(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Replace a $ref (alone or as the only allOf member) by the definition it names."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        merged = {**target, **siblings}
        rules = target.get("x-kubernetes-validations", []) + siblings.get(
            "x-kubernetes-validations", []
        )
        if rules:
            merged["x-kubernetes-validations"] = rules
        return _inline(merged, defs)
    return node


def _collapse_any_of(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    options = [_inline(o, defs) for o in node["anyOf"] if o.get("type") != "null"]
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if len(options) == 1:
        return {**options[0], **rest}
    types = {o.get("type") for o in options}
    if types == {"integer", "string"}:
        extra = {k: v for o in options for k, v in o.items() if k in ("maxLength",)}
        return {"x-kubernetes-int-or-string": True, **extra, **rest}
    raise ValueError(f"cannot express anyOf {node['anyOf']} in a structural schema")


def crd(model: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{model.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "flywheel"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": model.kind_name,
                "listKind": f"{model.kind_name}List",
                "plural": model.plural,
                "singular": model.kind_name.lower(),
                "shortNames": list(model.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in model.printer_columns],
                    "schema": {"openAPIV3Schema": structural_schema(model)},
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for every kind."""
    return {f"{GROUP}_{m.plural}.yaml": crd(m) for m in api.KINDS.values()}


class _NoAliasDumper(yaml.SafeDumper):
    """Shared sub-schemas are written out in full: no YAML anchors in a CRD."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(obj: dict[str, Any]) -> str:
    header = "# Generated from the flywheel.api models by `make crds`; do not edit.\n"
    return header + yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=False, width=100)
