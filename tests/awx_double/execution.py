"""AWX 24.6.1's job execution, emulated for the AWX double: the private data dir, credential injection and
`ansible-runner transmit | worker | process` with a real execution environment under podman.

The spec is docs/research/awx-job-execution.md (§ numbers below). `jobs.py:N`, `credential/__init__.py:N`, ... cite
AWX's awx/main/ at tag 24.6.1; `runner:` cites ansible-runner 2.4.3 as installed in the venv. Where this emulation
has to differ from AWX, a comment says `Differs:`.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import ansible_runner.interface
import yaml
from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sandbox.ee import JOB_CGROUP_PARENT, execution_node_podman
from sandbox.images import remove_cgroups

CONTAINER_ROOT = "/runner"  # utils/execution_environments.py:58
HIDDEN = "**********"  # credential/__init__.py:57
# '--user=root' is AWX's (jobs.py:159); DEFAULT_CONTAINER_RUN_OPTIONS is ['--network', 'host'] here (the sandbox's
# services listen on 127.0.0.1). Differs: AWX's default is ['--network', 'slirp4netns:enable_ipv6=true'].
CONTAINER_OPTIONS = ["--user=root", "--network", "host"]
RUNNER = Path(sys.prefix) / "bin" / "ansible-runner"
PROJECT_UPDATE_PLAYBOOK = Path(__file__).with_name("project_update.yml")
WORKER_GRACE = 120  # seconds past job_timeout (which the worker's runner enforces) before the worker is killed
WORKER_CAP = 4 * 3600  # the longest a run may take when it has no timeout
MAX_FORKS = 200  # conf.py:533
# Every upper-case ANSIBLE_* Django setting, str(value), in dir(settings) (sorted) order (jobs.py:301-303): AWX's
# (settings/defaults.py:599-610) and django-ansible-base's static ones (defaults.py:1145-1185, a leak fixed after
# 24.6.1). Differs: the ANSIBLE_BASE_* settings ansible_base's dynamic_settings.py adds are not listed.
ANSIBLE_SETTINGS = dict(sorted({
    "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False", "ANSIBLE_FORCE_COLOR": "True",
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_BASE_TEAM_MODEL": "main.Team",
    "ANSIBLE_BASE_ORGANIZATION_MODEL": "main.Organization", "ANSIBLE_BASE_RESOURCE_CONFIG_MODULE": "awx.resource_api",
    "ANSIBLE_BASE_PERMISSION_MODEL": "main.Permission", "ANSIBLE_BASE_CUSTOM_VIEW_PARENT": "awx.api.generics.APIView",
    "ANSIBLE_BASE_ROLE_PRECREATE": "{}", "ANSIBLE_BASE_ROLE_CREATOR_NAME": "{cls.__name__} Creator",
    "ANSIBLE_BASE_ROLE_SYSTEM_ACTIVATED": "True", "ANSIBLE_BASE_CACHE_PARENT_PERMISSIONS": "True",
    "ANSIBLE_BASE_CREATOR_DEFAULTS": "['change', 'delete', 'execute', 'use', 'adhoc', 'approve', 'update', 'view']",
    "ANSIBLE_BASE_ALLOW_TEAM_ORG_ADMIN": "False", "ANSIBLE_BASE_ALLOW_CUSTOM_TEAM_ROLES": "False",
    "ANSIBLE_BASE_ALLOW_SINGLETON_USER_ROLES": "True", "ANSIBLE_BASE_ALLOW_SINGLETON_TEAM_ROLES": "False",
    "ANSIBLE_BASE_ALLOW_SINGLETON_ROLES_API": "False",
}.items()))  # fmt: skip
ENV_BLOCKLIST = frozenset((  # constants.py:48-70
    "VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID", "INVENTORY_UPDATE_ID",
    "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES", "CALLBACK_QUEUE", "CALLBACK_CONNECTION",
    "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS", "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH",
))  # fmt: skip
BECOME_METHODS = ("sudo", "su", "pbrun", "pfexec", "dzdo", "pmrun", "runas", "enable", "doas", "ksu", "machinectl",
                  "sesu")  # constants.py:18-31  # fmt: skip
COLLECTIONS_DEFAULT = "~/.ansible/collections:/usr/share/ansible/collections"
ROLES_DEFAULT = "~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles"
INVENTORY_UPDATE_ENV = {  # constants.py:34-43
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_INVENTORY_EXPORT": "True",
    "ANSIBLE_VERBOSE_TO_STDERR": "True", "ANSIBLE_HOST_PATTERN_MISMATCH": "error",
}  # fmt: skip
GALAXY_TASK_ENV = {"ANSIBLE_FORCE_COLOR": "false", "GIT_SSH_COMMAND": "ssh -o StrictHostKeyChecking=no"}  # fmt: skip
_MISSING = object()
# What preparing a PDD raises for bad input (AWX catches every Exception there, jobs.py:641-644).
PREPARATION_ERRORS = (OSError, ValueError, RuntimeError, AttributeError, TypeError, KeyError, yaml.YAMLError,
                      TemplateError)  # fmt: skip


@dataclass
class Credential:
    """One credential attached to a job, as AWX has it at run time."""

    name: str
    kind: str  # the credential type's kind: 'cloud', 'net', 'kubernetes', 'ssh', 'vault', ...
    namespace: str | None  # managed type namespace, e.g. 'kubernetes_bearer_token'; None for custom types
    fields: list[dict]  # the type's inputs.fields
    injectors: dict  # the type's injectors ({} for managed types with a built-in injector function)
    inputs: dict  # decrypted input values, as stored (empty secrets absent)


@dataclass
class JobSpec:
    """What RunJob reads from the job and its template (the caller resolves the survey, meta vars, inventory)."""

    id: int
    playbook: str
    project_checkout: Path
    requirements_collections: Path | None
    requirements_roles: Path | None
    inventory: dict  # Inventory.get_script_data(hostvars=True, towervars=True)
    extra_vars: dict  # JT extra_vars <- survey defaults <- launch answers
    template_extra_vars: dict  # the JT's own extra_vars (ALLOW_JINJA_IN_EXTRA_VARS='template')
    meta_vars: dict  # awx_*/tower_*; they override extra_vars
    credentials: list[Credential]
    image: str
    mode: str = "execution_node"  # or 'container_group'
    job_type: str = "run"  # or 'check'
    limit: str = ""
    job_tags: str = ""
    skip_tags: str = ""
    verbosity: int = 0
    forks: int = 0
    diff_mode: bool = False
    timeout: int = 0
    env: dict = field(default_factory=dict)  # INVENTORY_ID, PROJECT_REVISION, AWX_HOST; any other key: AWX_TASK_ENV
    become_enabled: bool = False


@dataclass
class RunResult:
    status: str  # 'successful' | 'failed' | 'error' (AWX's final status: runner 'timeout' -> 'failed')
    rc: int | None  # the worker's artifacts/<id>/rc (AWX's processor result has none)
    private_data_dir: Path  # the controller-side PDD; the caller deletes it
    events: list[dict] = field(default_factory=list)
    stdout: str = ""
    explanation: str = ""  # job_explanation
    job_args: list[str] = field(default_factory=list)
    job_env: dict = field(default_factory=dict)
    result_traceback: str = ""


@dataclass
class _Prepared:
    pdd: Path
    env: dict[str, str]
    args: list[str]
    safe: dict[str, str]  # build_safe_env(env) + the credentials' safe values (jobs.py:520-538)
    passwords: dict[str, str]  # expect prompt -> answer (jobs.py:360-364)
    ssh_key: str | None
    host_map: dict[str, Any]


# --- files -----------------------------------------------------------------------------------------------------


def safe_env(env: dict) -> dict:
    """AWX's build_safe_env (credential/__init__.py:60-77): keys matching API|TOKEN|KEY|SECRET|PASS hidden (not
    AWS_ACCESS_KEY_ID, not ANSIBLE_* except ANSIBLE_NET*/ANSIBLE_GALAXY_SERVER*); a value holding
    scheme://user:pass@ is replaced as a whole (the regex spans the value)."""
    hidden, urlpass = re.compile(r"API|TOKEN|KEY|SECRET|PASS", re.I), re.compile(r"^.*?://[^:]+:(.*?)@.*?$")
    safe = dict(env)
    for key, value in safe.items():
        if key == "AWS_ACCESS_KEY_ID" or (
            key.startswith("ANSIBLE_") and not key.startswith(("ANSIBLE_NET", "ANSIBLE_GALAXY_SERVER"))
        ):
            continue
        if hidden.search(key):
            safe[key] = HIDDEN
        elif isinstance(value, str) and urlpass.match(value):
            safe[key] = urlpass.sub(HIDDEN, value)
    return safe


