"""The AWX double's objects: create, read, update, delete and list them with AWX 24.6.1's rules.

What the awx.awx modules rely on (docs/research/awx-api-semantics.md): objects rendered with id, type, url, related
and summary_fields; values echoed exactly as stored (idempotent re-runs compare the GET with what they send);
uniqueness, foreign keys and the per-resource checks answered with AWX's 400 bodies; secret credential inputs stored,
shown as `$encrypted$`, kept when `$encrypted$` is sent back and dropped when empty; managed credential types
refusing changes; exact-match list filters with `or__` groups.
"""

from __future__ import annotations

import datetime
import itertools
import re
import secrets
import threading
from typing import Any
from urllib.parse import urlparse

from .resources import (
    ENCRYPTED,
    JOB_TYPES,
    RESOURCES,
    Field,
    Invalid,
    Record,
    Resource,
    coerce,
    invalid,
    parse_vars,
    validate_credential_inputs,
    validate_survey_spec,
    validate_type_injectors,
    validate_type_inputs,
)

# The managed credential types a fresh AWX has that carbon254.mlflow's objects can meet
# (awx/main/models/credential/__init__.py ManagedCredentialType, awx/main/credential_plugins/hashivault.py).
MANAGED_TYPES: list[dict[str, Any]] = [
    {
        "name": "Machine",
        "kind": "ssh",
        "namespace": "ssh",
        "inputs": {
            "fields": [
                {"id": "username", "label": "Username", "type": "string"},
                {"id": "password", "label": "Password", "type": "string", "secret": True, "ask_at_runtime": True},
                {
                    "id": "ssh_key_data",
                    "label": "SSH Private Key",
                    "type": "string",
                    "format": "ssh_private_key",
                    "secret": True,
                    "multiline": True,
                },
            ]
        },
    },
    {
        "name": "Source Control",
        "kind": "scm",
        "namespace": "scm",
        "inputs": {
            "fields": [
                {"id": "username", "label": "Username", "type": "string"},
                {"id": "password", "label": "Password", "type": "string", "secret": True},
                {
                    "id": "ssh_key_data",
                    "label": "SCM Private Key",
                    "type": "string",
                    "format": "ssh_private_key",
                    "secret": True,
                    "multiline": True,
                },
            ]
        },
    },
    {
        "name": "Vault",
        "kind": "vault",
        "namespace": "vault",
        "inputs": {
            "fields": [
                {
                    "id": "vault_password",
                    "label": "Vault Password",
                    "type": "string",
                    "secret": True,
                    "ask_at_runtime": True,
                },
                {"id": "vault_id", "label": "Vault Identifier", "type": "string"},
            ],
            "required": ["vault_password"],
        },
    },
    {
        "name": "Container Registry",
        "kind": "registry",
        "namespace": "registry",
        "inputs": {
            "fields": [
                {"id": "host", "label": "Authentication URL", "type": "string"},
                {"id": "username", "label": "Username", "type": "string"},
                {"id": "password", "label": "Password or Token", "type": "string", "secret": True},
                {"id": "verify_ssl", "label": "Verify SSL", "type": "boolean", "default": True},
            ],
            "required": ["host"],
        },
    },
    {
        "name": "OpenShift or Kubernetes API Bearer Token",
        "kind": "kubernetes",
        "namespace": "kubernetes_bearer_token",
        "inputs": {
            "fields": [
                {"id": "host", "label": "OpenShift or Kubernetes API Endpoint", "type": "string"},
                {"id": "bearer_token", "label": "API authentication bearer token", "type": "string", "secret": True},
                {"id": "verify_ssl", "label": "Verify SSL", "type": "boolean", "default": True},
                {
                    "id": "ssl_ca_cert",
                    "label": "Certificate Authority data",
                    "type": "string",
                    "secret": True,
                    "multiline": True,
                },
            ],
            "required": ["host", "bearer_token"],
        },
    },
    {
        "name": "HashiCorp Vault Secret Lookup",
        "kind": "external",
        "namespace": "hashivault_kv",
        "inputs": {
            "fields": [
                {"id": "url", "label": "Server URL", "type": "string", "format": "url"},
                {"id": "token", "label": "Token", "type": "string", "secret": True},
                {"id": "cacert", "label": "CA Certificate", "type": "string", "multiline": True},
                {"id": "role_id", "label": "AppRole role_id", "type": "string", "multiline": False},
                {"id": "secret_id", "label": "AppRole secret_id", "type": "string", "multiline": False, "secret": True},
                {"id": "namespace", "label": "Namespace name (Vault Enterprise only)", "type": "string"},
                {"id": "default_auth_path", "label": "Path to Auth", "type": "string", "default": "approle"},
                {
                    "id": "api_version",
                    "label": "API Version",
                    "type": "string",
                    "choices": ["v1", "v2"],
                    "default": "v1",
                },
            ],
            "metadata": [
                {"id": "secret_backend", "label": "Name of Secret Backend", "type": "string"},
                {"id": "secret_path", "label": "Path to Secret", "type": "string"},
                {"id": "auth_path", "label": "Path to Auth", "type": "string"},
                {"id": "secret_key", "label": "Key Name", "type": "string"},
                {"id": "secret_version", "label": "Secret Version (v2 only)", "type": "string"},
            ],
            "required": ["url", "secret_path", "api_version", "secret_key"],
        },
    },
]
# Kinds a job template accepts as credentials (awx/api/serializers.py).
JOB_CREDENTIAL_KINDS = ("ssh", "vault", "cloud", "net", "kubernetes")
# The job types whose templates `unified_job_templates` lists.
TEMPLATE_TYPES = {"job_template": "job_templates", "workflow_job_template": "workflow_job_templates",
                  "project": "projects", "inventory_source": "inventory_sources"}  # fmt: skip


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class Store:
    """Every object of the double, behind one lock (requests come from a threaded HTTP server and job threads)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.records: dict[str, dict[int, Record]] = {ep: {} for ep in [*RESOURCES, *JOB_TYPES]}
        self.ids = {ep: itertools.count(1) for ep in self.records}
        # Jobs, project updates, inventory updates and workflow jobs are one table in AWX (UnifiedJob): one sequence.
        # It starts at a random point: a job's container is named by its id (ansible_runner_<id>) on the one podman
        # store every double shares, and AWX never reuses an id, but two doubles (CI's lanes) each counting from 1 would.
        unified = itertools.count(100_000 + secrets.randbelow(10**8))
        self.ids.update(dict.fromkeys(JOB_TYPES, unified))
        self.writes: list[tuple[str, str, int | None]] = []  # (method, endpoint, id) of every accepted write
        for spec in MANAGED_TYPES:
            record = self._new("credential_types")
            record.values = {"name": spec["name"], "description": "", "kind": spec["kind"], "namespace": spec["namespace"],
                             "managed": True, "inputs": spec["inputs"], "injectors": {}}  # fmt: skip

    def _new(self, endpoint: str) -> Record:
        record = Record(endpoint, next(self.ids[endpoint]), {}, extra={"created": now()})
        self.records[endpoint][record.id] = record
        return record

    # --- reading -----------------------------------------------------------------------------------------------

    def get(self, endpoint: str, ident: int) -> Record:
        record = self.records.get(endpoint, {}).get(ident)
        if record is None:
            raise KeyError(f"{endpoint}/{ident}")
        return record

    def find(self, endpoint: str, **values: Any) -> list[Record]:
        return [r for r in self.records[endpoint].values() if all(r.values.get(k) == v for k, v in values.items())]

    def render(self, record: Record) -> dict[str, Any]:  # noqa: PLR0912 - AWX's serializer, field by field
        """An object as AWX's detail serializer answers it."""
        if record.endpoint in JOB_TYPES:
            return {**record.values, "id": record.id, "type": JOB_TYPES[record.endpoint],
                    "url": f"/api/v2/{record.endpoint}/{record.id}/", "related": self._job_related(record)}  # fmt: skip
        resource = RESOURCES[record.endpoint]
        body: dict[str, Any] = {"id": record.id, "type": resource.type, "url": f"/api/v2/{record.endpoint}/{record.id}/",
                                "created": record.extra["created"], "modified": record.extra.get("modified", record.extra["created"])}  # fmt: skip
        for name, spec in resource.fields.items():
            if not spec.write_only:
                body[name] = record.values.get(name, spec.default)
        if record.endpoint == "credentials":
            body["inputs"] = {k: (ENCRYPTED if k in record.extra.get("secret_ids", ()) else v)
                              for k, v in record.values["inputs"].items()}  # fmt: skip
            ctype = self.get("credential_types", record.values["credential_type"])
            body["kind"] = ctype.values["kind"]
            body["cloud"] = ctype.values["kind"] == "cloud"
            body["kubernetes"] = ctype.values["kind"] == "kubernetes"
            body["managed"] = False
        related = {name: f"/api/v2/{record.endpoint}/{record.id}/{name}/" for name in resource.related}
        summary: dict[str, Any] = {}
        for name, spec in resource.fields.items():
            target = body.get(name)
            if spec.kind == "fk" and target is not None and not spec.write_only:
                endpoint = spec.target if spec.target != "unified_job_templates" else record.extra["ujt_endpoint"]
                related[name] = f"/api/v2/{endpoint}/{target}/"
                other = self.records[endpoint].get(target)
                if other is not None:
                    summary[name] = {"id": target, "name": other.values.get("name", ""),
                                     "description": other.values.get("description", "")}  # fmt: skip
        for key in ("current_update", "last_update", "current_job", "last_job"):
            if key in record.extra:
                job_endpoint, job_id = record.extra[key]
                job = self.get(job_endpoint, job_id)
                related[key] = f"/api/v2/{job_endpoint}/{job_id}/"
                summary[key] = {"id": job_id, "name": job.values["name"], "description": "",
                                "status": job.values["status"], "failed": job.values["failed"]}  # fmt: skip
        if record.endpoint == "job_templates":
            summary["credentials"] = [self._credential_summary(c) for c in record.extra.get("credentials", [])]
            if record.extra.get("survey_spec"):
                spec = record.extra["survey_spec"]
                summary["survey"] = {"title": spec["name"], "description": spec["description"]}
        if record.endpoint == "workflow_job_template_nodes":
            for edge in ("success_nodes", "failure_nodes", "always_nodes"):
                body[edge] = sorted(record.extra.get(edge, []))
        body["related"] = related
        body["summary_fields"] = summary
        return body

    def _credential_summary(self, ident: int) -> dict[str, Any]:
        cred = self.get("credentials", ident)
        ctype = self.get("credential_types", cred.values["credential_type"])
        return {"id": ident, "name": cred.values["name"], "description": cred.values["description"],
                "kind": ctype.values["kind"], "cloud": ctype.values["kind"] == "cloud"}  # fmt: skip

    @staticmethod
    def _job_related(record: Record) -> dict[str, str]:
        base = f"/api/v2/{record.endpoint}/{record.id}/"
        related = {"stdout": base + "stdout/", "cancel": base + "cancel/"}
        if record.endpoint == "jobs":
            related["job_events"] = base + "job_events/"
        if record.endpoint == "workflow_jobs":
            related["workflow_nodes"] = base + "workflow_nodes/"
        return related

    def query(self, endpoint: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        """A list endpoint's results: exact-match AND filters, `or__` filters ORed together (AWX's filter backend)."""
        if endpoint == "unified_job_templates":
            candidates = [self.render(r) for ep in TEMPLATE_TYPES.values() for r in self.records[ep].values()]
        else:
            candidates = [self.render(r) for r in self.records[endpoint].values()]
        ands = {
            k: v[-1]
            for k, v in params.items()
            if not k.startswith("or__") and k not in ("page", "page_size", "order_by")
        }
        ors = [(k[4:], value) for k, values in params.items() if k.startswith("or__") for value in values]
        return [item for item in candidates if all(_matches(item, k, v) for k, v in ands.items())
                and (not ors or any(_matches(item, k, v) for k, v in ors))]  # fmt: skip

    # --- writing -----------------------------------------------------------------------------------------------

    def create(self, endpoint: str, data: dict[str, Any]) -> Record:
        resource = RESOURCES[endpoint]
        values: dict[str, Any] = {}
        for name, spec in resource.fields.items():
            if spec.read_only:
                values[name] = spec.default
            elif name in data:
                values[name] = coerce(resource, name, spec, data[name])
            elif spec.required:
                raise invalid(name, "This field is required.")
            else:
                values[name] = spec.default
        record = Record(endpoint, 0, values, extra={"created": now()})
        self._check(resource, record, data, creating=True)
        record.id = next(self.ids[endpoint])
        self.records[endpoint][record.id] = record
        self.writes.append(("POST", endpoint, record.id))
        return record

    def update(self, record: Record, data: dict[str, Any]) -> Record:
        resource = RESOURCES[record.endpoint]
        if record.endpoint == "credential_types" and record.values.get("managed"):
            raise PermissionError("Modifications not allowed for managed credential types")
        values = dict(record.values)
        for name, value in data.items():
            spec = resource.fields.get(name)
            if spec is None or spec.read_only or spec.write_only:
                continue  # DRF ignores unknown and read-only keys
            if name in ("inventory", "workflow_job_template") and record.endpoint in (
                "inventory_sources", "workflow_job_template_nodes", "hosts"
            ) and value != record.values.get(name):  # fmt: skip
                raise invalid(name, "Cannot change this field after creation.")
            values[name] = coerce(resource, name, spec, value)
        if record.endpoint == "credentials" and "inputs" in data:
            values["inputs"] = self._merge_secrets(record, data["inputs"])
        candidate = Record(record.endpoint, record.id, values, record.secrets, dict(record.extra))
        self._check(resource, candidate, data, creating=False)
        changed = candidate.values != record.values
        record.values, record.extra = candidate.values, candidate.extra
        if changed:
            record.extra["modified"] = now()
        self.writes.append(("PATCH", record.endpoint, record.id))
        return record

    def delete(self, record: Record) -> None:
        if record.endpoint == "credential_types" and record.values.get("managed"):
            raise PermissionError("Deletion not allowed for managed credential types")
        del self.records[record.endpoint][record.id]
        self.writes.append(("DELETE", record.endpoint, record.id))

    @staticmethod
    def _merge_secrets(record: Record, inputs: dict[str, Any]) -> dict[str, Any]:
        """`$encrypted$` sent back for a secret keeps the stored value (awx/main/models/credential Credential)."""
        stored = record.values.get("inputs", {})
        return {k: (stored[k] if v == ENCRYPTED and k in stored else v) for k, v in inputs.items()}

    def _check(self, resource: Resource, record: Record, data: dict[str, Any], creating: bool) -> None:
        values = record.values
        for name, spec in resource.fields.items():
            if spec.kind == "fk" and values.get(name) is not None and spec.target not in ("users", "teams"):
                self._require(spec, name, values[name], record)
        getattr(self, f"_check_{resource.endpoint}", lambda *_: None)(record, data, creating)
        key = tuple(values.get(k) for k in resource.unique)
        if None not in key or resource.endpoint in (
            "projects",
            "inventories",
            "job_templates",
            "workflow_job_templates",
        ):
            for other in self.records[resource.endpoint].values():
                if other.id != record.id and tuple(other.values.get(k) for k in resource.unique) == key:
                    if resource.unique == ("name",):
                        raise invalid(
                            "name", f"{resource.type.replace('_', ' ').capitalize()} with this Name already exists."
                        )
                    raise Invalid({"__all__": [f"{resource.type.replace('_', ' ').capitalize()} with this "
                                               f"({', '.join(resource.unique)}) combination already exists."]})  # fmt: skip

    def _require(self, spec: Field, name: str, ident: int, record: Record) -> None:
        if spec.target == "unified_job_templates":
            for endpoint in TEMPLATE_TYPES.values():
                if ident in self.records[endpoint]:
                    record.extra["ujt_endpoint"] = endpoint
                    return
        elif ident in self.records[spec.target]:
            return
        raise invalid(name, f'Invalid pk "{ident}" - object does not exist.')

    # --- per-resource rules --------------------------------------------------------------------------------------

    def _check_credential_types(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        record.values["inputs"] = validate_type_inputs(record.values["inputs"])
        validate_type_injectors(record.values["injectors"], record.values["inputs"])
        stored = self.records["credential_types"].get(record.id)
        if (
            stored
            and self.find("credentials", credential_type=record.id)
            and stored.values["inputs"] != record.values["inputs"]
        ):
            raise PermissionError("Modifications to inputs are not allowed for credential types that are in use")

    def _check_credentials(self, record: Record, data: dict[str, Any], creating: bool) -> None:
        if creating and sum(data.get(k) is not None for k in ("user", "team", "organization")) != 1:
            raise Invalid({"detail": ["Missing 'user', 'team', or 'organization'."]})
        ctype = self.get("credential_types", record.values["credential_type"])
        inputs = record.values["inputs"]
        validate_credential_inputs(inputs, ctype.values["inputs"], creating)
        secret_ids = {f["id"] for f in ctype.values["inputs"].get("fields", []) if f.get("secret")}
        # Empty secrets are dropped; defaults are not filled in (awx/main/utils/encryption.py).
        record.values["inputs"] = {k: v for k, v in inputs.items() if not (k in secret_ids and v in ("", None))}
        record.extra["secret_ids"] = secret_ids

    def _check_credential_input_sources(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        target = self.get("credentials", record.values["target_credential"])
        source = self.get("credentials", record.values["source_credential"])
        target_type = self.get("credential_types", target.values["credential_type"])
        source_type = self.get("credential_types", source.values["credential_type"])
        if target_type.values["kind"] == "external":
            raise invalid("target_credential", "Target must be a non-external credential")
        if source_type.values["kind"] != "external":
            raise invalid("source_credential", "Source must be an external credential")
        ids = [f["id"] for f in target_type.values["inputs"].get("fields", [])]
        if record.values["input_field_name"] not in ids:
            raise invalid("input_field_name", f"Input field must be defined on target credential (options are "
                                              f"{', '.join(ids)}).")  # fmt: skip
        metadata_spec = source_type.values["inputs"].get("metadata", [])
        allowed = {f["id"] for f in metadata_spec}
        unknown = set(record.values["metadata"]) - allowed
        if unknown:
            raise invalid("metadata", f"Additional properties are not allowed ({sorted(unknown)[0]!r} was unexpected)")
        missing = [
            r
            for r in source_type.values["inputs"].get("required", [])
            if r in allowed and not record.values["metadata"].get(r)
        ]
        if missing:
            raise Invalid({"metadata": {m: [f"required for {source_type.values['name']}"] for m in missing}})

    def _check_execution_environments(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        image = record.values["image"]
        if not image:
            raise invalid("image", "This field may not be blank.")
        if not re.match(
            r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$",
            image,
        ):
            raise invalid("image", f"{image} is not a valid image name")
        if record.values["credential"] is not None:
            kind = self.get(
                "credential_types", self.get("credentials", record.values["credential"]).values["credential_type"]
            )
            if kind.values["kind"] != "registry":
                raise invalid(
                    "credential", "Only Container Registry credentials can be associated with an Execution Environment"
                )

    def _check_projects(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        values = record.values
        if values["scm_type"] == "":
            if any(
                values[k] for k in ("scm_clean", "scm_delete_on_update", "scm_track_submodules", "scm_update_on_launch")
            ):
                raise invalid("scm_update_on_launch", "Update options must be set to false for manual projects.")
            return
        url = values["scm_url"]
        if not url:
            raise invalid("scm_url", "SCM URL is required.")
        if values["scm_type"] == "git":
            parsed = urlparse(url)
            if parsed.scheme and parsed.scheme not in ("ssh", "git", "git+ssh", "http", "https", "ftp", "ftps", "file"):
                raise invalid("scm_url", "Unsupported git URL.")
            if parsed.scheme and parsed.scheme != "file" and not parsed.hostname:
                raise invalid("scm_url", f"Host is required for {parsed.scheme} URL.")
        if values["credential"] is not None:
            cred = self.get("credentials", values["credential"])
            if self.get("credential_types", cred.values["credential_type"]).values["kind"] != "scm":
                raise invalid("credential", "Credential kind must be 'scm'.")

    def _check_inventory_sources(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        values = record.values
        if values["source"] == "scm":
            if values["source_project"] is None:
                raise invalid("source_project", "Project required for scm type sources.")
            if self.get("projects", values["source_project"]).values["scm_type"] == "":
                raise invalid("source_project", "Cannot use manual project for SCM-based inventory.")
        elif values["source_path"]:
            raise Invalid({"detail": ["Cannot set source_path if not SCM type."]})
        parse_vars(values["source_vars"], "source_vars")

    def _check_inventories(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        if record.values["kind"] == "smart" and not record.values["host_filter"]:
            raise invalid("host_filter", "Smart inventories must specify host_filter")
        parse_vars(record.values["variables"])

    def _check_job_templates(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        values = record.values
        project = self.get("projects", values["project"])
        values["organization"] = project.values["organization"]
        if not values["playbook"]:
            raise invalid("playbook", "Must select playbook for project.")
        if not project.values["allow_override"] and values["playbook"] not in project.extra.get("playbook_files", []):
            raise invalid("playbook", "Playbook not found for project.")
        if values["inventory"] is None and not values["ask_inventory_on_launch"]:
            raise invalid("inventory", "You must either set a default value or ask to prompt on launch.")
        if (values["scm_branch"] or values["ask_scm_branch_on_launch"]) and not project.values["allow_override"]:
            raise invalid("scm_branch", "Project does not allow overriding branch.")
        parse_vars(values["extra_vars"], "extra_vars")

    def _check_workflow_job_templates(self, record: Record, _data: dict[str, Any], _creating: bool) -> None:
        parse_vars(record.values["extra_vars"], "extra_vars")

    # --- sub-resources -----------------------------------------------------------------------------------------

    def associate(self, record: Record, relation: str, ident: int, disassociate: bool) -> None:
        """POST {id} / {id, disassociate} on a sub-list (job template credentials, workflow node edges)."""
        members: list[int] = record.extra.setdefault(relation, [])
        if disassociate:
            if ident in members:
                members.remove(ident)
            self.writes.append(("DISASSOCIATE", f"{record.endpoint}/{relation}", record.id))
            return
        if relation == "credentials":
            cred = self.records["credentials"].get(ident)
            if cred is None:
                raise invalid("id", f'Invalid pk "{ident}" - object does not exist.')
            ctype = self.get("credential_types", cred.values["credential_type"])
            if ctype.values["kind"] not in JOB_CREDENTIAL_KINDS:
                raise Invalid({"error": f"Cannot assign a Credential of kind `{ctype.values['kind']}`."})
            for other in members:
                if other != ident and self.get("credentials", other).values["credential_type"] == ctype.id:
                    raise Invalid({"error": f"Cannot assign multiple {ctype.values['name']} credentials."})
        else:
            child = self.records["workflow_job_template_nodes"].get(ident)
            if child is None:
                raise invalid("id", f'Invalid pk "{ident}" - object does not exist.')
            if child.values["workflow_job_template"] != record.values["workflow_job_template"]:
                raise Invalid({"Error": "Relationship not allowed."})
            if ident == record.id or self._reaches(ident, record.id):
                raise Invalid({"Error": "Cycle detected."})
        if ident not in members:
            members.append(ident)
        self.writes.append(("ASSOCIATE", f"{record.endpoint}/{relation}", record.id))

    def _reaches(self, start: int, goal: int) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = self.records["workflow_job_template_nodes"].get(todo.pop())
            if node is None or node.id in seen:
                continue
            seen.add(node.id)
            for edge in ("success_nodes", "failure_nodes", "always_nodes"):
                if goal in node.extra.get(edge, []):
                    return True
                todo.extend(node.extra.get(edge, []))
        return False

    def set_survey(self, record: Record, spec: dict[str, Any] | None) -> None:
        record.extra["survey_spec"] = validate_survey_spec(spec) if spec else {}
        self.writes.append(("POST", f"{record.endpoint}/survey_spec", record.id))

    def survey_view(self, record: Record) -> dict[str, Any]:
        """GET survey_spec: password defaults shown as `$encrypted$`."""
        spec = record.extra.get("survey_spec") or {}
        if not spec:
            return {}
        shown = [
            {**q, "default": ENCRYPTED} if q["type"] == "password" and q.get("default") else q for q in spec["spec"]
        ]
        return {**spec, "spec": shown}


def _matches(item: dict[str, Any], key: str, raw: str) -> bool:
    if key.endswith("__iexact"):
        return str(item.get(key[: -len("__iexact")], "")).lower() == raw.lower()
    value = item.get(key)
    if isinstance(value, bool):
        return raw.lower() in ("true", "1") if value else raw.lower() in ("false", "0")
    if value is None:
        return raw in ("", "null", "None")
    return str(value) == raw
