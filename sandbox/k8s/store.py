"""Object storage and the write semantics of the API server (registry), independent of HTTP.

Every write goes through `Store.write()`: defaults → validation → resourceVersion/generation bookkeeping →
persist (unless dry run). Errors are `ApiError`s carrying the Status the real server would answer.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import catalog, defaults, patch, validation

# Core kinds whose registry strategy does not maintain metadata.generation.
NO_GENERATION = {
    ("", kind)
    for kind in (
        "ConfigMap",
        "Secret",
        "Service",
        "Namespace",
        "ServiceAccount",
        "Endpoints",
        "Event",
        "LimitRange",
        "ResourceQuota",
        "PodTemplate",
    )
}


class ApiError(Exception):
    """An API failure, rendered as a metav1.Status."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(resource: catalog.Resource, name: str) -> ApiError:
    qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    return ApiError(
        404,
        "NotFound",
        f'{qualified} "{name}" not found',
        {"name": name, "group": resource.group, "kind": resource.plural},
    )


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WriteOptions:
    """Query parameters of a write: ?dryRun=All, ?fieldValidation=Strict, ?fieldManager=, ?force=, propagation."""

    dry_run: bool = False
    strict_fields: bool = False
    field_manager: str = ""
    force: bool = False
    subresource: str = ""
    propagation: str = "Background"


DEFAULT = WriteOptions()


@dataclass
class WriteResult:
    obj: dict
    created: bool = False
    warnings: list[str] = field(default_factory=list)


Key = tuple[str, str, str, str]  # group, plural, namespace ("" for cluster-scoped), name
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