def inventory_script(data: dict) -> str:
    """inventory/hosts: a python script printing the JSON (jobs.py:321; repr() of json.dumps)."""
    return "#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(data)  # noqa: UP031


class _UnsafeDumper(yaml.SafeDumper):
    def represent_data(self, data: Any) -> yaml.Node:
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def extravars_yaml(variables: dict, safe_dict: dict | None = None) -> str:
    """AWX's safe_dump (utils/safe_yaml.py:27-68): one YAML document per top-level key; every string tagged !unsafe
    unless the key is in safe_dict with an equal value (the JT's own extra vars, §3.1)."""
    safe_dict = safe_dict or {}
    parts = []
    for key, value in variables.items():
        dumper = yaml.SafeDumper if key in safe_dict and safe_dict[key] == value else _UnsafeDumper
        parts.append(yaml.dump_all([{key: value}], None, Dumper=dumper, default_flow_style=False))
    return "".join(parts)


def _write(pdd: Path, sub_dir: str | None, name: str | None, data: str, mode: int = 0o600) -> Path:
    """write_private_data_file (jobs.py:123-140): sub_dir made 0700; a mkstemp name when none is given."""
    base = pdd / sub_dir if sub_dir else pdd
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    if name:
        path = base / name
    else:
        handle, raw = tempfile.mkstemp(dir=base)
        os.close(handle)
        path = Path(raw)
    path.touch(mode=mode, exist_ok=True)
    path.write_text(data)
    return path


def _write_env_file(pdd: Path, data: str, mode: int) -> str:
    """An injector's mkstemp file in PDD/env, chmod'ed; its path inside the EE (to_container_path)."""
    handle, raw = tempfile.mkstemp(dir=pdd / "env")
    with os.fdopen(handle, "w") as out:
        out.write(data)
    os.chmod(raw, mode)
    return CONTAINER_ROOT + raw[len(str(pdd)) :]


def _new_pdd(ident: int, root: Path) -> Path:
    """build_private_data_dir (jobs.py:209-222): mkdtemp awx_<id>_ (0700) with inventory/ and env/."""
    root.mkdir(parents=True, exist_ok=True)
    pdd = Path(tempfile.mkdtemp(prefix=f"awx_{ident}_", dir=root.absolute()))
    pdd.chmod(0o700)
    for sub in ("inventory", "env"):
        (pdd / sub).mkdir()
    return pdd


