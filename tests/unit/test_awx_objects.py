"""The AWX objects (awx/*.yml, playbooks/configure_awx.yml) agree with what they point at, without an AWX.

- every survey variable is an input of the roles or of the playbook its job template runs, of a matching type;
- every module argument configure_awx.yml passes is an option of that awx.awx module (ansible-doc's argument specs);
- every vault_* variable the production and staging inventories read is injected by a credential of that environment;
- every credential lists as secret inputs exactly its type's secret fields, and names an existing type.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.ansible import BIN, ROOT, ansible_env

AWX = ROOT / "awx"
# AWX's built-in type used by the environments (awx/main/models/credential/__init__.py).
KUBERNETES = "OpenShift or Kubernetes API Bearer Token"
KUBERNETES_SECRETS = {"bearer_token", "ssl_ca_cert"}
SURVEY_TYPES = {"integer": {"int"}, "float": {"float", "int"}, "text": {"str"}, "textarea": {"str"}, "password": {"str"},
                "multiplechoice": {"str", "bool"}, "multiselect": {"list"}}  # fmt: skip


class AnsibleLoader(yaml.SafeLoader):
    """YAML as Ansible reads these files: `!unsafe` marks a string it must not template."""


AnsibleLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load(name: str) -> dict[str, Any]:
    return yaml.load((AWX / name).read_text(), Loader=AnsibleLoader)  # noqa: S506 - a SafeLoader with one tag more


@cache
def role_options() -> dict[str, dict[str, Any]]:
    """Every input of every role's argument specs (all entry points), by name."""
    options: dict[str, dict[str, Any]] = {}
    for spec in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            options.update(entry.get("options", {}))
    return options


@cache
def playbook_options() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((ROOT / "playbooks" / "vars" / "argument_specs.yml").read_text())["argument_specs"]


def survey_questions() -> list[tuple[str, dict[str, Any]]]:
    return [
        (t["playbook"], q)
        for t in load("job_templates.yml")["awx_job_templates"]
        for q in t.get("survey", {}).get("spec", [])
    ]


@pytest.mark.parametrize(
    ("playbook", "question"), survey_questions(), ids=lambda v: v if isinstance(v, str) else v["variable"]
)
def test_survey_variables_are_inputs_of_the_roles_or_the_playbook(playbook, question):
    own = playbook_options().get(Path(playbook).stem, {}).get("options", {})
    spec = own.get(question["variable"]) or role_options().get(question["variable"])
    assert spec, f"{question['variable']} (survey of {playbook}) is no input of {playbook} nor of any role"
    kind = spec.get("type", "str")
    assert kind in SURVEY_TYPES[question["type"]], (
        f"{question['variable']}: survey type {question['type']} for a {kind}"
    )
    if question["type"] == "multiplechoice":
        allowed = {"true", "false"} if kind == "bool" else set(map(str, spec.get("choices", question["choices"])))
        assert set(question["choices"]) <= allowed, f"{question['variable']}: {question['choices']} beyond {allowed}"
    if "choices" in spec and question["type"] != "multiplechoice":
        pytest.fail(f"{question['variable']} has choices {spec['choices']}: ask it as multiplechoice")
    # A default would override the inventory's value whenever the question is not answered (AWX applies it).
    assert "default" not in question or question["required"], (
        f"{question['variable']}: a default on an optional question"
    )


def test_survey_integer_bounds_are_what_the_roles_accept():
    questions = {q["variable"]: q for _, q in survey_questions()}
    assert questions["mlflow_k8s_replicas"]["min"] >= 1
    assert questions["mlflow_verify_retries"]["min"] >= 1


