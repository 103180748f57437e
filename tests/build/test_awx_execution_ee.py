"""The AWX double's job execution for real: jobs, a project update and an inventory update run in the execution
environment built from execution-environment.yml, on an execution node and in a container group."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sandbox.ee import build_ee
from tests.awx_double import execution as ex
from tests.unit.test_awx_execution import CUSTOM, IMAGE, INVENTORY, make_spec


@pytest.fixture(scope="module", autouse=True)
def image() -> str:
    return build_ee().image


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=True).stdout.strip()  # fmt: skip


@pytest.mark.parametrize("where", ["execution_node", "container_group"])
def test_job_runs_in_the_execution_environment(tmp_path, where):
    project = tmp_path / "project"
    (project / "playbooks").mkdir(parents=True)
    (project / "playbooks" / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug: {msg: \"{{ greeting }} {{ cred_user }} {{ lookup('env', 'MY_TOKEN') }} "
        "{{ lookup('file', lookup('env', 'MY_CONF')) }}\"}\n"
        "    - ansible.builtin.command: ansible-galaxy collection list carbon254.mlflow\n"
        "      register: listed\n    - ansible.builtin.assert: {that: \"'carbon254.mlflow' in listed.stdout\"}\n")  # fmt: skip
    git(project, "init", "-q")
    seen = []
    spec = make_spec(tmp_path, project_checkout=project, credentials=[CUSTOM], mode=where,
                     inventory={"all": INVENTORY["all"], "_meta": {"hostvars": {}}})  # fmt: skip
    result = ex.run_job(spec, tmp_path / "runs", on_event=seen.append)
    assert result.status == "successful", result.stdout + result.result_traceback
    assert result.rc == 0 and seen == result.events and result.events[-1]["event"] == "playbook_on_stats"
    assert "hi {{ x }} bob s3cret user=bob flag=False undefined=[]" in result.stdout
    assert len(list((result.private_data_dir / "artifacts" / "42" / "job_events").glob("*.json"))) == len(result.events)
    assert result.job_env["MY_TOKEN"] == "**********" and result.job_env["JOB_ID"] == "42"
    assert result.job_args[0] == ("podman" if where == "execution_node" else "ansible-playbook")
    assert not [p for p in (tmp_path / "runs" / "node").glob("awx_*")]  # the worker's --delete


def test_project_and_inventory_update_in_the_execution_environment(tmp_path):
    source = tmp_path / "source"
    (source / "collections").mkdir(parents=True)
    (source / "inventories").mkdir()
    (source / "galaxy.yml").write_text(
        "namespace: throwaway\nname: demo\nversion: 1.0.0\nreadme: README.md\nauthors: [t]\n"
    )
    (source / "README.md").write_text("demo\n")
    (source / "collections" / "requirements.yml").write_text("collections:\n  - name: .\n    type: dir\n")
    (source / "inventories" / "hosts.yml").write_text(
        "all:\n  vars: {site: demo}\n  children:\n    web:\n      hosts: {w1: {port: 80}}\n"
    )
    git(source, "init", "-q", "-b", "main")
    git(source, "add", "-A")
    git(source, "commit", "-qm", "init")
    checkout = tmp_path / "projects" / "_1__demo"
    stage = tmp_path / "projects" / ".__awx_cache" / "_1__demo" / "stage"
    result, revision = ex.run_project_update(7, f"file://{source}", "main", checkout, stage, IMAGE, tmp_path / "runs")
    assert result.status == "successful", result.stdout + result.result_traceback
    assert revision == git(source, "rev-parse", "HEAD") and (checkout / "inventories" / "hosts.yml").is_file()
    assert (
        stage / "requirements_collections" / "ansible_collections" / "throwaway" / "demo" / "MANIFEST.json"
    ).is_file()
    result, data = ex.run_inventory_update(8, checkout, "inventories/hosts.yml", IMAGE, tmp_path / "runs",
                                           stage / "requirements_collections")  # fmt: skip
    assert result.status == "successful", result.stdout + result.result_traceback
    assert data is not None and data["web"] == {"hosts": ["w1"]} and data["all"]["vars"] == {"site": "demo"}
    assert data["_meta"]["hostvars"]["w1"] == {"port": 80}