def _copy_project(checkout: Path, pdd: Path, collections: Path | None, roles: Path | None) -> None:
    """make_local_copy (jobs.py:1362-1385): the checkout without .git, then the cache's requirements_* if present."""
    shutil.copytree(checkout, pdd / "project", ignore=shutil.ignore_patterns(".git"), symlinks=True)
    for source, name in ((collections, "requirements_collections"), (roles, "requirements_roles")):
        if source is not None and source.exists():
            shutil.copytree(source, pdd / name, symlinks=True)


def _settings(pdd: Path, timeout: int) -> None:
    """env/settings (jobs.py:580-591); job_timeout per get_instance_timeout (341-350), global defaults 0."""
    runner_settings = {"job_timeout": max(timeout, 0), "suppress_ansible_output": True, "suppress_output_file": True}
    _write(pdd, "env", "settings", json.dumps(runner_settings))


def _base_env(pdd: Path, task_env: dict) -> dict[str, str]:
    """BaseTask.build_env (jobs.py:295-313): ANSIBLE_* settings, AWX_TASK_ENV, AWX_PRIVATE_DATA_DIR."""
    env = dict(ANSIBLE_SETTINGS)
    env.update({key: str(value) for key, value in task_env.items()})
    env["AWX_PRIVATE_DATA_DIR"] = str(pdd)
    return env


def _path_vars(env: dict[str, str], pdd: Path, keys: list[tuple[str, str, str, str]]) -> None:
    """ANSIBLE_COLLECTIONS_PATH(S)/ANSIBLE_ROLES_PATH (jobs.py:927-946, utils/ansible.py:101-115), quirks kept."""
    parser, config = configparser.ConfigParser(), {}
    with contextlib.suppress(configparser.Error):
        parser.read(["/etc/ansible/ansible.cfg", pdd / "project" / "ansible.cfg"])
        defaults = parser["defaults"] if parser.has_section("defaults") else {}
        config = {key[1]: defaults[key[1]] for key in keys if key[1] in defaults}
    for env_key, setting, folder, default in keys:
        paths = default.split(":")
        source = env[env_key] if env_key in env else config.get(setting)
        for path in source.split(":") if source is not None else []:
            if path not in paths:
                paths = [source, *paths]
        env[env_key] = ":".join([f"{CONTAINER_ROOT}/{folder}", *paths])


# --- credentials -----------------------------------------------------------------------------------------------


def _get_input(cred: Credential, name: str, default: Any = _MISSING) -> Any:
    """Credential.get_input (credential/__init__.py:272-303): secrets prefer the type's default to `default`."""
    if name in cred.inputs:
        return cred.inputs[name]
    typed = next((f["default"] for f in cred.fields if f["id"] == name and "default" in f), _MISSING)
    secret = any(f["id"] == name and f.get("secret") for f in cred.fields)
    for value in (typed, default) if secret else (default, typed):
        if value is not _MISSING:
            return value
    raise AttributeError(name)


def _has_input(cred: Credential, name: str) -> bool:
    return cred.inputs.get(name) not in ("", None)


def _aws(cred: Credential, env: dict, pdd: Path) -> None:  # credential/injectors.py:12-18
    env["AWS_ACCESS_KEY_ID"] = _get_input(cred, "username", "")
    env["AWS_SECRET_ACCESS_KEY"] = _get_input(cred, "password", "")
    if _has_input(cred, "security_token"):
        env["AWS_SECURITY_TOKEN"] = env["AWS_SESSION_TOKEN"] = _get_input(cred, "security_token", "")


def _kubernetes_bearer_token(cred: Credential, env: dict, pdd: Path) -> None:  # credential/injectors.py:113-124
    env["K8S_AUTH_HOST"] = _get_input(cred, "host", "")
    env["K8S_AUTH_API_KEY"] = _get_input(cred, "bearer_token", "")
    if _get_input(cred, "verify_ssl") and "ssl_ca_cert" in cred.inputs:
        env["K8S_AUTH_VERIFY_SSL"] = "True"
        env["K8S_AUTH_SSL_CA_CERT"] = _write_env_file(pdd, _get_input(cred, "ssl_ca_cert"), 0o600)
    else:
        env["K8S_AUTH_VERIFY_SSL"] = "False"


BUILTIN_INJECTORS: dict[str, Callable[[Credential, dict, Path], None]] = {
    "aws": _aws, "kubernetes_bearer_token": _kubernetes_bearer_token,
}  # fmt: skip
UNEMULATED_INJECTORS = {"gce", "azure_rm", "vmware", "openstack", "terraform"}


def _render_tree(node: Any, jinja: ImmutableSandboxedEnvironment, namespace: dict) -> Any:
    if isinstance(node, dict):
        return {_render_tree(k, jinja, namespace): _render_tree(v, jinja, namespace) for k, v in node.items()}
    if isinstance(node, list):
        return [_render_tree(item, jinja, namespace) for item in node]
    return jinja.from_string(node).render(**namespace)


def _namespaces(cred: Credential) -> tuple[dict[str, Any], dict[str, Any]]:
    """The injector templates' namespace and its safe twin (credential/__init__.py:481-512): booleans always, strings
    only if non-empty, secrets as ********** in the safe one; missing booleans False; ssh keys end with a newline."""
    tower = SimpleNamespace()
    namespace: dict[str, Any] = {"tower": tower}
    safe_namespace: dict[str, Any] = {"tower": tower}
    secret = {f["id"] for f in cred.fields if f.get("secret")}
    for name in set(cred.inputs):
        value = _get_input(cred, name)
        if isinstance(value, bool):
            namespace[name] = safe_namespace[name] = value
            continue
        if name in secret or len(value):
            safe_namespace[name] = HIDDEN if name in secret else value
        if len(value):
            namespace[name] = value
    for spec in cred.fields:
        if spec["type"] == "boolean" and spec["id"] not in cred.inputs:
            namespace[spec["id"]] = safe_namespace[spec["id"]] = False
        if spec.get("format") == "ssh_private_key" and not namespace.get(spec["id"], "\n").endswith("\n"):
            namespace[spec["id"]] += "\n"
    return namespace, safe_namespace


