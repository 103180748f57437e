"""What the AWX 24.6.1 API stores and refuses, for the resources carbon254.mlflow's configure_awx.yml manages.

Each resource is a table of fields (type, default, required, read-only, foreign key, choices) and the uniqueness rule
AWX's models declare; the checks AWX's serializers and fields run on what a configuration would get wrong are here
too (credential type input/injector schemas, credential inputs against their type, survey specs). Read from AWX's
source at tag 24.6.1 (awx/api/serializers.py, awx/main/fields.py, awx/main/models/, awx/api/views/__init__.py);
the field-by-field reference with line citations is docs/research/awx-api-semantics.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

ENCRYPTED = "$encrypted$"
# Credential env injectors may not set these (awx/main/constants.py ENV_BLOCKLIST), nor any ANSIBLE_* name.
ENV_BLOCKLIST = frozenset(
    [
        "VIRTUAL_ENV",
        "PATH",
        "PYTHONPATH",
        "JOB_ID",
        "INVENTORY_ID",
        "INVENTORY_SOURCE_ID",
        "INVENTORY_UPDATE_ID",
        "AD_HOC_COMMAND_ID",
        "REST_API_URL",
        "REST_API_TOKEN",
        "MAX_EVENT_RES",
        "CALLBACK_QUEUE",
        "CALLBACK_CONNECTION",
        "CACHE",
        "JOB_CALLBACK_DEBUG",
        "INVENTORY_HOSTVARS",
        "AWX_HOST",
        "PROJECT_REVISION",
        "SUPERVISOR_CONFIG_PATH",
    ]
)
SURVEY_TYPES = ("text", "textarea", "password", "multiplechoice", "multiselect", "integer", "float")
VARIABLE_NAME = re.compile(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$")


class Invalid(Exception):
    """A 400 answer: `body` is what AWX would send ({"field": ["msg"]}, {"__all__": [...]}, {"error": "..."})."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(json.dumps(body))
        self.body = body


def invalid(key: str, message: str) -> Invalid:
    return Invalid({key: [message]})


@dataclass(frozen=True)
class Field:
    kind: str = "str"  # str, bool, int, dict, vars (a JSON/YAML dict kept as the string given), fk
    default: Any = ""
    required: bool = False
    read_only: bool = False
    target: str = ""  # the endpoint a foreign key points at
    choices: tuple[Any, ...] = ()
    write_only: bool = False


def _str(default: Any = "", **kw: Any) -> Field:
    return Field("str", default, **kw)


def _bool(default: bool = False) -> Field:
    return Field("bool", default)


def _int(default: int = 0) -> Field:
    return Field("int", default)


def _fk(target: str, required: bool = False, read_only: bool = False) -> Field:
    return Field("fk", None, required=required, target=target, read_only=read_only)


def _vars() -> Field:
    return Field("vars", "")


NAMED = {"name": _str(required=True), "description": _str()}
PROMPTS = ["scm_branch", "diff_mode", "variables", "limit", "tags", "skip_tags", "job_type", "verbosity", "inventory", "credential", "execution_environment", "labels", "forks", "job_slice_count", "timeout", "instance_groups"]  # fmt: skip


@dataclass(frozen=True)
class Resource:
    endpoint: str
    type: str
    fields: dict[str, Field]
    unique: tuple[str, ...] = ("name",)
    related: tuple[str, ...] = ()  # sub-resources listed in `related`
    identity: str = "name"


