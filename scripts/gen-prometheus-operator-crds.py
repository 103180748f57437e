#!/usr/bin/env python3
"""Regenerate the sandbox's Prometheus Operator CRD bundle (sandbox/k8s/crds/prometheus-operator/).

    python3 scripts/gen-prometheus-operator-crds.py            # writes the bundle
    python3 scripts/gen-prometheus-operator-crds.py --check    # exit 1 if the files differ from what it would write

Source: the PyPI package ``cloudcoil-models-prometheus-operator``, pinned below (PACKAGE). Its pydantic models
are generated (by cloudcoil-model-codegen) from the CustomResourceDefinitions that Prometheus Operator releases
(upstream: prometheus-operator/prometheus-operator, example/prometheus-operator-crd/monitoring.coreos.com_*.yaml);
its version is the operator's plus a build number (0.80.1.0 = operator v0.80.1). No package reachable from this
project's machines (PyPI, npm, Debian) ships those YAML files verbatim: ``@kubernetes-models/prometheus-operator``
on npm only carries compiled validators. So the openAPIV3Schema is rebuilt from the models' JSON schema:

- kept: every field with its JSON name, type, ``required``, enums (``Literal``), patterns, min/max lengths and
  items, minimum/maximum, non-empty defaults, and each field's description (the models keep them as attribute
  docstrings; pydantic's ``use_attribute_docstrings`` turns them into descriptions);
- rebuilt: ``anyOf: [integer, string]`` → ``x-kubernetes-int-or-string: true`` (the form controller-gen writes),
  free-form maps (``Dict[str, Any]``) → ``x-kubernetes-preserve-unknown-fields: true``; a ``status`` subresource
  when the kind has a ``status`` field;
- lost: ``format`` (int32/int64), ``x-kubernetes-map-type``/``-list-type``/``-list-map-keys``,
  ``x-kubernetes-validations`` (CEL rules) and the descriptions of types (as opposed to fields).
  The emulator does not evaluate any of those, so what it accepts, prunes and rejects is unchanged.

The names (plural, short names, categories) are not in the models; NAMES below copies them from the upstream
CRDs. Needs network access to PyPI only: without the package importable, the script makes a throwaway virtualenv
under the system temp directory, installs the pinned package there and runs itself again with it. Nothing is added
to the project's requirements.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

PACKAGE = "cloudcoil-models-prometheus-operator"
PACKAGE_VERSION = "0.80.1.0"
OPERATOR_VERSION = ".".join(PACKAGE_VERSION.split(".")[:3])  # cloudcoil appends a build number
GROUP = "monitoring.coreos.com"
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "sandbox" / "k8s" / "crds" / "prometheus-operator"

# kind → (plural, singular, short names), as in upstream monitoring.coreos.com_<plural>.yaml (category
# "prometheus-operator" on each).
NAMES = {
    "ServiceMonitor": ("servicemonitors", "servicemonitor", ["smon"]),
    "PodMonitor": ("podmonitors", "podmonitor", ["pmon"]),
    "PrometheusRule": ("prometheusrules", "prometheusrule", ["promrule"]),
}
API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object.\n"
    "Servers should convert recognized schemas to the latest internal value, and\n"
    "may reject unrecognized values.\n"
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents.\n"
    "Servers may infer this from the endpoint the client submits requests to.\n"
    "Cannot be updated.\n"
    "In CamelCase.\n"
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
# JSON-schema keywords a structural openAPIV3Schema may carry (apiextensions.k8s.io/v1 JSONSchemaProps).
KEPT = {
    "type", "description", "default", "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minProperties", "maxProperties", "format",
}  # fmt: skip


def _bootstrap() -> None:
    """Run again inside a throwaway virtualenv holding the pinned package (and PyYAML)."""
    if os.environ.get("GEN_CRDS_BOOTSTRAPPED"):
        sys.exit(f"{PACKAGE}=={PACKAGE_VERSION} could not be imported even in the throwaway virtualenv")
    with tempfile.TemporaryDirectory(prefix="gen-prometheus-operator-crds-") as target:
        venv.create(target, with_pip=True)
        python = Path(target) / "bin" / "python"
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", f"{PACKAGE}=={PACKAGE_VERSION}", "pyyaml"],
            check=True,
        )
        env = {**os.environ, "GEN_CRDS_BOOTSTRAPPED": "1"}
        code = subprocess.run([python, __file__, *sys.argv[1:]], env=env, check=False).returncode
    sys.exit(code)


def _resolve(node: dict, defs: dict) -> dict:
    while "$ref" in node:
        merged = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **merged}
    return node


def structural(node: dict, defs: dict) -> dict:
    """A pydantic JSON schema node as an apiextensions.k8s.io/v1 structural schema node."""
    node = _resolve(node, defs)
    if "anyOf" in node:
        options = [_resolve(o, defs) for o in node["anyOf"] if _resolve(o, defs).get("type") != "null"]
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:  # Optional[X]
            return structural({**options[0], **outer}, defs)
        if sorted(o.get("type") for o in options) == ["integer", "string"]:  # Union[int, str]
            out = {k: v for k, v in outer.items() if k in KEPT and k != "type"}
            for option in options:  # constraints of the string form (a quantity's pattern) apply to the value
                out.update({k: v for k, v in option.items() if k in KEPT and k != "type"})
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            out["x-kubernetes-int-or-string"] = True
            return _drop_empty_default(out)
        raise ValueError(f"cannot express anyOf {options} as a structural schema")
    out = {k: copy.deepcopy(v) for k, v in node.items() if k in KEPT}
    if "const" in node:
        out["enum"] = [node["const"]]
    if node.get("type") == "object" or "properties" in node or "additionalProperties" in node:
        out["type"] = "object"
        properties = node.get("properties") or {}
        if properties:
            out["properties"] = {name: structural(sub, defs) for name, sub in properties.items()}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra, defs)
        elif (extra is True or extra == {}) or not properties:
            out["x-kubernetes-preserve-unknown-fields"] = True  # Dict[str, Any] / a free-form object
        if node.get("required"):
            out["required"] = list(node["required"])
    elif node.get("type") == "array":
        out["items"] = structural(node.get("items") or {}, defs)
    elif "type" not in node:  # Any
        out["x-kubernetes-preserve-unknown-fields"] = True
    return _drop_empty_default(out)


def _drop_empty_default(out: dict) -> dict:
    if out.get("default") is None:
        out.pop("default", None)  # pydantic's default None means "unset", not a CRD default
    return out


def crd(kind: str, model: type) -> dict:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    plural, singular, short_names = NAMES[kind]
    properties: dict = {
        "apiVersion": {"description": API_VERSION_DOC, "type": "string"},
        "kind": {"description": KIND_DOC, "type": "string"},
        "metadata": {"type": "object"},
    }
    for name, sub in schema["properties"].items():
        if name not in properties:
            properties[name] = structural(sub, defs)
    version: dict = {
        "name": "v1",
        "schema": {
            "openAPIV3Schema": {
                "properties": properties,
                "required": [r for r in schema.get("required", []) if r not in ("apiVersion", "kind", "metadata")],
                "type": "object",
            }
        },
        "served": True,
        "storage": True,
    }
    if "status" in properties:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "annotations": {
                "operator.prometheus.io/version": OPERATOR_VERSION,
                "sandbox.carbon254.io/source": f"{PACKAGE}=={PACKAGE_VERSION}",
            },
            "labels": {"sandbox.carbon254.io/bundle": "prometheus-operator"},
            "name": f"{plural}.{GROUP}",
        },
        "spec": {
            "group": GROUP,
            "names": {
                "categories": ["prometheus-operator"],
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "shortNames": short_names,
                "singular": singular,
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def render(document: dict) -> str:
    import yaml  # noqa: PLC0415 - present in the throwaway virtualenv

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)  # indented sequences, as yamllint's default wants

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    header = (
        f"# {document['metadata']['name']}: Prometheus Operator v{OPERATOR_VERSION} CustomResourceDefinition,\n"
        f"# generated by scripts/gen-prometheus-operator-crds.py from the PyPI package {PACKAGE}=={PACKAGE_VERSION}\n"
        "# (pydantic models generated from the upstream CRDs; see the script for what is kept and what is lost).\n"
        "# Do not edit: run the script.\n"
        "# yamllint disable rule:line-length\n"  # upstream descriptions keep their long lines
    )
    return header + "---\n" + yaml.dump(document, Dumper=Dumper, sort_keys=True, width=100, allow_unicode=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    try:
        installed = importlib.metadata.version(PACKAGE)
        import cloudcoil.pydantic  # noqa: PLC0415
    except (importlib.metadata.PackageNotFoundError, ImportError):
        _bootstrap()
    if installed != PACKAGE_VERSION:
        sys.exit(f"{PACKAGE} {installed} is installed; this bundle is pinned to {PACKAGE_VERSION}")
    # Field descriptions live in attribute docstrings; let pydantic read them before the models are defined.
    cloudcoil.pydantic.BaseModel.model_config["use_attribute_docstrings"] = True
    from cloudcoil.models.prometheus_operator import v1  # noqa: PLC0415

    stale = []
    for kind, (plural, _, _) in NAMES.items():
        path = args.out / f"{GROUP}_{plural}.yaml"
        content = render(crd(kind, getattr(v1, kind)))
        if args.check:
            if not path.exists() or path.read_text() != content:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({len(content)} bytes)")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