def inject_credential(cred: Credential, env: dict, safe_cred_env: dict, args: list[str], pdd: Path) -> None:
    """CredentialType.inject_credential (credential/__init__.py:442-570, spec §3.3, §4.1): built-in injector
    functions, else the type's file (0600), env and extra_vars (0400, `-e @/runner/env/tmpXXXX`) injectors."""
    if not cred.injectors:
        if cred.namespace in UNEMULATED_INJECTORS:
            raise ValueError(f"credential {cred.name}: the built-in {cred.namespace} injector is not emulated")
        if cred.namespace in BUILTIN_INJECTORS:
            injected: dict[str, str] = {}
            BUILTIN_INJECTORS[cred.namespace](cred, injected, pdd)
            env.update(injected)
            safe_cred_env.update(safe_env(injected))
        return
    namespace, safe_namespace = _namespaces(cred)
    tower = namespace["tower"]
    jinja = ImmutableSandboxedEnvironment()  # default Undefined: an undefined name renders as ''
    for label, template in cred.injectors.get("file", {}).items():
        path = _write_env_file(pdd, jinja.from_string(template).render(**namespace), 0o600)
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = SimpleNamespace()
            setattr(tower.filename, label.split(".")[1], path)
    for var, template in cred.injectors.get("env", {}).items():
        if var.startswith("ANSIBLE_") or var in ENV_BLOCKLIST:
            continue  # AWX logs and skips it (fields.py:853-865)
        env[var] = jinja.from_string(template).render(**namespace)
        safe_cred_env[var] = jinja.from_string(template).render(**safe_namespace)
    if "INVENTORY_UPDATE_ID" not in env:
        extra_vars = _render_tree(cred.injectors.get("extra_vars", {}), jinja, namespace)
        if extra_vars:
            args.extend(["-e", "@" + _write_env_file(pdd, extravars_yaml(extra_vars), 0o400)])


# --- a job's private data dir ----------------------------------------------------------------------------------


def _sanitize_jinja(value: str) -> str:
    """utils/safe_yaml.py:71-84."""
    if re.search(r"\{\{[^}]+}}", value) or re.search(r"\{%[^%]+%}", value):
        raise ValueError("Inline Jinja variables are not allowed.")
    return value


def _passwords(creds: list[Credential]) -> dict[str, str]:
    """RunJob.build_passwords (jobs.py:843-880); no prompting on launch here ('ASK' values are dropped)."""
    passwords = {"yes": "yes", "no": "no", "": ""}
    machine = next((c for c in creds if c.kind == "ssh"), None)
    if machine:
        for key in ("ssh_key_unlock", "ssh_password", "become_password", "vault_password"):
            value = _get_input(machine, "password" if key == "ssh_password" else key, "")
            if value not in ("", "ASK"):
                passwords[key] = value
    for cred in (c for c in creds if c.kind == "vault"):
        vault_id = _get_input(cred, "vault_id", None)
        key = f"vault_password.{vault_id}" if vault_id else "vault_password"
        if vault_id and key in passwords:
            raise RuntimeError(f"multiple vault credentials were specified with --vault-id {vault_id}@prompt")
        if _get_input(cred, "vault_password", "") not in ("", "ASK"):
            passwords[key] = _get_input(cred, "vault_password", "")
    if "ssh_key_unlock" not in passwords:
        for cred in (c for c in creds if c.kind == "net" and c.inputs.get("ssh_key_unlock")):
            passwords["ssh_key_unlock"] = _get_input(cred, "ssh_key_unlock", "")
            break
    return passwords


def _expect(passwords: dict[str, str]) -> dict[str, str]:
    """RunJob.get_password_prompts (jobs.py:1047-1063) -> create_expect_passwords_data_struct (360-364)."""
    prompts = {r"Enter passphrase for .*:\s*?$": "ssh_key_unlock", r"Bad passphrase, try again for .*:\s*?$": ""}
    for method in BECOME_METHODS:
        prompts[rf"{method} password.*:\s*?$"] = prompts[rf"{method.upper()} password.*:\s*?$"] = "become_password"
    prompts.update({r"BECOME password.*:\s*?$": "become_password", r"SSH password:\s*?$": "ssh_password",
                    r"Password:\s*?$": "ssh_password", r"Vault password:\s*?$": "vault_password"})  # fmt: skip
    for key in (k for k in passwords if k.startswith("vault_password.")):
        prompts[rf"Vault password \({key.split('.', 1)[1]}\):\s*?$"] = key
    return {pattern: passwords.get(key, "") or "" for pattern, key in prompts.items()}