RESOURCES: dict[str, Resource] = {
    r.endpoint: r
    for r in (
        Resource(
            "organizations",
            "organization",
            {
                **NAMED,
                "max_hosts": _int(),
                "custom_virtualenv": Field("str", None, read_only=True),
                "default_environment": _fk("execution_environments"),
            },
        ),
        Resource(
            "credential_types",
            "credential_type",
            {
                **NAMED,
                "kind": _str(None, required=True, choices=("cloud", "net")),
                "namespace": Field("str", None, read_only=True),
                "managed": Field("bool", False, read_only=True),
                "inputs": Field("dict", {}),
                "injectors": Field("dict", {}),
            },
            unique=("name", "kind"),
        ),
        Resource(
            "credentials",
            "credential",
            {
                **NAMED,
                "organization": _fk("organizations"),
                "credential_type": _fk("credential_types", required=True),
                "inputs": Field("dict", {}),
                "user": Field("fk", None, target="users", write_only=True),
                "team": Field("fk", None, target="teams", write_only=True),
            },
            unique=("organization", "name", "credential_type"),
            related=("input_sources",),
        ),
        Resource(
            "credential_input_sources",
            "credential_input_source",
            {
                "description": _str(),
                "input_field_name": _str(required=True),
                "metadata": Field("dict", {}),
                "target_credential": _fk("credentials", required=True),
                "source_credential": _fk("credentials", required=True),
            },
            unique=("target_credential", "input_field_name"),
            identity="id",
        ),
        Resource(
            "execution_environments",
            "execution_environment",
            {
                **NAMED,
                "organization": _fk("organizations"),
                "image": _str(required=True),
                "managed": Field("bool", False, read_only=True),
                "credential": _fk("credentials"),
                "pull": _str(choices=("", "always", "missing", "never")),
            },
        ),
        Resource(
            "projects",
            "project",
            {
                **NAMED,
                "local_path": _str(),
                "scm_type": _str(choices=("", "git", "svn", "insights", "archive")),
                "scm_url": _str(),
                "scm_branch": _str(),
                "scm_refspec": _str(),
                "scm_clean": _bool(),
                "scm_delete_on_update": _bool(),
                "scm_track_submodules": _bool(),
                "credential": _fk("credentials"),
                "timeout": _int(),
                "scm_revision": Field("str", "", read_only=True),
                "organization": _fk("organizations"),
                "scm_update_on_launch": _bool(),
                "scm_update_cache_timeout": _int(),
                "allow_override": _bool(),
                "default_environment": _fk("execution_environments"),
                "signature_validation_credential": _fk("credentials"),
                "status": Field("str", "never updated", read_only=True),
                "custom_virtualenv": Field("str", None, read_only=True),
                "last_update_failed": Field("bool", False, read_only=True),
            },
            unique=("name", "organization"),
            related=("update", "playbooks", "project_updates"),
        ),
        Resource(
            "inventories",
            "inventory",
            {
                **NAMED,
                "organization": _fk("organizations"),
                "kind": _str(choices=("", "smart", "constructed")),
                "host_filter": _str(None),
                "variables": _vars(),
                "prevent_instance_group_fallback": _bool(),
                "total_hosts": Field("int", 0, read_only=True),
                "has_inventory_sources": Field("bool", False, read_only=True),
            },
            unique=("name", "organization"),
            related=("hosts", "groups", "inventory_sources"),
        ),
        Resource(
            "hosts",
            "host",
            {
                **NAMED,
                "inventory": _fk("inventories", required=True),
                "enabled": _bool(True),
                "instance_id": _str(),
                "variables": _vars(),
            },
            unique=("name", "inventory"),
        ),
        Resource(
            "inventory_sources",
            "inventory_source",
            {
                **NAMED,
                "inventory": _fk("inventories", required=True),
                "source": _str(
                    None,
                    required=True,
                    choices=(
                        "file",
                        "constructed",
                        "scm",
                        "ec2",
                        "gce",
                        "azure_rm",
                        "vmware",
                        "satellite6",
                        "openstack",
                        "rhv",
                        "controller",
                        "insights",
                        "terraform",
                        "openshift_virtualization",
                    ),
                ),
                "source_project": _fk("projects"),
                "source_path": _str(),
                "scm_branch": _str(),
                "source_vars": _vars(),
                "credential": _fk("credentials"),
                "enabled_var": _str(),
                "enabled_value": _str(),
                "host_filter": _str(),
                "limit": _str(),
                "overwrite": _bool(),
                "overwrite_vars": _bool(),
                "update_on_launch": _bool(),
                "timeout": _int(),
                "update_cache_timeout": _int(),
                "verbosity": Field("int", 1, choices=(0, 1, 2)),
                "execution_environment": _fk("execution_environments"),
                "status": Field("str", "never updated", read_only=True),
            },
            unique=("name", "inventory"),
            related=("update", "inventory_updates"),
        ),
        Resource(
            "job_templates",
            "job_template",
            {
                **NAMED,
                "project": _fk("projects", required=True),
                "playbook": _str(required=True),
                "inventory": _fk("inventories"),
                "organization": _fk("organizations", read_only=True),
                "job_type": _str("run", choices=("run", "check")),
                "scm_branch": _str(),
                "forks": _int(),
                "limit": _str(),
                "verbosity": Field("int", 0, choices=(0, 1, 2, 3, 4, 5)),
                "extra_vars": _vars(),
                "job_tags": _str(),
                "force_handlers": _bool(),
                "skip_tags": _str(),
                "start_at_task": _str(),
                "timeout": _int(),
                "use_fact_cache": _bool(),
                "host_config_key": _str(),
                "survey_enabled": _bool(),
                "become_enabled": _bool(),
                "diff_mode": _bool(),
                "allow_simultaneous": _bool(),
                "job_slice_count": _int(1),
                "webhook_service": _str(choices=("", "github", "gitlab", "bitbucket_dc")),
                "webhook_credential": _fk("credentials"),
                "execution_environment": _fk("execution_environments"),
                "prevent_instance_group_fallback": _bool(),
                "custom_virtualenv": Field("str", None, read_only=True),
                "status": Field("str", "never updated", read_only=True),
                **{f"ask_{p}_on_launch": _bool() for p in PROMPTS},
            },
            unique=("name", "organization"),
            related=("launch", "survey_spec", "credentials", "jobs", "labels"),
        ),
        Resource(
            "workflow_job_templates",
            "workflow_job_template",
            {
                **NAMED,
                "organization": _fk("organizations"),
                "extra_vars": _vars(),
                "inventory": _fk("inventories"),
                "limit": _str(None),
                "scm_branch": _str(None),
                "job_tags": _str(None),
                "skip_tags": _str(None),
                "survey_enabled": _bool(),
                "allow_simultaneous": _bool(),
                "webhook_service": _str(),
                "webhook_credential": _fk("credentials"),
                "status": Field("str", "never updated", read_only=True),
                **{
                    f"ask_{p}_on_launch": _bool()
                    for p in ("variables", "inventory", "scm_branch", "limit", "labels", "tags", "skip_tags")
                },
            },
            unique=("name", "organization"),
            related=("launch", "survey_spec", "workflow_nodes", "workflow_jobs"),
        ),
        Resource(
            "workflow_job_template_nodes",
            "workflow_job_template_node",
            {
                "workflow_job_template": _fk("workflow_job_templates", required=True),
                "unified_job_template": Field("fk", None, target="unified_job_templates"),
                "identifier": _str(),
                "all_parents_must_converge": _bool(),
                "extra_data": Field("dict", {}),
                "inventory": _fk("inventories"),
                "execution_environment": _fk("execution_environments"),
                **{name: Field("str", None) for name in ("scm_branch", "job_type", "job_tags", "skip_tags", "limit")},
                **{name: Field("int", None) for name in ("verbosity", "forks", "job_slice_count", "timeout")},
                "diff_mode": Field("bool", None),
            },
            unique=("identifier", "workflow_job_template"),
            identity="identifier",
            related=("success_nodes", "failure_nodes", "always_nodes", "credentials"),
        ),
    )
}
JOB_TYPES = {"jobs": "job", "project_updates": "project_update", "inventory_updates": "inventory_update",
             "workflow_jobs": "workflow_job"}  # fmt: skip


