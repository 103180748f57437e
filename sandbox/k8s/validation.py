"""Validate writes as the API server does, against the real schemas of the pinned version.

Three outcomes, in the order the real server reaches them:
1. decoding: a value of the wrong JSON type (`replicas: "two"`) cannot be decoded into the Go struct → 400
   BadRequest ("Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal …");
2. unknown fields: accepted with a `Warning: unknown field "spec.foo"` header, or 400 with
   `fieldValidation=Strict` (strict decoding error);
3. validation: missing required fields, invalid names and values → 422 Invalid with one cause per field.

Types, required fields and unknown fields come from kubernetes-validate's schemas (plain and `-strict`). The
few semantic rules the OpenAPI cannot express (object names, non-empty container lists, a Deployment's selector
matching its template) are written after the API server's own validation (pkg/apis/*/validation); each rule
names the field it checks.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from . import catalog

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation "
    "is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
# Kinds whose names must be DNS labels rather than subdomains (apimachinery NameIsDNS1035Label / DNSLabel).
DNS1035_NAMED = {"Service"}
LABEL_NAMED = {"Namespace"}
GO_TYPES = {
    "integer": "int32",
    "string": "string",
    "boolean": "bool",
    "array": "[]",
    "object": "map",
    "number": "float64",
}


@dataclass
class Cause:
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueDuplicate
    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class Outcome:
    bad_request: str | None = None  # 400 message
    causes: list[Cause] = field(default_factory=list)  # 422 when not empty
    warnings: list[str] = field(default_factory=list)


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@functools.cache
def _validator(schema_name: str, strict: bool) -> Draft202012Validator:
    defs_id = "https://kubernetes.io/api/_definitions.json"
    contents = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": defs_id,
        "$defs": catalog.definitions(strict=strict),
    }
    registry = Registry().with_resource(defs_id, Resource.from_contents(contents))
    return Draft202012Validator({"$ref": f"{defs_id}#/$defs/{schema_name}"}, registry=registry)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _leaf_errors(errors: Any) -> list:
    """Flatten oneOf/anyOf/$ref error trees to the errors on the deepest paths."""
    leaves = []
    for error in errors:
        if error.context:
            leaves.extend(_leaf_errors(error.context))
        else:
            leaves.append(error)
    return leaves


def validate(obj: dict, resource: catalog.Resource, strict_fields: bool = False) -> Outcome:
    """Check `obj` (the complete object after defaults/patches) for `resource`."""
    outcome = Outcome()
    if resource.crd_schema is not None:
        return _validate_custom(obj, resource, outcome)
    assert resource.schema_name is not None
    kind, version = resource.kind, resource.version
    for error in sorted(_validator(resource.schema_name, False).iter_errors(obj), key=lambda e: list(e.path)):
        for leaf in _leaf_errors([error]):
            where = _path(leaf.absolute_path)
            if leaf.validator in ("type", "oneOf", "anyOf"):
                expected = leaf.validator_value if leaf.validator == "type" else "value"
                expected = next(t for t in expected if t != "null") if isinstance(expected, list) else expected
                go_type = GO_TYPES.get(expected, expected)
                outcome.bad_request = (
                    f'{kind} in version "{version}" cannot be handled as a {kind}: json: cannot unmarshal '
                    f"{_json_type(leaf.instance)} into Go struct field {where} of type {go_type}"
                )
                return outcome
            if leaf.validator == "required":
                missing = leaf.message.split("'")[1]
                outcome.causes.append(
                    Cause("FieldValueRequired", f"{where}.{missing}" if where else missing, "Required value")
                )
            elif leaf.validator == "enum" and where in ("apiVersion", "kind"):
                continue  # routing already matched group/version/kind
            else:
                outcome.causes.append(Cause("FieldValueInvalid", where, f"Invalid value: {leaf.message}"))
    for error in _validator(resource.schema_name, True).iter_errors(obj):
        for leaf in _leaf_errors([error]):
            if leaf.validator == "additionalProperties" and leaf.validator_value is False:
                base = _path(leaf.absolute_path)
                for name in sorted(set(leaf.instance) - set(leaf.schema.get("properties", {}))):
                    outcome.warnings.append(f'unknown field "{base + "." if base else ""}{name}"')
    if strict_fields and outcome.warnings:
        outcome.bad_request = "strict decoding error: " + ", ".join(outcome.warnings)
        return outcome
    outcome.causes.extend(_semantic(obj, resource))
    return outcome


def _name_causes(kind: str, name: Any, where: str = "metadata.name") -> list[Cause]:
    if not name:
        return [Cause("FieldValueRequired", where, "Required value: name or generateName is required")]
    if kind in DNS1035_NAMED:
        pattern, message, limit = DNS1035_LABEL, DNS1035_MSG, 63
    elif kind in LABEL_NAMED:
        pattern, message, limit = DNS1123_LABEL, LABEL_MSG, 63
    else:
        pattern, message, limit = DNS1123_SUBDOMAIN, SUBDOMAIN_MSG, 253
    if not pattern.match(name):
        return [Cause("FieldValueInvalid", where, f'Invalid value: "{name}": {message}')]
    if len(name) > limit:
        return [Cause("FieldValueInvalid", where, f'Invalid value: "{name}": must be no more than {limit} characters')]
    return []


def _pod_spec_causes(spec: dict, where: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(Cause("FieldValueRequired", f"{where}.containers", "Required value"))
    seen: set[str] = set()
    for index, container in enumerate([*containers, *(spec.get("initContainers") or [])]):
        base = (
            f"{where}.containers[{index}]"
            if index < len(containers)
            else f"{where}.initContainers[{index - len(containers)}]"
        )
        name = container.get("name") or ""
        if not DNS1123_LABEL.match(name):
            causes.append(
                Cause(
                    "FieldValueInvalid" if name else "FieldValueRequired",
                    f"{base}.name",
                    f'Invalid value: "{name}": {LABEL_MSG}' if name else "Required value",
                )
            )
        elif name in seen:
            causes.append(Cause("FieldValueDuplicate", f"{base}.name", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not container.get("image"):
            causes.append(Cause("FieldValueRequired", f"{base}.image", "Required value"))
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for index, container in enumerate(containers):
        for mount_index, mount in enumerate(container.get("volumeMounts") or []):
            if mount.get("name") not in volumes:
                causes.append(
                    Cause(
                        "FieldValueNotFound",
                        f"{where}.containers[{index}].volumeMounts[{mount_index}].name",
                        f'Not found: "{mount.get("name")}"',
                    )
                )
    return causes


def _semantic(obj: dict, resource: catalog.Resource) -> list[Cause]:
    meta = obj.get("metadata") or {}
    causes = _name_causes(resource.kind, meta.get("name"))
    spec = obj.get("spec") or {}
    template_kinds = {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"}
    if resource.kind == "Pod":
        causes += _pod_spec_causes(spec, "spec")
    elif resource.kind in template_kinds:
        template = spec.get("template") or {}
        causes += _pod_spec_causes(template.get("spec") or {}, "spec.template.spec")
        labels = (template.get("metadata") or {}).get("labels") or {}
        selector = spec.get("selector") or {}
        if resource.kind != "Job" and not selector:
            causes.append(Cause("FieldValueRequired", "spec.selector", "Required value"))
        wanted = selector.get("matchLabels") or {}
        if selector and any(labels.get(k) != v for k, v in wanted.items()):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    f"Invalid value: {labels!r}: `selector` does not match template `labels`",
                )
            )
        restart = (template.get("spec") or {}).get("restartPolicy")
        if resource.kind == "Job" and restart not in ("OnFailure", "Never"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    "spec.template.spec.restartPolicy",
                    f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"',
                )
            )
        replicas = spec.get("replicas")
        if isinstance(replicas, int) and replicas < 0:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    "spec.replicas",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
            )
    elif resource.kind == "Service":
        for index, port in enumerate(spec.get("ports") or []):
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.append(
                    Cause(
                        "FieldValueInvalid",
                        f"spec.ports[{index}].port",
                        f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                    )
                )
    return causes


def _crd_to_jsonschema(schema: Any) -> Any:
    """An openAPIV3Schema (structural schema) as JSON schema: int-or-string and nullable made explicit."""
    if not isinstance(schema, dict):
        return schema
    out = {k: _crd_to_jsonschema(v) if isinstance(v, dict) else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _crd_to_jsonschema(v) for k, v in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        out["items"] = _crd_to_jsonschema(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _crd_to_jsonschema(schema["additionalProperties"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            out[key] = [_crd_to_jsonschema(s) for s in schema[key]]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def prune_unknown(obj: Any, schema: dict, base: str = "") -> list[str]:
    """Drop fields a structural schema does not declare (as the API server prunes custom resources)."""
    pruned: list[str] = []
    if not isinstance(schema, dict):
        return pruned
    if isinstance(obj, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key in list(obj):
            here = f"{base}.{key}" if base else key
            if props is not None and key in props:
                pruned += prune_unknown(obj[key], props[key], here)
            elif isinstance(extra, dict):
                pruned += prune_unknown(obj[key], extra, here)
            elif (props is not None or extra is False) and not (
                base == "" and key in ("apiVersion", "kind", "metadata")
            ):
                del obj[key]
                pruned.append(here)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(obj):
            pruned += prune_unknown(item, schema["items"], f"{base}[{index}]")
    return pruned


def _validate_custom(obj: dict, resource: catalog.Resource, outcome: Outcome) -> Outcome:
    schema = resource.crd_schema or {}
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    properties = {
        k: v for k, v in (schema.get("properties") or {}).items() if k not in ("apiVersion", "kind", "metadata")
    }
    checked = _crd_to_jsonschema({**schema, "properties": properties})
    for error in sorted(Draft202012Validator(checked).iter_errors(body), key=lambda e: list(e.path)):
        for leaf in _leaf_errors([error]):
            where = _path(leaf.absolute_path)
            if leaf.validator == "required":
                missing = leaf.message.split("'")[1]
                outcome.causes.append(
                    Cause("FieldValueRequired", f"{where}.{missing}" if where else missing, "Required value")
                )
            elif leaf.validator == "type":
                outcome.causes.append(Cause("FieldValueTypeInvalid", where, f"Invalid value: {leaf.message}"))
            else:
                outcome.causes.append(Cause("FieldValueInvalid", where, f"Invalid value: {leaf.message}"))
    outcome.causes.extend(_name_causes(resource.kind, (obj.get("metadata") or {}).get("name")))
    return outcome