def _job_args(spec: JobSpec, passwords: dict[str, str]) -> list[str]:
    """RunJob.build_args (jobs.py:950-1017)."""
    machine = next((c for c in spec.credentials if c.kind == "ssh"), None)
    become_method = _get_input(machine, "become_method", "") if machine else ""
    become_user = _get_input(machine, "become_username", "") if machine else ""
    args = ["--check"] if spec.job_type == "check" else []
    args += ["-u", _sanitize_jinja((_get_input(machine, "username", "") if machine else "") or "root")]
    args += ["--ask-pass"] if "ssh_password" in passwords else []
    args += ["--become"] if spec.become_enabled else []
    args += ["--diff"] if spec.diff_mode else []
    args += ["--become-method", _sanitize_jinja(become_method)] if become_method else []
    args += ["--become-user", _sanitize_jinja(become_user)] if become_user else []
    args += ["--ask-become-pass"] if "become_password" in passwords else []
    for key in (k for k in passwords if k.startswith("vault_password")):
        args += ["--ask-vault-pass"] if key == "vault_password" else ["--vault-id", f"{key.split('.', 1)[1]}@prompt"]
    args += [f"--forks={min(spec.forks, MAX_FORKS)}"] if spec.forks else []
    args += ["-l", spec.limit] if spec.limit else []
    args += ["-" + "v" * min(5, spec.verbosity)] if spec.verbosity else []
    args += ["-t", spec.job_tags] if spec.job_tags else []
    args += [f"--skip-tags={spec.skip_tags}"] if spec.skip_tags else []
    return args


def _prepare_job(spec: JobSpec, pdd: Path) -> _Prepared:
    """BaseTask.run's preparation for a RunJob in a new PDD, in its order (jobs.py:498-591, spec §1-§3)."""
    _copy_project(spec.project_checkout, pdd, spec.requirements_collections, spec.requirements_roles)
    ssh_key, key_files = None, {}
    for index, cred in enumerate(spec.credentials):  # build_private_data_files (jobs.py:233-271, 819-844)
        if _has_input(cred, "ssh_key_data"):
            data = _get_input(cred, "ssh_key_data", "")
            data += "\n" if "OPENSSH PRIVATE KEY" in data and not data.endswith("\n") else ""
            if cred.namespace in ("ssh", "scm"):
                ssh_key = data
            else:
                key_files[index] = _write(pdd, "env", None, data)
        if _has_input(cred, "ssh_public_key_data"):
            _write(pdd, f"artifacts/{spec.id}", "ssh_key_data-cert.pub", _get_input(cred, "ssh_public_key_data"))
    passwords = _passwords(spec.credentials)
    _write(pdd, "env", "extravars", extravars_yaml({**spec.extra_vars, **spec.meta_vars}, spec.template_extra_vars))
    args = _job_args(spec, passwords)
    known = ("INVENTORY_ID", "PROJECT_REVISION", "AWX_HOST")
    env = _base_env(pdd, {k: v for k, v in spec.env.items() if k not in known})
    env.update(JOB_ID=str(spec.id), INVENTORY_ID=str(spec.env.get("INVENTORY_ID", "")))  # RunJob.build_env 882-948
    env["PROJECT_REVISION"] = str(spec.env.get("PROJECT_REVISION", ""))
    env.update(ANSIBLE_RETRY_FILES_ENABLED="False", MAX_EVENT_RES="700000")
    env["AWX_HOST"] = str(spec.env.get("AWX_HOST", "https://towerhost"))
    (pdd / "cp").mkdir(mode=0o700)
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = f"{CONTAINER_ROOT}/cp"
    for index, cred in enumerate(spec.credentials):
        if cred.kind != "net":
            continue
        env["ANSIBLE_NET_USERNAME"] = _get_input(cred, "username", "")
        env["ANSIBLE_NET_PASSWORD"] = _get_input(cred, "password", "")
        if index in key_files:
            env["ANSIBLE_NET_SSH_KEYFILE"] = str(key_files[index])  # the controller's path, as AWX passes it
        env["ANSIBLE_NET_AUTHORIZE"] = str(int(bool(_get_input(cred, "authorize", False))))
        if _get_input(cred, "authorize", False):
            env["ANSIBLE_NET_AUTH_PASS"] = _get_input(cred, "authorize_password", "")
    _path_vars(env, pdd, [("ANSIBLE_COLLECTIONS_PATHS", "collections_paths", "requirements_collections", COLLECTIONS_DEFAULT),
                          ("ANSIBLE_ROLES_PATH", "roles_path", "requirements_roles", ROLES_DEFAULT),
                          ("ANSIBLE_COLLECTIONS_PATH", "collections_path", "requirements_collections", COLLECTIONS_DEFAULT)])  # fmt: skip
    safe, safe_cred = safe_env(env), {}
    for cred in spec.credentials:
        inject_credential(cred, env, safe_cred, args, pdd)
    safe.update(safe_cred)
    _write(pdd, "env", "cmdline", " ".join(shlex.quote(arg) for arg in args))  # runner's args2cmdline
    _write(pdd, "inventory", "hosts", inventory_script(spec.inventory), mode=0o700)
    _settings(pdd, spec.timeout)
    host_map = {h: v.get("remote_tower_id", "") for h, v in spec.inventory.get("_meta", {}).get("hostvars", {}).items()}
    return _Prepared(pdd, env, args, safe, _expect(passwords), ssh_key, host_map)


def build_private_data_dir(spec: JobSpec, root: Path) -> tuple[Path, dict, list[str]]:
    """The job's PDD exactly as AWX lays it out (awx_<id>_XXXX under root, spec §1.2): project/ (no .git),
    requirements_*, inventory/hosts (0700 script), env/extravars, credential files in env/ (0600; extra_vars 0400),
    env/cmdline, env/settings, cp/. Returns (pdd, envvars incl. secrets, ansible-playbook args)."""
    prepared = _prepare_job(spec, _new_pdd(spec.id, root))
    return prepared.pdd, prepared.env, prepared.args


# --- transmit | worker | process -------------------------------------------------------------------------------