def coerce(resource: Resource, name: str, spec: Field, value: Any) -> Any:  # noqa: PLR0912 - one branch per kind of field
    """A value as the serializer stores it, or Invalid naming the field."""
    if value is None:
        if spec.kind == "str" and spec.default is not None:
            return ""
        if spec.kind == "bool":
            return False
        if spec.required:
            raise invalid(name, "This field may not be null.")
        return None
    if spec.kind == "bool":
        if value == "":
            return False
        if not isinstance(value, bool):
            raise invalid(name, "Must be a valid boolean.")
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.lstrip("-").isdigit():
                value = int(value)
            else:
                raise invalid(name, "A valid integer is required.")
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise invalid(name, f"Not a valid string: {value!r}.")
        if spec.required and value == "":
            raise invalid(name, "This field may not be blank.")
    elif spec.kind == "dict":
        if not isinstance(value, dict):
            raise invalid(name, f"{type(value).__name__} provided, expected dict")
    elif spec.kind == "vars":
        if not isinstance(value, str):
            value = json.dumps(value)
        parse_vars(value, name)  # a JSON or YAML dict, kept as the string given
    elif spec.kind == "fk" and (isinstance(value, bool) or not isinstance(value, int)):
        raise invalid(name, f"Incorrect type. Expected pk value, received {type(value).__name__}.")
    if spec.choices and value not in spec.choices:
        if resource.endpoint == "credential_types" and name == "kind":
            raise invalid(name, f"Must be 'cloud' or 'net', not {value}")
        raise invalid(name, f'"{value}" is not a valid choice.')
    return value