@cache
def module_options() -> dict[str, set[str]]:
    """awx.awx's modules' options, as ansible-doc reads them from the installed collection."""
    tasks = yaml.safe_load((ROOT / "playbooks" / "configure_awx.yml").read_text())[0]["tasks"]
    modules = sorted({key for task in _flatten(tasks) for key in task if key.startswith("awx.awx.")})
    proc = subprocess.run([str(BIN / "ansible-doc"), "--json", *modules], cwd=ROOT, env=ansible_env(),
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    docs = json.loads(proc.stdout)
    options = {}
    for name, doc in docs.items():
        opts = doc["doc"]["options"]
        options[name] = set(opts) | {alias for o in opts.values() for alias in o.get("aliases", [])}
    return options


def _flatten(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for task in tasks:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out += _flatten(task.get(key, []))
    return out


def test_configure_awx_passes_only_options_its_modules_have():
    tasks = _flatten(yaml.safe_load((ROOT / "playbooks" / "configure_awx.yml").read_text())[0]["tasks"])
    options = module_options()
    used = 0
    for task in tasks:
        for key, args in task.items():
            if key.startswith("awx.awx."):
                unknown = set(args) - options[key] - {"controller_host", "controller_oauthtoken"}
                assert not unknown, f"{task['name']}: {key} has no option {sorted(unknown)}"
                used += 1
    assert used >= 12


def test_every_vault_variable_of_an_environment_is_injected_by_its_credentials():
    types = {t["name"]: t for t in load("credential_types.yml")["awx_credential_types"]}
    for env, spec in load("environments.yml")["awx_environments"].items():
        group_vars = (ROOT / "inventories" / env / "group_vars" / "all" / "main.yml").read_text()
        needed = set(re.findall(r"\bvault_[a-z_]+", group_vars))
        injected = {var for cred in spec["credentials"] if cred["credential_type"] in types
                    for var in types[cred["credential_type"]]["injectors"].get("extra_vars", {})}  # fmt: skip
        assert needed, env
        assert needed <= injected, f"{env}: {sorted(needed - injected)} come from no credential of the environment"
        example = yaml.safe_load((ROOT / "inventories" / env / "group_vars" / "all" / "vault.yml.example").read_text())
        assert needed <= set(example), f"{env}: vault.yml.example lacks {sorted(needed - set(example))}"


def test_credentials_declare_their_types_secret_fields():
    types = {t["name"]: t for t in load("credential_types.yml")["awx_credential_types"]}
    example = yaml.safe_load((AWX / "secrets.yml.example").read_text())["awx_credential_inputs"]
    for env, spec in load("environments.yml")["awx_environments"].items():
        for cred in spec["credentials"]:
            if cred["credential_type"] == KUBERNETES:
                secret = KUBERNETES_SECRETS
            else:
                assert cred["credential_type"] in types, f"{env}: {cred['name']} names an unknown type"
                fields = types[cred["credential_type"]]["inputs"]["fields"]
                secret = {f["id"] for f in fields if f.get("secret")}
                for field_id in types[cred["credential_type"]]["inputs"].get("required", []):
                    assert field_id in {f["id"] for f in fields}
            assert set(cred["secret_inputs"]) == secret, (
                f"{cred['name']}: secret inputs {cred['secret_inputs']} != {secret}"
            )
            if cred["secret_inputs"] and env == "production":
                assert "vault_path" in cred, f"{cred['name']}: no vault_path for awx_secret_source: hashicorp_vault"
                assert set(cred["secret_inputs"]) <= set(example.get(cred["name"], {})), (
                    f"{cred['name']} not in secrets.yml.example"
                )


def test_job_templates_run_playbooks_that_exist():
    for template in load("job_templates.yml")["awx_job_templates"]:
        assert (ROOT / template["playbook"]).is_file(), template["playbook"]
    names = {t["name"] for t in load("job_templates.yml")["awx_job_templates"]}
    assert names == {"MLflow site", "MLflow verify", "MLflow teardown", "MLflow preflight", "MLflow render"}
    for workflow in load("job_templates.yml")["awx_workflows"]:
        identifiers = {n["identifier"] for n in workflow["nodes"]}
        for node in workflow["nodes"]:
            assert node["job_template"] in names
            assert set(node.get("success_nodes", [])) <= identifiers