def _ee_params(image: str, mounts: list[str]) -> dict[str, Any]:
    """build_execution_environment_params (jobs.py:148-201). Differs: AWX_ISOLATION_SHOW_PATHS is [] (defaults.py:646;
    production.py's /etc/pki paths do not exist here)."""
    params: dict[str, Any] = {"container_image": image, "process_isolation": True,
                              "process_isolation_executable": "podman", "container_options": list(CONTAINER_OPTIONS)}  # fmt: skip
    if mounts:
        params["container_volume_mounts"] = mounts
    return params


def _podman_on_path(directory: Path) -> None:
    """AWX passes process_isolation_executable='podman' and runner containerizes only for that exact name (runner:
    config/_base.py:165-169), so the execution node's PATH gets a `podman` running the sandbox's execution-node
    podman (with the PATH without this directory: that script runs the real podman by name)."""
    script = (f"#!/bin/sh\n# podman as the AWX double's execution node runs it (tests/awx_double/execution.py)\n"
              f"PATH={shlex.quote(os.environ.get('PATH', os.defpath))}; export PATH\n"
              f'exec {shlex.quote(str(execution_node_podman()))} "$@"\n')  # fmt: skip
    shim = directory / "podman"
    directory.mkdir(parents=True, exist_ok=True)
    if not shim.is_file() or shim.read_text() != script:
        tmp = directory / f".podman-{os.getpid()}-{threading.get_ident()}"
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(shim)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (podman's run in a pid namespace dies with its init)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [pid], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    for each in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(each, signal.SIGKILL)


def _run(ident: int, pdd: Path, params: dict[str, Any], *, mode: str, image: str, root: Path, safe: dict[str, str],
         host_map: dict[str, Any], on_event: Callable[[dict], None] | None, mounts: list[str] | None = None) -> RunResult:  # fmt: skip
    """AWXReceptorJob (receptor.py:383-556, spec §5): transmit into the worker's stdin, then (artifacts/ removed, as
    for non-local work) process its stdout. execution_node: `ansible-runner worker --delete` on this host in a
    directory of its own, podman process isolation; container_group: the worker inside the EE, PDD /runner."""
    podman, root = str(execution_node_podman()), root.absolute()
    if mode == "execution_node":
        params = {**params, **_ee_params(image, mounts or [])}
        _podman_on_path(root / "node" / "bin")
        argv = [str(RUNNER), "worker", f"--private-data-dir={root / 'node' / pdd.name}", "--delete"]
        container = f"ansible_runner_{ident}"  # runner's name for the job's container (runner: config/_base.py:236)
    elif mode == "container_group":  # receptor.py:598-690: the pod runs the EE with these args, no EE params
        container = f"automation-job-{ident}-{pdd.name.rsplit('_', 1)[1]}"  # the pod's name is automation-job-<id>
        argv = [podman, "run", "--rm", "-i", "--name", container, *CONTAINER_OPTIONS, image,
                "ansible-runner", "worker", f"--private-data-dir={CONTAINER_ROOT}"]  # fmt: skip
    else:
        raise ValueError(f"unknown mode {mode!r}")
    job_timeout = json.loads((pdd / "env" / "settings").read_text())["job_timeout"]
    limit = job_timeout + WORKER_GRACE if job_timeout > 0 else WORKER_CAP
    node_env = {"PATH": f"{root / 'node' / 'bin'}:{os.environ.get('PATH', os.defpath)}", "LANG": "C.UTF-8",
                "HOME": os.environ.get("HOME", "/root")}  # fmt: skip
    events: list[dict] = []
    state: dict[str, Any] = {"job_args": [], "job_env": {}}

    def status_handler(data: dict, runner_config: Any) -> None:  # callback.py:192-214
        if data["status"] == "starting":
            state["job_args"] = list(data.get("command") or [])
            job_env = dict(data.get("env") or {})
            state["job_env"] = {k: safe.get(k, v) for k, v in job_env.items()}
        elif data["status"] == "error":
            state.update({k: data[k] for k in ("result_traceback", "job_explanation") if data.get(k)})

    def event_handler(event: dict) -> bool:  # callback.py:68-176 (host_name/host_id); True: runner keeps the file
        host = str(event.get("event_data", {}).get("host", "")).strip()
        event["host_name"], event["host_id"] = host, host_map.get(host, "") if host else ""
        events.append(event)
        if on_event is not None:
            on_event(event)
        return True

    killed, status = threading.Event(), "error"
    with tempfile.TemporaryFile() as errors:
        worker = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=node_env,
                                  start_new_session=True)  # fmt: skip
        watchdog = threading.Timer(limit, lambda: (killed.set(), _kill_tree(worker.pid)))
        watchdog.start()
        try:
            sender = threading.Thread(target=_transmit, args=(params, worker, state), daemon=True)
            sender.start()
            sender.join(limit)
            shutil.rmtree(pdd / "artifacts", ignore_errors=True)  # receptor.py:456-460
            processor = ansible_runner.interface.run(streamer="process", quiet=True, _input=worker.stdout,
                                                     event_handler=event_handler, status_handler=status_handler,
                                                     cancel_callback=lambda: False, **params)  # fmt: skip
            status = "timeout" if killed.is_set() else processor.status
        finally:
            watchdog.cancel()
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _kill_tree(worker.pid)
                worker.wait(timeout=30)
            if killed.is_set() or status != "successful":  # a killed `podman run --rm` leaves its container behind
                subprocess.run(
                    [podman, "rm", "-f", "--ignore", container], capture_output=True, timeout=120, check=False
                )
            remove_cgroups(JOB_CGROUP_PARENT)
        errors.seek(0)
        worker_errors = errors.read()[-1000:].decode(errors="replace")
    explanation, result_traceback = state.get("job_explanation", ""), state.get("result_traceback", "")
    if status in ("timeout", "error"):  # jobs.py:625-629
        explanation = explanation or f"Job terminated due to {status}"
        status = "failed" if status == "timeout" else status
        if status == "error" and not result_traceback and worker_errors:  # receptor.py:500-518
            result_traceback = f"Receptor detail:\n{worker_errors}"
    elif status == "canceled":  # no cancel flag here: jobs.py:630-639
        explanation, status = explanation or "The running ansible process received a shutdown signal.", "failed"
    rc = None
    with contextlib.suppress(OSError, ValueError):
        rc = int((pdd / "artifacts" / str(ident) / "rc").read_text())
    ordered = sorted((e for e in events if e.get("stdout")), key=lambda e: e.get("start_line", 0))
    return RunResult(status=status, rc=rc, private_data_dir=pdd, events=events,
                     stdout="".join(e["stdout"] + "\n" for e in ordered), explanation=explanation,
                     job_args=state["job_args"], job_env=state["job_env"], result_traceback=result_traceback)  # fmt: skip