def parse_vars(text: str, name: str = "variables") -> dict[str, Any]:
    """AWX's vars_validate_or_raise: JSON or YAML that is a dict (or empty)."""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise invalid(name, f"Cannot parse as JSON or YAML: {exc}") from exc
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise invalid(name, f"Input type `{type(parsed).__name__}` is not a dictionary")
    return parsed


# --- credential types (awx/main/fields.py CredentialTypeInputField, CredentialTypeInjectorField) -----------------

FIELD_KEYS = {
    "id",
    "label",
    "type",
    "format",
    "choices",
    "help_text",
    "multiline",
    "secret",
    "ask_at_runtime",
    "default",
}


def validate_type_inputs(inputs: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0912 - one branch per rule of AWX's schema
    """The inputs schema of a custom credential type, normalised as AWX stores it (a missing `type` is `string`)."""
    extra = set(inputs) - {"fields", "required"}
    if extra:
        raise invalid("inputs", f"Schema validation error in relative path [] (Additional properties are not allowed "
                                f"({', '.join(repr(k) for k in sorted(extra))} was unexpected))")  # fmt: skip
    fields = inputs.get("fields", [])
    if not isinstance(fields, list):
        raise invalid("inputs", "Schema validation error in relative path ['fields'] (not an array)")
    seen: set[str] = set()
    normalised = []
    for index, item in enumerate(fields):
        where = f"Schema validation error in relative path ['fields', {index}]"
        if not isinstance(item, dict) or "id" not in item or "label" not in item:
            raise invalid("inputs", f"{where} ('id' and 'label' are required properties)")
        unknown = set(item) - FIELD_KEYS
        if unknown:
            raise invalid(
                "inputs", f"{where} (Additional properties are not allowed ({sorted(unknown)[0]!r} was unexpected))"
            )
        ident = item["id"]
        if not isinstance(ident, str) or not VARIABLE_NAME.match(ident):
            raise invalid("inputs", f"{ident} is an invalid variable name")
        if ident == "tower":
            raise invalid("inputs", '"tower" is a reserved field name')
        if ident in seen:
            raise invalid("inputs", f"field IDs must be unique ({ident})")
        seen.add(ident)
        kind = item.get("type", "string")
        if kind not in ("string", "boolean"):
            raise invalid("inputs", f"{where} ({kind!r} is not one of ['string', 'boolean'])")
        if kind == "boolean" and {"choices", "multiline", "format", "secret"} & set(item):
            raise invalid("inputs", f"{ident} is a boolean: choices, multiline, format and secret are for strings")
        if "default" in item and not isinstance(item["default"], bool if kind == "boolean" else str):
            raise invalid("inputs", f"{ident}: default must be a {kind}")
        if item.get("ask_at_runtime"):
            raise invalid("inputs", "ask_at_runtime is not supported for custom credentials.")
        normalised.append({**item, "type": kind})
    required = inputs.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise invalid("inputs", "Schema validation error in relative path ['required'] (must be a list of ids)")
    return {**inputs, "fields": normalised} if "fields" in inputs else inputs


def validate_type_injectors(injectors: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Injector keys AWX accepts, and every template rendered with StrictUndefined against the type's fields."""
    extra = set(injectors) - {"file", "env", "extra_vars"}
    if extra:
        raise invalid("injectors", f"Additional properties are not allowed ({sorted(extra)[0]!r} was unexpected)")
    files = injectors.get("file", {})
    if any(not re.match(r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$", key) for key in files):
        raise invalid("injectors", "file injector keys are `template` or `template.<name>`")
    if "template" in files and len(files) > 1:
        raise invalid("injectors", "Must use multi-file syntax when injecting multiple files")
    for name in injectors.get("env", {}):
        if not VARIABLE_NAME.match(name):
            raise invalid("injectors", f"{name} is an invalid variable name")
        if name.startswith("ANSIBLE_") or name in ENV_BLOCKLIST:
            raise invalid("injectors", f"Environment variable {name} may affect Ansible configuration so its use is "
                                       "not allowed in credentials.")  # fmt: skip
    namespace: dict[str, Any] = {}
    for item in inputs.get("fields", []):
        namespace[item["id"]] = False if item.get("type") == "boolean" else "EXAMPLE"
    names = [key.split(".", 1)[1] for key in files if "." in key]
    namespace["tower"] = {"filename": dict.fromkeys(names, "/tmp/x") if names else "/tmp/x"}  # noqa: S108
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    for section in ("file", "env", "extra_vars"):
        for key, template in _templates(injectors.get(section, {})):
            try:
                env.from_string(template).render(namespace)
            except jinja2.UndefinedError as exc:
                raise invalid("injectors", f"{section}.{key} uses an undefined field ({exc})") from exc
            except jinja2.TemplateSyntaxError as exc:
                raise invalid("injectors", f"{section}.{key}: syntax error rendering template ({exc})") from exc


def _templates(tree: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(tree, dict):
        return [pair for key, value in tree.items() for pair in _templates(value, f"{prefix}{key}.")]
    if isinstance(tree, list):
        return [pair for i, value in enumerate(tree) for pair in _templates(value, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), tree)] if isinstance(tree, str) else []


def validate_credential_inputs(inputs: dict[str, Any], type_inputs: dict[str, Any], creating: bool) -> None:
    """AWX's CredentialInputField: only the type's fields, of their types and choices; `required` is not enforced
    here (a job refuses to start instead)."""
    fields = {item["id"]: item for item in type_inputs.get("fields", [])}
    unknown = sorted(set(inputs) - set(fields))
    if unknown:
        raise invalid("inputs", f"Additional properties are not allowed ({', '.join(repr(u) for u in unknown)} "
                                f"{'was' if len(unknown) == 1 else 'were'} unexpected)")  # fmt: skip
    errors: dict[str, list[str]] = {}
    for key, value in inputs.items():
        spec = fields[key]
        if spec.get("type", "string") == "boolean" and not isinstance(value, bool):
            errors[key] = [f"{value!r} is not of type 'boolean'"]
        elif spec.get("type", "string") == "string" and not isinstance(value, str):
            errors[key] = [f"{value!r} is not of type 'string'"]
        elif spec.get("choices") and value not in spec["choices"]:
            errors[key] = [f"{value!r} is not one of {spec['choices']}"]
        elif spec.get("format") == "url" and value and not re.match(r"^[a-z][a-z0-9+.-]*://[^/\s]+", value):
            errors[key] = ["Invalid URL: missing scheme or host"]
        elif creating and spec.get("secret") and value == ENCRYPTED:
            raise invalid("inputs", f"$encrypted$ is a reserved keyword, and cannot be used for {key}.")
    if errors:
        raise Invalid({"inputs": errors})


# --- surveys (awx/api/views/__init__.py JobTemplateSurveySpec, awx/main/models/mixins.py) ----------------------


def _choices(question: dict[str, Any]) -> list[str]:
    choices = question.get("choices", [])
    if isinstance(choices, str):
        return [line for line in choices.split("\n") if line.strip()]
    return list(choices)


def validate_survey_spec(spec: dict[str, Any]) -> dict[str, Any]:  # noqa: PLR0912 - one branch per rule AWX checks
    """The checks AWX runs when a survey is saved; the spec as AWX stores it."""
    for key in ("name", "description"):
        if key not in spec:
            raise Invalid({"error": f"Field '{key}' is missing from survey spec."})
        if not isinstance(spec[key], str):
            raise Invalid({"error": f"'{key}' in survey spec must be a string."})
    if not isinstance(spec.get("spec"), list):
        raise Invalid({"error": "'spec' must be a list of items."})
    if not spec["spec"]:
        raise Invalid({"error": "'spec' doesn't contain any items."})
    seen: set[str] = set()
    stored = []
    for index, question in enumerate(spec["spec"]):
        if not isinstance(question, dict):
            raise Invalid({"error": f"Survey question {index} is not a json object."})
        for key in ("type", "question_name", "variable", "required"):
            if key not in question:
                raise Invalid({"error": f"'{key}' missing from survey question {index}."})
        if not isinstance(question["required"], bool):
            raise Invalid({"error": f"'required' in survey question {index} expected to be boolean."})
        variable, kind = question["variable"], question["type"]
        if variable in seen:
            raise Invalid({"error": f"'variable' '{variable}' duplicated in survey question {index}."})
        seen.add(variable)
        if kind not in SURVEY_TYPES:
            raise Invalid({"error": f"'{kind}' in survey question {index} is not one of '{', '.join(SURVEY_TYPES)}' "
                                    "allowed question types."})  # fmt: skip
        default = question.get("default", "")
        expected = {"integer": (int,), "float": (int, float)}.get(kind, (str,))
        if default != "" and (isinstance(default, bool) or not isinstance(default, expected)):
            raise Invalid({"error": f"Default value {default} in survey question {index} expected to be "
                                    f"{'int' if kind == 'integer' else 'float' if kind == 'float' else 'string'}."})  # fmt: skip
        for bound in ("min", "max"):
            if question.get(bound) is not None and (
                isinstance(question[bound], bool) or not isinstance(question[bound], int)
            ):
                raise Invalid({"error": f"The {bound} limit in survey question {index} expected to be integer."})
        if kind in ("multiplechoice", "multiselect"):
            if "choices" not in question:
                raise Invalid({"error": f"Survey question {index} of type {kind} must specify choices."})
            choices = _choices(question)
            defaults = [line for line in str(default).split("\n") if line.strip()] if default != "" else []
            if kind == "multiplechoice" and len(defaults) > 1:
                raise Invalid({"error": "Multiple Choice (Single Select) can only have one default value."})
            for line in defaults:
                if line not in choices:
                    raise Invalid({"error": "Default choice must be answered from the choices listed."})
        stored.append(
            {**question, "choices": "\n".join(choices)} if isinstance(question.get("choices"), str) else question
        )
    return {**spec, "spec": stored}


def survey_answer_errors(question: dict[str, Any], value: Any) -> list[str]:  # noqa: PLR0911, PLR0912 - per type
    """AWX's launch-time check of one answer (_survey_element_validation): no type coercion."""
    variable, kind = question["variable"], question["type"]
    if kind in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return [f"Value {value} for '{variable}' expected to be a string."]
        low, high = question.get("min"), question.get("max")
        if value != "" and low not in (None, "") and len(value) < int(low):
            return [f"'{variable}' value {value} is too small (length is {len(value)} must be at least {low})."]
        if value != "" and high not in (None, "") and len(value) > int(high):
            return [f"'{variable}' value {value} is too large (must be no more than {high})."]
    elif kind in ("integer", "float"):
        ok = (int,) if kind == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok):
            return [
                f"Value {value} for '{variable}' expected to be {'an integer' if kind == 'integer' else 'a numeric type'}."
            ]
        low, high = question.get("min"), question.get("max")
        if low not in (None, "") and value < low:
            return [f"'{variable}' value {value} is too small (must be at least {low})."]
        if high not in (None, "") and value > high:
            return [f"'{variable}' value {value} is too large (must be no more than {high})."]
    elif kind == "multiplechoice":
        if value not in _choices(question):
            return [f"Value {value} for '{variable}' expected to be one of {_choices(question)}."]
    elif kind == "multiselect":
        if not isinstance(value, list):
            return [f"'{variable}' value is expected to be a list."]
        bad = [item for item in value if item not in _choices(question)]
        if bad:
            return [f"Value {bad[0]} for '{variable}' expected to be one of {_choices(question)}."]
    return []


@dataclass
class Record:
    """One stored object: its field values and what the double keeps beside them."""

    endpoint: str
    id: int
    values: dict[str, Any]
    secrets: dict[str, Any] = field(default_factory=dict)  # credential inputs in clear
    extra: dict[str, Any] = field(default_factory=dict)  # survey spec, associations, run state, ...
