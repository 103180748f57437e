"""Static checks of every role: argument specs and defaults describe the same inputs, the STYLE rules hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


def load(path: Path):
    return yaml.safe_load(path.read_text())


def test_there_are_roles():
    assert {"postgres_init", "minio_bucket"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_keys_equal_defaults_keys(role):
    defaults = set(load(ROOT / "roles" / role / "defaults" / "main.yml") or {})
    options = set(load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"])
    assert options - defaults == set(), "documented in argument_specs but missing from defaults/main.yml"
    assert defaults - options == set(), "in defaults/main.yml but not documented in argument_specs"


@pytest.mark.parametrize("role", ROLES)
def test_second_entry_points_have_their_own_argument_specs(role):
    """Every tasks file another playbook includes (tasks_from) is an entry point of the argument specs, with the
    role's inputs: Ansible validates them before the first task, as for `main` (prometheus' _common role does so)."""
    specs = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]
    playbooks = "\n".join(path.read_text() for path in (ROOT / "playbooks").glob("*.yml"))
    included = {"preflight"} | set(re.findall(rf"name: carbon254\.mlflow\.{role}\n\s*tasks_from: (\w+)", playbooks))
    assert set(specs) == {"main"} | included
    for entry in included:
        assert specs[entry]["options"] == specs["main"]["options"], entry
        assert specs[entry]["short_description"], entry
    for path in (ROOT / "playbooks").glob("*.yml"):
        text = path.read_text()
        assert (
            "validate_argument_spec" not in text
            or "playbooks/vars/argument_specs.yml" in text
            or "vars/argument_specs.yml" in text
        ), path


@pytest.mark.parametrize("role", ROLES)
def test_every_option_is_typed_described_and_prefixed(role):
    options = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, spec in options.items():
        assert name.startswith(f"{role}_"), name
        assert spec.get("type"), f"{name} has no type"
        assert spec.get("description"), f"{name} has no description"


@pytest.mark.parametrize("role", ROLES)
def test_secrets_are_no_log(role):
    options = load(ROOT / "roles" / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    secret_words = ("password", "secret", "token")
    for name, spec in options.items():
        # `..._secret_name` names a Kubernetes Secret; it is not a secret value.
        if any(word in name for word in secret_words) and spec["type"] == "str" and not name.endswith("_name"):
            assert spec.get("no_log") is True, f"{name} must be no_log"


@pytest.mark.parametrize("role", ROLES)
def test_a_no_log_that_reads_the_loop_item_also_holds_when_the_task_is_skipped(role):
    """Ansible evaluates `no_log` without the loop's `item` when it skips a task before its loop (a block's `when`
    false): `item.kind == 'Secret'` alone then warns "Invalid no_log value for task" (seen in every teardown)."""
    for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
        for line in path.read_text().splitlines():
            if line.strip().startswith("no_log:") and re.search(r"\bitem\b", line):
                assert "item is undefined or" in line, f"{path.name}: {line.strip()}"


@pytest.mark.parametrize("role", ROLES)
def test_main_only_includes(role):
    tasks = load(ROOT / "roles" / role / "tasks" / "main.yml")
    for task in tasks:
        modules = set(task) & {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks"}
        assert modules, f"{role}/tasks/main.yml does more than include: {task.get('name')}"


@pytest.mark.parametrize("role", ROLES)
def test_internal_vars_are_double_underscored(role):
    internal = load(ROOT / "roles" / role / "vars" / "main.yml") or {}
    assert all(name.startswith(f"__{role}_") for name in internal), list(internal)


def test_the_server_pod_selector_is_key_value_pairs_of_the_selector_labels(tmp_path):
    """The pods-gone and rollout waits list pods with __mlflow_k8s_selector, as Ansible renders it: a selector that
    matches nothing makes a wait pass at once (it once joined each label's dict2items keys, 'key=value' literally)."""
    import subprocess  # noqa: PLC0415

    play = [{"hosts": "localhost", "gather_facts": False, "vars": {"mlflow_k8s_name": "tracking"}, "tasks": [
        {"ansible.builtin.include_vars": str(ROOT / "roles" / "mlflow_k8s" / "vars" / "main.yml")},
        {"ansible.builtin.assert": {"that": ["__mlflow_k8s_selector == expected"]}, "vars": {"expected": [
            "app.kubernetes.io/name=mlflow", "app.kubernetes.io/instance=tracking",
            "app.kubernetes.io/component=tracking-server"]}},
    ]}]  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
