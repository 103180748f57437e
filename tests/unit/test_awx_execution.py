"""The AWX double's job execution (tests/awx_double/execution.py) against AWX 24.6.1's behaviour
(docs/research/awx-job-execution.md): the private data dir, inventory script, extra vars YAML, credential injection,
command line, environment and the transmit stream, with no container run. The runs in the execution environment
are tests/build/test_awx_execution_ee.py."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import ansible_runner.interface
import yaml
from ansible_runner.utils.streaming import unstream_dir

from tests.awx_double import execution as ex

IMAGE = "ghcr.io/carbon254/mlflow-ee:0.1.0"
INVENTORY = {"all": {"hosts": ["localhost"], "vars": {"ansible_connection": "local"}},
             "_meta": {"hostvars": {"localhost": {"remote_tower_id": 7}}}}  # fmt: skip
CUSTOM = ex.Credential(
    name="custom", kind="cloud", namespace=None,
    fields=[{"id": "token", "type": "string", "secret": True}, {"id": "user", "type": "string"},
            {"id": "empty", "type": "string"}, {"id": "flag", "type": "boolean"}],
    injectors={"file": {"template": "user={{ user }} flag={{ flag }} undefined=[{{ empty }}]"},
               "env": {"MY_TOKEN": "{{ token }}", "MY_CONF": "{{ tower.filename }}", "ANSIBLE_X": "no", "JOB_ID": "no"},
               "extra_vars": {"cred_user": "{{ user }}", "cred_list": ["{{ token }}"]}},
    inputs={"token": "s3cret", "user": "bob", "empty": ""},
)  # fmt: skip
K8S_FIELDS = [
    {"id": "host", "type": "string"}, {"id": "bearer_token", "type": "string", "secret": True},
    {"id": "verify_ssl", "type": "boolean", "default": True},
    {"id": "ssl_ca_cert", "type": "string", "secret": True, "multiline": True},
]  # fmt: skip


def make_project(tmp_path: Path) -> Path:
    project = tmp_path / "checkout"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "playbooks").mkdir()
    (project / "playbooks" / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    return project


def make_spec(tmp_path: Path, **changes) -> ex.JobSpec:
    values = {
        "id": 42, "playbook": "playbooks/site.yml",
        "project_checkout": changes.pop("project_checkout", None) or make_project(tmp_path),
        "requirements_collections": None, "requirements_roles": None, "inventory": INVENTORY,
        "extra_vars": {"greeting": "hi {{ x }}", "jt_var": "{{ lookup('x') }}", "awx_job_id": 1},
        "template_extra_vars": {"jt_var": "{{ lookup('x') }}"}, "meta_vars": {"awx_job_id": 42, "tower_job_id": 42},
        "credentials": [], "image": IMAGE, "env": {"INVENTORY_ID": "3", "PROJECT_REVISION": "abc123"},
    }  # fmt: skip
    values.update(changes)
    return ex.JobSpec(**values)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_files(pdd: Path) -> list[Path]:
    return sorted(p for p in (pdd / "env").iterdir() if p.name.startswith("tmp"))


def test_private_data_dir_layout(tmp_path):
    collections = tmp_path / "cache" / "requirements_collections" / "ansible_collections"
    collections.mkdir(parents=True)
    spec = make_spec(tmp_path, requirements_collections=collections.parent, requirements_roles=tmp_path / "absent")
    pdd, env, args = ex.build_private_data_dir(spec, tmp_path / "runs")
    assert pdd.parent == tmp_path / "runs" and pdd.name.startswith("awx_42_") and mode(pdd) == 0o700
    assert sorted(p.name for p in pdd.iterdir()) == ["cp", "env", "inventory", "project", "requirements_collections"]
    assert (pdd / "project" / "playbooks" / "site.yml").is_file() and not (pdd / "project" / ".git").exists()
    assert (pdd / "requirements_collections" / "ansible_collections").is_dir()
    assert sorted(p.name for p in (pdd / "env").iterdir()) == ["cmdline", "extravars", "settings"]  # no envvars
    assert {name: mode(pdd / "env" / name) for name in ("cmdline", "extravars", "settings")} == dict.fromkeys(
        ("cmdline", "extravars", "settings"), 0o600)  # fmt: skip
    assert mode(pdd / "inventory" / "hosts") == 0o700 and mode(pdd / "cp") == 0o700
    assert json.loads((pdd / "env" / "settings").read_text()) == {
        "job_timeout": 0, "suppress_ansible_output": True, "suppress_output_file": True}  # fmt: skip
    assert (pdd / "env" / "cmdline").read_text() == "-u root" and args == ["-u", "root"]
    assert env["AWX_PRIVATE_DATA_DIR"] == str(pdd)


def test_inventory_script_prints_the_script_data(tmp_path):
    data = {"all": {"vars": {"quote": 'it\'s "x" \u00e9'}, "hosts": ["h1"]}, "_meta": {"hostvars": {}}}
    script = ex.inventory_script(data)
    assert script.startswith("#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint('")
    assert script.endswith(f"print({json.dumps(data)!r})\n")
    path = tmp_path / "hosts"
    path.write_text(script)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(out) == data


def test_extravars_yaml_marks_everything_unsafe_but_unchanged_template_vars():
    text = ex.extravars_yaml({"awx_job_id": 42, "awx_user_name": "admin", "my_list": ["a"], "jt_var": "{{ x }}",
                              "jt_changed": "b"}, {"jt_var": "{{ x }}", "jt_changed": "a"})  # fmt: skip
    assert text == ("!unsafe 'awx_job_id': 42\n!unsafe 'awx_user_name': !unsafe 'admin'\n!unsafe 'my_list':\n"
                    "- !unsafe 'a'\njt_var: '{{ x }}'\n!unsafe 'jt_changed': !unsafe 'b'\n")  # fmt: skip
    assert ex.extravars_yaml({}) == ""


def test_job_extravars_meta_vars_override_and_the_jinja_rule(tmp_path):
    pdd, _, _ = ex.build_private_data_dir(make_spec(tmp_path), tmp_path / "runs")
    text = (pdd / "env" / "extravars").read_text()
    assert "!unsafe 'greeting': !unsafe 'hi {{ x }}'\n" in text
    assert "jt_var: '{{ lookup(''x'') }}'\n" in text  # the JT's own value: no !unsafe
    assert "!unsafe 'awx_job_id': 42\n" in text and "!unsafe 'tower_job_id': 42\n" in text
    loaded = {}
    for doc in yaml.safe_load_all(text.replace("!unsafe ", "")):
        loaded.update(doc)
    assert list(loaded) == ["greeting", "jt_var", "awx_job_id", "tower_job_id"]


def test_custom_credential_file_env_and_extra_vars_injectors(tmp_path):
    spec = make_spec(tmp_path, credentials=[CUSTOM])
    prepared = ex._prepare_job(spec, ex._new_pdd(spec.id, tmp_path / "runs"))
    pdd, env = prepared.pdd, prepared.env
    conf, extra = env_files(pdd) if env_files(pdd)[0].read_text().startswith("user=") else env_files(pdd)[::-1]
    assert conf.read_text() == "user=bob flag=False undefined=[]" and mode(conf) == 0o600
    assert mode(extra) == 0o400
    assert yaml.safe_load(extra.read_text().replace("!unsafe ", "")) == {"cred_user": "bob", "cred_list": ["s3cret"]}
    assert "!unsafe 'cred_user': !unsafe 'bob'" in extra.read_text()
    assert env["MY_TOKEN"] == "s3cret" and env["MY_CONF"] == f"/runner/env/{conf.name}"
    assert "ANSIBLE_X" not in env and env["JOB_ID"] == "42"  # prohibited names are skipped
    assert prepared.args == ["-u", "root", "-e", f"@/runner/env/{extra.name}"]
    assert shlex.split((pdd / "env" / "cmdline").read_text()) == prepared.args
    assert prepared.safe["MY_TOKEN"] == "**********" and prepared.safe["MY_CONF"] == env["MY_CONF"]


def test_multi_file_injector_names_each_file(tmp_path):
    cred = ex.Credential("multi", "cloud", None, [{"id": "a", "type": "string"}],
                         {"file": {"template.one": "1{{ a }}", "template.two": "2{{ a }}"},
                          "env": {"ONE": "{{ tower.filename.one }}", "TWO": "{{ tower.filename.two }}"}}, {"a": "x"})  # fmt: skip
    spec = make_spec(tmp_path, credentials=[cred])
    pdd, env, args = ex.build_private_data_dir(spec, tmp_path / "runs")
    contents = {f"/runner/env/{p.name}": p.read_text() for p in env_files(pdd)}
    assert contents[env["ONE"]] == "1x" and contents[env["TWO"]] == "2x" and "-e" not in args


def test_kubernetes_bearer_token_builtin_injector(tmp_path):
    with_ca = ex.Credential("k8s", "kubernetes", "kubernetes_bearer_token", K8S_FIELDS, {},
                            {"host": "https://127.0.0.1:6443", "bearer_token": "tok", "ssl_ca_cert": "CA"})  # fmt: skip
    prepared = ex._prepare_job(make_spec(tmp_path, credentials=[with_ca]), ex._new_pdd(42, tmp_path / "runs"))
    [ca] = env_files(prepared.pdd)
    assert ca.read_text() == "CA" and mode(ca) == 0o600
    assert {k: v for k, v in prepared.env.items() if k.startswith("K8S_")} == {
        "K8S_AUTH_HOST": "https://127.0.0.1:6443", "K8S_AUTH_API_KEY": "tok", "K8S_AUTH_VERIFY_SSL": "True",
        "K8S_AUTH_SSL_CA_CERT": f"/runner/env/{ca.name}"}  # fmt: skip
    assert (
        prepared.safe["K8S_AUTH_API_KEY"] == "**********" and prepared.safe["K8S_AUTH_HOST"] == "https://127.0.0.1:6443"
    )
    no_verify = ex.Credential("k8s", "kubernetes", "kubernetes_bearer_token", K8S_FIELDS, {},
                              {"host": "h", "bearer_token": "t", "verify_ssl": False, "ssl_ca_cert": "CA"})  # fmt: skip
    no_ca = ex.Credential(
        "k8s", "kubernetes", "kubernetes_bearer_token", K8S_FIELDS, {}, {"host": "h", "bearer_token": "t"}
    )
    for cred in (no_verify, no_ca):
        pdd, env, _ = ex.build_private_data_dir(
            make_spec(tmp_path / cred.name / str(id(cred)), credentials=[cred]), tmp_path / "r"
        )
        assert env["K8S_AUTH_VERIFY_SSL"] == "False" and "K8S_AUTH_SSL_CA_CERT" not in env and not env_files(pdd)


def test_cmdline_from_the_job_and_its_machine_credential(tmp_path):
    machine = ex.Credential("m", "ssh", "ssh", [{"id": "username", "type": "string"}], {},
                            {"username": "deploy", "become_method": "sudo", "become_username": "app"})  # fmt: skip
    spec = make_spec(tmp_path, credentials=[machine], job_type="check", limit="web", job_tags="a,b", skip_tags="c",
                     verbosity=7, forks=500, diff_mode=True, become_enabled=True)  # fmt: skip
    _, _, args = ex.build_private_data_dir(spec, tmp_path / "runs")
    assert args == ["--check", "-u", "deploy", "--become", "--diff", "--become-method", "sudo", "--become-user", "app",
                    "--forks=200", "-l", "web", "-vvvvv", "-t", "a,b", "--skip-tags=c"]  # fmt: skip


def test_jinja_in_the_ssh_user_makes_the_job_error_before_running(tmp_path):
    machine = ex.Credential("m", "ssh", "ssh", [], {}, {"username": "{{ evil }}"})
    result = ex.run_job(make_spec(tmp_path, credentials=[machine]), tmp_path / "runs")
    assert result.status == "error" and "Inline Jinja variables are not allowed." in result.result_traceback
    assert result.events == [] and result.explanation == ""


def test_job_environment(tmp_path):
    project = make_project(tmp_path)
    (project / "ansible.cfg").write_text("[defaults]\ncollections_path = ./.cache/collections:~/.ansible/collections\n")
    spec = make_spec(
        tmp_path, project_checkout=project, env={"INVENTORY_ID": "3", "PROJECT_REVISION": "abc", "EXTRA": 1}
    )
    pdd, env, _ = ex.build_private_data_dir(spec, tmp_path / "runs")
    assert list(env)[:4] == ["ANSIBLE_BASE_ALLOW_CUSTOM_TEAM_ROLES", "ANSIBLE_BASE_ALLOW_SINGLETON_ROLES_API",
                             "ANSIBLE_BASE_ALLOW_SINGLETON_TEAM_ROLES", "ANSIBLE_BASE_ALLOW_SINGLETON_USER_ROLES"]  # fmt: skip
    expected = {
        "ANSIBLE_FORCE_COLOR": "True", "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False", "EXTRA": "1", "AWX_PRIVATE_DATA_DIR": str(pdd), "JOB_ID": "42",
        "INVENTORY_ID": "3", "PROJECT_REVISION": "abc", "ANSIBLE_RETRY_FILES_ENABLED": "False", "MAX_EVENT_RES": "700000",
        "AWX_HOST": "https://towerhost", "ANSIBLE_SSH_CONTROL_PATH_DIR": "/runner/cp",
        "ANSIBLE_COLLECTIONS_PATHS": "/runner/requirements_collections:~/.ansible/collections:/usr/share/ansible/collections",
        "ANSIBLE_ROLES_PATH": "/runner/requirements_roles:~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles",
        # the project's ansible.cfg value, prepended once per entry that is not a default (jobs.py:927-946)
        "ANSIBLE_COLLECTIONS_PATH": "/runner/requirements_collections:./.cache/collections:~/.ansible/collections:"
                                    "~/.ansible/collections:/usr/share/ansible/collections",
    }  # fmt: skip
    assert {k: v for k, v in env.items() if not k.startswith("ANSIBLE_BASE_")} == expected
    assert list(env)[-12:] == list(expected)[-12:]


def test_net_credential_environment_and_key_file(tmp_path):
    net = ex.Credential("n", "net", "net", [{"id": "password", "type": "string", "secret": True}], {},
                        {"username": "u", "password": "p", "ssh_key_data": "KEY", "authorize": True,
                         "authorize_password": "ap"})  # fmt: skip
    prepared = ex._prepare_job(make_spec(tmp_path, credentials=[net]), ex._new_pdd(42, tmp_path / "runs"))
    [key] = env_files(prepared.pdd)
    assert key.read_text() == "KEY" and mode(key) == 0o600
    assert {k: v for k, v in prepared.env.items() if k.startswith("ANSIBLE_NET")} == {
        "ANSIBLE_NET_USERNAME": "u", "ANSIBLE_NET_PASSWORD": "p", "ANSIBLE_NET_SSH_KEYFILE": str(key),
        "ANSIBLE_NET_AUTHORIZE": "1", "ANSIBLE_NET_AUTH_PASS": "ap"}  # fmt: skip
    assert prepared.safe["ANSIBLE_NET_PASSWORD"] == "**********" and prepared.safe["ANSIBLE_NET_USERNAME"] == "u"


def test_safe_env_masks_like_awx():
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "s", "ANSIBLE_GALAXY_TOKEN": "kept",
           "ANSIBLE_NET_PASSWORD": "p", "ANSIBLE_GALAXY_SERVER_X_TOKEN": "t", "my_api_url": "u", "Passphrase": "x",
           "DB_URL": "postgres://user:pw@db/x", "PLAIN": "v", "NUMBER": 3}  # fmt: skip
    assert ex.safe_env(env) == {
        "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "**********", "ANSIBLE_GALAXY_TOKEN": "kept",
        "ANSIBLE_NET_PASSWORD": "**********", "ANSIBLE_GALAXY_SERVER_X_TOKEN": "**********", "my_api_url": "**********",
        "Passphrase": "**********", "DB_URL": "**********", "PLAIN": "v", "NUMBER": 3}  # fmt: skip


def test_transmit_stream_carries_the_env_in_kwargs_and_the_pdd_as_a_zip(tmp_path):
    spec = make_spec(tmp_path, credentials=[CUSTOM])
    prepared = ex._prepare_job(spec, ex._new_pdd(spec.id, tmp_path / "runs"))
    with open(tmp_path / "stream", "wb") as out:  # runner's stream_dir wants a named file
        ansible_runner.interface.run(streamer="transmit", _output=out, cancel_callback=lambda: False,
                                     **ex._job_params(spec, prepared), **ex._ee_params(IMAGE, []))  # fmt: skip
    unpacked = tmp_path / "unpacked"
    with open(tmp_path / "stream", "rb") as stream:
        kwargs = json.loads(stream.readline())["kwargs"]
        unstream_dir(stream, json.loads(stream.readline())["zipfile"], str(unpacked))
        assert json.loads(stream.readline()) == {"eof": True}
    assert (
        kwargs["ident"] == 42
        and kwargs["playbook"] == "playbooks/site.yml"
        and kwargs["inventory"] == "inventory/hosts"
    )
    assert kwargs["envvars"]["MY_TOKEN"] == "s3cret" and kwargs["suppress_env_files"] is True
    assert kwargs["container_options"] == ["--user=root", "--network", "host"] and kwargs["process_isolation"] is True
    assert kwargs["process_isolation_executable"] == "podman" and kwargs["container_image"] == IMAGE
    assert kwargs["passwords"][r"Enter passphrase for .*:\s*?$"] == "" and kwargs["fact_cache_type"] == ""
    names = {str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file()}
    assert {"env/extravars", "env/cmdline", "env/settings", "inventory/hosts", "project/playbooks/site.yml"} <= names
    assert not {"env/envvars", "env/passwords"} & names  # suppress_env_files: the env travels in kwargs only