class Store:
    """All objects, keyed by group/plural/namespace/name, with one global resourceVersion counter."""

    def __init__(self, snapshot: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.objects: dict[Key, dict] = {}
        self.revision = 1
        self.snapshot = snapshot
        self.resources: dict[tuple[str, str, str], catalog.Resource] = {
            (r.group, r.version, r.plural): r for r in catalog.builtin_resources()
        }
        self.applied: dict[tuple[Key, str], dict] = {}  # (object, field manager) -> last applied config
        if snapshot and snapshot.exists():
            self._load()
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if ("", "namespaces", "", name) not in self.objects:
                self.create(
                    self.resource("", "v1", "namespaces"),
                    "",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                )

    # -- resources ---------------------------------------------------------------------------------
    def resource(self, group: str, version: str, plural: str) -> catalog.Resource:
        found = self.resources.get((group, version, plural))
        if found is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return found

    def groups(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        for group, version, _ in self.resources:
            versions = result.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        for versions in result.values():
            versions.sort(key=lambda v: int(v[1:].split("a")[0].split("b")[0]), reverse=True)
        return result

    def resources_in(self, group: str, version: str) -> list[catalog.Resource]:
        return [r for (g, v, _), r in sorted(self.resources.items()) if g == group and v == version]

    # -- reads -------------------------------------------------------------------------------------
    def get(self, resource: catalog.Resource, namespace: str, name: str) -> dict:
        with self.lock:
            obj = self.objects.get(self._key(resource, namespace, name))
            if obj is None:
                raise not_found(resource, name)
            return self._as_version(obj, resource)

    def list(
        self, resource: catalog.Resource, namespace: str | None, match: Callable[[dict], bool] | None = None
    ) -> list[dict]:
        with self.lock:
            found = [
                self._as_version(obj, resource)
                for (group, plural, ns, _), obj in sorted(self.objects.items())
                if (group, plural) == (resource.group, resource.plural) and (not namespace or ns == namespace)
            ]
        return [obj for obj in found if match is None or match(obj)]

    @staticmethod
    def _as_version(obj: dict, resource: catalog.Resource) -> dict:
        """A copy of `obj` as served by `resource`'s version (no field conversion between versions)."""
        served = copy.deepcopy(obj)
        served["apiVersion"] = resource.group_version
        return served

    # -- writes ------------------------------------------------------------------------------------
    def _key(self, resource: catalog.Resource, namespace: str, name: str) -> Key:
        return (resource.group, resource.plural, namespace if resource.namespaced else "", name)

    def _check_namespace(self, resource: catalog.Resource, namespace: str) -> None:
        if resource.namespaced and ("", "namespaces", "", namespace) not in self.objects:
            raise ApiError(
                404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"}
            )

    def create(
        self, resource: catalog.Resource, namespace: str, body: dict, opts: WriteOptions = DEFAULT
    ) -> WriteResult:
        with self.lock:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            if resource.namespaced:
                if meta.get("namespace") and meta["namespace"] != namespace:
                    raise ApiError(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on the request",
                    )
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            self._check_namespace(resource, namespace)
            key = self._key(resource, namespace, meta.get("name") or "")
            if key in self.objects:
                qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{qualified} "{meta["name"]}" already exists',
                    {"name": meta["name"], "group": resource.group, "kind": resource.plural},
                )
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            for transient in ("resourceVersion", "deletionTimestamp", "selfLink"):
                meta.pop(transient, None)
            if self._has_generation(resource):
                meta["generation"] = 1
            if "status" in resource.subresources:
                obj.pop("status", None)  # status is written through the status subresource only
            obj["apiVersion"], obj["kind"] = resource.group_version, resource.kind
            warnings = self._admit(resource, obj, opts.strict_fields)
            if not opts.dry_run:
                self._persist(key, obj)
            else:
                meta.pop("resourceVersion", None)
            return WriteResult(copy.deepcopy(obj), created=True, warnings=warnings)

    def _has_generation(self, resource: catalog.Resource) -> bool:
        return (resource.group, resource.kind) not in NO_GENERATION

    def _admit(self, resource: catalog.Resource, obj: dict, strict_fields: bool) -> list[str]:
        """Defaults, pruning (custom resources) and validation; raises the 400/422 the server would."""
        warnings: list[str] = []
        if resource.crd_schema is not None:
            warnings = [f'unknown field "{path}"' for path in validation.prune_unknown(obj, resource.crd_schema)]
            if strict_fields and warnings:
                raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(warnings))
        defaults.apply_defaults(obj)
        outcome = validation.validate(obj, resource, strict_fields)
        if outcome.bad_request:
            raise ApiError(400, "BadRequest", outcome.bad_request)
        if outcome.causes:
            qualified = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
            name = obj.get("metadata", {}).get("name", "")
            summary = ", ".join(f"{c.field}: {c.message}" for c in outcome.causes)
            raise ApiError(
                422,
                "Invalid",
                f'{qualified} "{name}" is invalid: {summary}',
                {
                    "name": name,
                    "group": resource.group,
                    "kind": resource.kind,
                    "causes": [c.to_dict() for c in outcome.causes],
                },
            )
        return warnings + outcome.warnings

    def update(
        self, resource: catalog.Resource, namespace: str, name: str, body: dict, opts: WriteOptions = DEFAULT
    ) -> WriteResult:
        """PUT semantics: replace the object (or only its status for the status subresource)."""
        with self.lock:
            key = self._key(resource, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(resource, name)
            wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {qualified} "{name}": the object '
                    "has been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": resource.group, "kind": resource.plural},
                )
            if (body.get("metadata") or {}).get("name", name) != name:
                raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
            return self._replace(resource, key, body, opts)

    def _replace(self, resource: catalog.Resource, key: Key, body: dict, opts: WriteOptions) -> WriteResult:
        current = self.objects[key]
        new = copy.deepcopy(body)
        if opts.subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(current)
            new["status"] = status
        elif "status" in resource.subresources and "status" in current:
            new["status"] = copy.deepcopy(current["status"])  # the main resource cannot change status
        meta = new.setdefault("metadata", {})
        for kept in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if kept in current["metadata"]:
                meta[kept] = current["metadata"][kept]
        meta["name"] = current["metadata"]["name"]
        if "namespace" in current["metadata"]:
            meta["namespace"] = current["metadata"]["namespace"]
        meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        new["apiVersion"], new["kind"] = resource.group_version, resource.kind
        warnings = self._admit(resource, new, opts.strict_fields)
        if self._spec_of(new) != self._spec_of(current) and self._has_generation(resource):
            meta["generation"] = current["metadata"].get("generation", 0) + 1
        if new == current:
            return WriteResult(copy.deepcopy(current), warnings=warnings)  # no-op: no new resourceVersion
        if not opts.dry_run:
            self._persist(key, new)
        return WriteResult(copy.deepcopy(new), warnings=warnings)

    @staticmethod
    def _spec_of(obj: dict) -> dict:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    def patch(  # noqa: PLR0917 - the API's own parameters
        self,
        resource: catalog.Resource,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        opts: WriteOptions = DEFAULT,
    ) -> WriteResult:
        with self.lock:
            key = self._key(resource, namespace, name)
            current = self.objects.get(key)
            if content_type == "application/apply-patch+yaml":
                return self._apply(resource, namespace, name, body, opts)
            if current is None:
                raise not_found(resource, name)
            try:
                if content_type == "application/json-patch+json":
                    new = patch.json_patch(current, body)
                elif content_type == "application/merge-patch+json":
                    new = patch.json_merge_patch(current, body)
                elif content_type == "application/strategic-merge-patch+json":
                    if resource.schema_name is None:
                        raise ApiError(
                            415,
                            "UnsupportedMediaType",
                            "the body of the request was in an unknown "
                            "format - accepted media types include: application/json-patch+json, "
                            "application/merge-patch+json, application/apply-patch+yaml",
                        )
                    new = patch.strategic_merge_patch(current, body, catalog.definitions(), resource.schema_name)
                else:
                    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
            except patch.PatchError as exc:
                raise ApiError(exc.code, "Invalid" if exc.code == 422 else "BadRequest", str(exc)) from exc
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the patch did not produce an object")
            return self._replace(resource, key, new, opts)

    def _apply(
        self, resource: catalog.Resource, namespace: str, name: str, config: Any, opts: WriteOptions
    ) -> WriteResult:
        """Server-side apply, approximated: the applied configuration is merged into the live object with
        strategic-merge rules (list-map keys from the schema), fields this manager applied before and no longer
        applies are removed, and a field another manager applied with a different value is a conflict unless
        `force` (https://kubernetes.io/docs/reference/using-api/server-side-apply/)."""
        manager = opts.field_manager
        key = self._key(resource, namespace, name)
        current = self.objects.get(key)
        if not manager:
            raise ApiError(400, "BadRequest", "PATCH requests of type apply must specify fieldManager")
        if not isinstance(config, dict):
            raise ApiError(400, "BadRequest", "the applied configuration must be an object")
        if current is None:
            result = self.create(resource, namespace, config, opts)
            if not opts.dry_run:
                self.applied[(key, manager)] = copy.deepcopy(config)
            return result
        conflicts = []
        for (other_key, other), applied in self.applied.items():
            if other_key == key and other != manager:
                for path, value in _leaves(config):
                    theirs = _lookup(applied, path)
                    if theirs is not _MISSING and theirs != value:
                        conflicts.append((other, ".".join(map(str, path))))
        if conflicts and not opts.force:
            causes = [
                {"reason": "FieldManagerConflict", "message": f'conflict with "{who}"', "field": where}
                for who, where in conflicts
            ]
            raise ApiError(
                409,
                "Conflict",
                f"Apply failed with {len(conflicts)} conflict(s): "
                + "; ".join(f'conflict with "{who}": .{where}' for who, where in conflicts),
                {"name": name, "group": resource.group, "kind": resource.plural, "causes": causes},
            )
        previous = self.applied.get((key, manager), {})
        removal = _removed(previous, config)
        merged = (
            patch.strategic_merge_patch(current, removal, catalog.definitions(), resource.schema_name)
            if resource.schema_name
            else patch.json_merge_patch(current, removal)
        )
        merged = (
            patch.strategic_merge_patch(merged, config, catalog.definitions(), resource.schema_name)
            if resource.schema_name
            else patch.json_merge_patch(merged, config)
        )
        result = self._replace(resource, key, merged, opts)
        if not opts.dry_run:
            self.applied[(key, manager)] = copy.deepcopy(config)
        return result

    def delete(self, resource: catalog.Resource, namespace: str, name: str, opts: WriteOptions = DEFAULT) -> dict:
        with self.lock:
            key = self._key(resource, namespace, name)
            current = self.objects.get(key)
            if current is None:
                raise not_found(resource, name)
            if not opts.dry_run:
                self._remove(key, opts.propagation)
            return copy.deepcopy(current)

    def _remove(self, key: Key, propagation: str) -> None:
        obj = self.objects.pop(key)
        self.applied = {k: v for k, v in self.applied.items() if k[0] != key}
        if key[:2] == CRD_KEY:
            self.unregister_crd(obj)
        self._bump()
        if key[:2] == ("", "namespaces"):
            for other in [k for k in self.objects if k[2] == key[3]]:
                if other in self.objects:
                    self._remove(other, "Background")
        if propagation != "Orphan":
            uid = obj["metadata"]["uid"]
            owned = [
                k
                for k, o in self.objects.items()
                if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or [])
            ]
            for other in owned:
                if other in self.objects:
                    self._remove(other, propagation)
        self._save()

    # -- bookkeeping -------------------------------------------------------------------------------
    def _bump(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _persist(self, key: Key, obj: dict) -> None:
        obj["metadata"]["resourceVersion"] = self._bump()
        if key[:2] == CRD_KEY:
            self.register_crd(obj)
        self.objects[key] = copy.deepcopy(obj)
        self._save()

    def _save(self) -> None:
        if self.snapshot is None:
            return
        data = {
            "revision": self.revision,
            "objects": [[list(k), v] for k, v in self.objects.items()],
        }
        tmp = self.snapshot.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.snapshot)

    def _load(self) -> None:
        assert self.snapshot is not None
        data = json.loads(self.snapshot.read_text())
        self.revision = data["revision"]
        self.objects = {tuple(k): v for k, v in data["objects"]}  # type: ignore[misc]
        for (group, plural, _, _), obj in list(self.objects.items()):
            if (group, plural) == CRD_KEY:
                self.register_crd(obj)

    def iter_objects(self) -> Iterator[tuple[Key, dict]]:
        with self.lock:
            yield from list(self.objects.items())

    # -- custom resources --------------------------------------------------------------------------
    def register_crd(self, crd: dict) -> None:
        """Serve the kinds a CustomResourceDefinition defines (every served version); mark it Established."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        crd["status"] = {
            "acceptedNames": names,
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now()}
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        }
        for version in spec.get("versions") or []:
            if not version.get("served"):
                continue
            schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            }
            subresources = set((version.get("subresources") or {}).keys())
            self.resources[(spec["group"], version["name"], names["plural"])] = catalog.Resource(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                verbs={"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
                subresources=subresources,
                crd_schema=schema,
            )

    def unregister_crd(self, crd: dict) -> None:
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural")
        for key in [k for k in self.resources if k[0] == spec.get("group") and k[2] == plural]:
            del self.resources[key]
        for key in [k for k in self.objects if k[0] == spec.get("group") and k[1] == plural]:
            if key in self.objects:
                self._remove(key, "Background")


_MISSING = object()


def _leaves(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    if isinstance(obj, dict) and obj:
        for key, value in obj.items():
            yield from _leaves(value, (*path, key))
    else:
        yield path, obj


def _lookup(obj: Any, path: tuple) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _removed(previous: dict, current: dict) -> dict:
    """A merge patch deleting the map fields present in `previous` but absent from `current`."""
    patch_doc: dict = {}
    for key, value in previous.items():
        if key not in current:
            patch_doc[key] = None
        elif isinstance(value, dict) and isinstance(current[key], dict):
            nested = _removed(value, current[key])
            if nested:
                patch_doc[key] = nested
    return patch_doc
