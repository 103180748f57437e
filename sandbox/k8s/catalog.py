"""The resource catalog of one pinned Kubernetes version, generated from real API data (nothing hand-typed).

Two installed sources are joined:
- the official `kubernetes` Python client, generated from the Kubernetes OpenAPI: each operation of
  `kubernetes/client/api/*_api.py` names its HTTP method and path (`/apis/apps/v1/namespaces/{namespace}/deployments`)
  and the model it returns (`V1Deployment`). That gives groups, versions, plural names, scope, verbs and kinds;
- kubernetes-validate's JSON schemas of the same Kubernetes version (`_definitions.json`): every definition of
  a top-level kind carries `x-kubernetes-group-version-kind`, which ties a (group, version, kind) to its schema.

Only generally available versions (`v1`, `v2`) are served, as on a default cluster of that release.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import kubernetes
import kubernetes_validate

KUBERNETES_VERSION = "1.37.0"

_SCHEMA_DIR = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
_CLIENT_API_DIR = Path(kubernetes.__file__).parent / "client" / "api"

_OPERATION = re.compile(r"def _(\w+)_serialize\(.*?method='(\w+)',\s*resource_path='([^']+)'", re.S)
_RESPONSE = re.compile(r"def (\w+)_with_http_info\(.*?_response_types_map[^{]*\{\s*'20[01]': \"(\w+)\"", re.S)
_PATH = re.compile(
    r"^/(?P<prefix>api|apis/(?P<group>[^/]+))/(?P<version>[^/]+)/"
    r"(?P<ns>namespaces/\{namespace\}/)?(?P<plural>[a-z0-9]+)(?P<name>/\{name\})?(?P<sub>/[a-z]+)?$"
)
_GA_VERSION = re.compile(r"^v\d+$")
# (HTTP method, path names an object) -> API verb
_VERBS = {
    ("GET", True): ("get",),
    ("GET", False): ("list",),
    ("POST", False): ("create",),
    ("PUT", True): ("update",),
    ("PATCH", True): ("patch",),
    ("DELETE", True): ("delete",),
    ("DELETE", False): ("deletecollection",),
}
# Kinds the generated client disambiguates with a group prefix in their model name.
_MODEL_PREFIX = re.compile(r"^(?:[A-Z][a-z]+)*V\d+(?:alpha\d+|beta\d+)?(?=[A-Z])")
# kubectl's short names are not part of the OpenAPI; these few are what users type for the kinds we serve.
SHORT_NAMES = {
    "configmaps": ["cm"],
    "deployments": ["deploy"],
    "services": ["svc"],
    "namespaces": ["ns"],
    "pods": ["po"],
    "serviceaccounts": ["sa"],
    "replicasets": ["rs"],
    "persistentvolumeclaims": ["pvc"],
    "ingresses": ["ing"],
    "horizontalpodautoscalers": ["hpa"],
    "poddisruptionbudgets": ["pdb"],
    "networkpolicies": ["netpol"],
    "customresourcedefinitions": ["crd", "crds"],
    "events": ["ev"],
    "endpoints": ["ep"],
    "nodes": ["no"],
}


@dataclass
class Resource:
    """One resource of the API (a plural name in a group/version), as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: set[str] = field(default_factory=set)
    subresources: set[str] = field(default_factory=set)
    schema_name: str | None = None  # definition in _definitions.json ($defs), None for custom resources
    crd_schema: dict | None = None  # openAPIV3Schema of a CustomResourceDefinition version

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def discovery(self) -> list[dict]:
        entry = {
            "name": self.plural,
            "singularName": self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": sorted(self.verbs),
        }
        if self.plural in SHORT_NAMES:
            entry["shortNames"] = SHORT_NAMES[self.plural]
        subs = [
            {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }
            for sub in sorted(self.subresources)
        ]
        return [entry, *subs]


def schema_dir(version: str = KUBERNETES_VERSION, strict: bool = False) -> Path:
    return _SCHEMA_DIR / f"v{version}-local{'-strict' if strict else ''}"


@functools.cache
def definitions(version: str = KUBERNETES_VERSION, strict: bool = False) -> dict[str, dict]:
    """All OpenAPI definitions of `version` as JSON schemas ($defs of kubernetes-validate's _definitions.json)."""
    return json.loads((schema_dir(version, strict) / "_definitions.json").read_text())["$defs"]


def _kind_from_model(model: str) -> str:
    kind = _MODEL_PREFIX.sub("", model)
    return kind[: -len("List")] if kind.endswith("List") else kind


def _schema_names(version: str) -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> definition name, from x-kubernetes-group-version-kind."""
    names = {}
    for name, schema in definitions(version).items():
        gvks = schema.get("x-kubernetes-group-version-kind", [])
        if len(gvks) == 1:  # DeleteOptions, WatchEvent, … list every group; a real kind lists only its own
            names[(gvks[0]["group"], gvks[0]["version"], gvks[0]["kind"])] = name
    return names


@functools.cache
def builtin_resources(version: str = KUBERNETES_VERSION) -> tuple[Resource, ...]:
    """Every GA built-in resource of the pinned version, with its verbs, scope, kind and schema."""
    gvk_schema = _schema_names(version)

    found: dict[tuple[str, str, str], Resource] = {}
    for api_file in sorted(_CLIENT_API_DIR.glob("*_api.py")):
        text = api_file.read_text()
        returns = dict(_RESPONSE.findall(text))
        for operation, method, path in _OPERATION.findall(text):
            match = _PATH.match(path)
            if not match or "/watch/" in path or not _GA_VERSION.match(match["version"]):
                continue
            group, version_, plural = match["group"] or "", match["version"], match["plural"]
            key = (group, version_, plural)
            resource = found.get(key)
            if resource is None:
                resource = found[key] = Resource(group, version_, plural, kind="", namespaced=False)
            if match["ns"]:
                resource.namespaced = True
            if match["sub"]:
                resource.subresources.add(match["sub"][1:])
                continue
            if operation in returns and (operation.startswith(("read_", "list_", "create_"))):
                resource.kind = resource.kind or _kind_from_model(returns[operation])
            resource.verbs.update(_VERBS.get((method, bool(match["name"])), ()))
    resources = []
    for resource in found.values():
        if "list" in resource.verbs:
            resource.verbs.add("watch")
        resource.schema_name = gvk_schema.get((resource.group, resource.version, resource.kind))
        if resource.kind and resource.schema_name:
            resources.append(resource)
    return tuple(sorted(resources, key=lambda r: (r.group, r.version, r.plural)))