def _transmit(params: dict[str, Any], worker: subprocess.Popen, state: dict[str, Any]) -> None:
    """receptor.py:536-542: ansible_runner.interface.run(streamer='transmit', _output=...); then EOF."""
    try:
        ansible_runner.interface.run(streamer="transmit", _output=worker.stdin, cancel_callback=lambda: False, **params)
    except OSError:  # the worker went away (its own status line says why); AWX would record the traceback
        state.setdefault("result_traceback", traceback.format_exc())
    finally:
        with contextlib.suppress(OSError):
            worker.stdin.close()  # type: ignore[union-attr]


def _failed_to_start(pdd: Path) -> RunResult:
    """BaseTask.run's `except Exception` (jobs.py:641-644): status error, the traceback, no job_explanation."""
    return RunResult(status="error", rc=None, private_data_dir=pdd, result_traceback=traceback.format_exc())


def _job_params(spec: JobSpec, prepared: _Prepared) -> dict[str, Any]:
    """The runner params AWX builds (jobs.py:545-578); the EE params are added for execution nodes (_run)."""
    params = {"ident": spec.id, "private_data_dir": str(prepared.pdd), "playbook": spec.playbook,
              "inventory": str(prepared.pdd / "inventory" / "hosts"), "passwords": prepared.passwords,
              "suppress_env_files": True, "envvars": prepared.env}  # fmt: skip
    if prepared.ssh_key is not None:
        params["ssh_key"] = prepared.ssh_key
    params["fact_cache_type"] = ""  # Differs: use_fact_cache (and the fact cache files) is not emulated
    if spec.mode == "container_group":
        params["envvars"].pop("HOME", None)  # jobs.py:570-571
    return params


def run_job(spec: JobSpec, root: Path, on_event: Callable[[dict], None] | None = None) -> RunResult:
    """Run a playbook job as AWX does (spec §1-§5): its PDD under root, then transmit | worker | process."""
    pdd = _new_pdd(spec.id, root)
    try:
        prepared = _prepare_job(spec, pdd)
    except PREPARATION_ERRORS:
        return _failed_to_start(pdd)
    return _run(spec.id, pdd, _job_params(spec, prepared), mode=spec.mode, image=spec.image, root=root,
                safe=prepared.safe, host_map=prepared.host_map, on_event=on_event)  # fmt: skip


# --- project and inventory updates -----------------------------------------------------------------------------

PROJECT_UPDATE_PROMPTS = {  # RunProjectUpdate.get_password_prompts (jobs.py:1312-1322), no SCM credential
    r"Username for.*:\s*?$": "", r"Password for.*:\s*?$": "", r"Password:\s*?$": "",
    r"\S+?@\S+?\'s\s+?password:\s*?$": "", r"Enter passphrase for .*:\s*?$": "",
    r"Bad passphrase, try again for .*:\s*?$": "", r"^Are you sure you want to continue connecting \(yes/no\)\?\s*?$": "yes",
}  # fmt: skip


def run_project_update(  # noqa: PLR0917 - the AWX double's tasks call it positionally
    update_id: int, scm_url: str, scm_branch: str, checkout: Path, cache_stage: Path, image: str, root: Path,
    scm_clean: bool = False, *, galaxy: bool = True, job_tags: str = "update_git,install_roles,install_collections",
    timeout: int = 0, on_event: Callable[[dict], None] | None = None,
) -> tuple[RunResult, str | None]:  # fmt: skip
    """A git project update as RunProjectUpdate runs it (spec §6.3, jobs.py:1150-1445) with our own
    project_update.yml: checkout and cache_stage (PROJECTS_ROOT/.__awx_cache/<local_path>/stage) are mounted into the
    EE at their own paths. `galaxy`: the organization has a Galaxy credential (roles_enabled/collections_enabled).
    Returns the result and the revision from the set_fact event (callback.py:226-233), None unless successful.
    Differs: runs in `image` (AWX: the control-plane EE, projects.py:184-190); a file:// scm_url's repository is
    mounted too (AWX would need it in AWX_ISOLATION_SHOW_PATHS); no UriCleaner on git events (callback.py:110-127);
    no SCM credential; ansible-galaxy also gets ANSIBLE_COLLECTIONS_PATH (see project_update.yml)."""
    checkout, cache_stage = checkout.absolute(), cache_stage.absolute()
    cache = cache_stage.parent  # Project.get_cache_path (projects.py:199-202)
    if cache != checkout.parent / ".__awx_cache" / checkout.name:
        raise ValueError(f"{cache_stage} is not {checkout.parent}/.__awx_cache/{checkout.name}/stage")
    checkout.mkdir(parents=True, exist_ok=True)  # pre_run_hook (jobs.py:1324-1339)
    cache_stage.mkdir(parents=True, exist_ok=True)
    parts, pdd = urlsplit(scm_url), _new_pdd(update_id, root)
    try:
        (pdd / "project").mkdir()  # build_project_dir: AWX's awx/playbooks (jobs.py:1341-1346)
        shutil.copy2(PROJECT_UPDATE_PLAYBOOK, pdd / "project" / "project_update.yml")
        extra = {"scm_accept_hostkey": "true"} if parts.scheme.endswith("ssh") else {}
        extra.update(projects_root=str(checkout.parent), local_path=checkout.name, project_path=str(checkout),
                     insights_url="https://example.org", awx_license_type="open", awx_version="24.6.1",
                     scm_url=scm_url, scm_branch=scm_branch or "HEAD", scm_clean=scm_clean, scm_track_submodules=False,
                     roles_enabled=galaxy, collections_enabled=galaxy, galaxy_task_env=GALAXY_TASK_ENV)  # fmt: skip
        _write(pdd, "env", "extravars", extravars_yaml(extra))
        env = _base_env(pdd, {})
        env.update(ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_ASK_PASS="False", ANSIBLE_BECOME_ASK_PASS="False",
                   DISPLAY="", TMP=tempfile.gettempdir(), PROJECT_UPDATE_ID=str(update_id))  # fmt: skip
        _write(pdd, "env", "cmdline", " ".join(shlex.quote(arg) for arg in ["-t", job_tags]))
        _settings(pdd, timeout)
    except PREPARATION_ERRORS:
        return _failed_to_start(pdd), None
    mounts = [f"{checkout}:{checkout}:z", f"{cache}:{cache}:z"]
    if parts.scheme == "file" and Path(parts.path).exists():
        mounts.append(f"{parts.path}:{parts.path}:ro")
    params = {"ident": update_id, "private_data_dir": str(pdd), "playbook": "project_update.yml",
              "inventory": "localhost,", "passwords": dict(PROJECT_UPDATE_PROMPTS), "suppress_env_files": True,
              "envvars": env, "fact_cache_type": ""}  # fmt: skip
    result = _run(update_id, pdd, params, mode="execution_node", image=image, root=root, safe=safe_env(env), host_map={},
                  on_event=on_event, mounts=mounts)  # fmt: skip
    revision = None
    for event in result.events:
        data = event.get("event_data", {})
        if data.get("task_action") in ("set_fact", "ansible.builtin.set_fact"):
            revision = data.get("res", {}).get("ansible_facts", {}).get("scm_version", revision)
    return result, revision if result.status == "successful" else None


def run_inventory_update(  # noqa: PLR0917 - the AWX double's tasks call it positionally
    update_id: int, project_checkout: Path, source_path: str, image: str, root: Path,
    requirements_collections: Path | None = None, *, source_id: int = 0, source_vars: dict | None = None,
    limit: str = "", verbosity: int = 0, timeout: int = 0, on_event: Callable[[dict], None] | None = None,
) -> tuple[RunResult, dict | None]:  # fmt: skip
    """An SCM inventory source update as RunInventoryUpdate runs it (spec §6.4, jobs.py:1473-1637): PDD/args holds
    `ansible-inventory --list --export -i /runner/project/<source_path> ... --output /runner/artifacts/<id>/output.json`
    (runner's RAW mode), run in the EE by transmit | worker | process. Returns the result and output.json's data."""
    pdd = _new_pdd(update_id, root)
    try:
        _copy_project(project_checkout, pdd, requirements_collections, None)
        source = f"{CONTAINER_ROOT}/project/{source_path}"
        args = ["ansible-inventory", "--list", "--export", "-i", source, *(["--limit", limit] if limit else []),
                "--output", f"{CONTAINER_ROOT}/artifacts/{update_id}/output.json",
                "--playbook-dir", source if (pdd / "project" / source_path).is_dir() else os.path.dirname(source)]  # fmt: skip
        args += ["-" + "v" * min(5, verbosity * 2 + 1)] if verbosity else []
        env = _base_env(pdd, {})
        env.update(INVENTORY_SOURCE_ID=str(source_id), INVENTORY_UPDATE_ID=str(update_id), **INVENTORY_UPDATE_ENV)
        for key, value in (source_vars or {}).items():
            if str(key) not in env and str(key) not in ("HOME", "USER", "_", "TERM", "PATH"):  # defaults.py:702
                env[str(key)] = str(value)
        # Only the plural ANSIBLE_COLLECTIONS_PATHS (jobs.py:1501-1529), which ansible-core >= 2.19 ignores.
        _path_vars(env, pdd, [("ANSIBLE_COLLECTIONS_PATHS", "collections_paths", "requirements_collections",
                               COLLECTIONS_DEFAULT)])  # fmt: skip
        env["ANSIBLE_COLLECTIONS_PATHS"] += ":/usr/share/automation-controller/collections"
        _write(pdd, None, "args", " ".join(args))  # not quoted (jobs.py:1531-1532)
        _settings(pdd, timeout)
    except PREPARATION_ERRORS:
        return _failed_to_start(pdd), None
    params = {"ident": update_id, "private_data_dir": str(pdd), "suppress_env_files": True, "envvars": env,
              "fact_cache_type": ""}  # fmt: skip
    result = _run(update_id, pdd, params, mode="execution_node", image=image, root=root, safe=safe_env(env), host_map={},
                  on_event=on_event)  # fmt: skip
    output = pdd / "artifacts" / str(update_id) / "output.json"
    if result.status != "successful" or not output.is_file():
        return result, None
    return result, json.loads(output.read_text())
