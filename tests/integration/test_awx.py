"""AWX for real: configure_awx.yml builds every object in an AWX, whose jobs then run the way AWX runs them.

The AWX is tests/awx_double (AWX itself is on no registry here): its API answers the unmodified awx.awx modules as
AWX 24.6.1 does, and its jobs are real: the project synced with git from a `git daemon` on loopback inside the
execution environment built from execution-environment.yml, then each job's private data directory (project at
the job's revision, inventory script, extravars with survey answers and awx_* variables, one `-e @file` per
credential with extra_vars injectors, file and env injectors) handed to `ansible-runner transmit | worker |
process` with podman in that image, against the sandbox. The sandbox's AWX environment is defined the way an
administrator would (an inventory with variables, credentials of the collection's own types, a Kubernetes API token
of a service account) and added to awx/environments.yml's production and staging.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.ansible import BIN, ROOT, ansible_env
from harness.kube import api, delete_namespace, kubectl, writes_since
from harness.stores import drop_stores, s3_client
from sandbox.ee import build_ee, execution_node_podman
from tests.awx_double import AwxDouble

pytestmark = pytest.mark.integration
NS, DB, BUCKET, SA = "mlflow-awx", "mlflow_awx", "mlflow-awx", "mlflow-deployer"
# Who the jobs are to the API server (the deployer's token): the audit log shows what they wrote.
DEPLOYER = f"system:serviceaccount:default:{SA}"
ENV = "sandbox"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sandbox(sandbox_facts):
    if "node" not in sandbox_facts["kubernetes"]:
        pytest.skip("the sandbox's Kubernetes node needs root and iproute2")
    return sandbox_facts


@pytest.fixture(scope="module")
def ee():
    built = build_ee(say=print)
    execution_node_podman()
    return built


@pytest.fixture(scope="module")
def project_url(tmp_path_factory) -> str:
    """This checkout's files (tracked, and new ones git does not ignore) as one commit of a repository served by
    `git daemon` on 127.0.0.1: the project AWX syncs."""
    base = tmp_path_factory.mktemp("git")
    repo = base / "carbon254.mlflow.git"
    work = base / "work"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True, timeout=60).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file() or source.is_symlink():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name, follow_symlinks=False)
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "init.defaultBranch=main"]
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "the checkout under test"]):
        subprocess.run([*git, *argv], cwd=work, check=True, timeout=120)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True, timeout=120)
    port = _free_port()
    daemon = subprocess.Popen(["git", "daemon", "--export-all", f"--base-path={base}", "--listen=127.0.0.1",
                               f"--port={port}", "--reuseaddr", str(base)], stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while subprocess.run(["git", "ls-remote", f"git://127.0.0.1:{port}/{repo.name}"], capture_output=True,
                         timeout=10, check=False).returncode != 0:  # fmt: skip
        assert time.monotonic() < deadline, "git daemon did not answer"
        time.sleep(0.2)
    yield f"git://127.0.0.1:{port}/{repo.name}"
    daemon.terminate()
    daemon.wait(10)


@pytest.fixture(scope="module")
def deployer_token(sandbox) -> str:
    """A Kubernetes API token of a service account, as an administrator gives AWX (its bearer token credential)."""
    manifest = {"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA, "namespace": "default"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": f"{SA}-awx-test"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": "default"}]}]}  # fmt: skip
    path = Path(sandbox["state_dir"]) / "awx-deployer.json"
    path.write_text(json.dumps(manifest))
    assert kubectl(sandbox, "apply", "-f", str(path)).returncode == 0
    token = kubectl(sandbox, "create", "token", SA, "-n", "default", "--duration=2h")
    assert token.returncode == 0, token.stderr
    yield token.stdout.strip()
    kubectl(sandbox, "delete", "-f", str(path), "--ignore-not-found")


@pytest.fixture(scope="module")
def secrets_in_play(sandbox, deployer_token) -> dict[str, str]:
    """Every secret the sandbox environment's credentials carry: none may show up in a job's events."""
    return {
        "postgres admin password": sandbox["postgres"]["admin_password"],
        "mlflow db password": "db-" + secrets.token_urlsafe(18),
        "s3 secret key": sandbox["s3"]["secret_key"],
        "mlflow admin password": "adm-" + secrets.token_urlsafe(18),
        "flask secret key": secrets.token_hex(24),
        "kubernetes token": deployer_token,
    }


def sandbox_environment(facts: dict, verify_url: str) -> dict[str, Any]:
    """The sandbox as an AWX administrator would describe it: an inventory whose variables name the services (the
    secrets come from the credentials' injectors, as in inventories/production), and the credentials."""
    node = facts["kubernetes"]["node"]
    host_header = f"mlflow.{NS}.svc.cluster.local:5000"
    variables = {
        "mlflow_environment": "sandbox", "mlflow_namespace": NS, "mlflow_kubeconfig": "",
        "mlflow_postgres_host": facts["postgres"]["host"], "mlflow_postgres_port": facts["postgres"]["port"],
        "mlflow_postgres_cluster_host": node["postgres_host"], "mlflow_postgres_cluster_port": node["postgres_port"],
        "postgres_init_login_user": facts["postgres"]["admin_user"],
        "postgres_init_login_password": "{{ vault_postgres_admin_password }}",
        "postgres_init_ssl_mode": "verify-full", "postgres_init_ca_cert": "{{ mlflow_ca_bundle }}",
        "mlflow_postgres_sslmode": "verify-full",
        "mlflow_postgres_ca_bundle_pem": "{{ lookup('ansible.builtin.file', mlflow_ca_bundle) }}",
        "mlflow_db_name": DB, "mlflow_db_user": DB, "mlflow_db_password": "{{ vault_mlflow_db_password }}",
        "mlflow_s3_endpoint_url": facts["s3"]["endpoint_url"], "mlflow_s3_cluster_endpoint_url": node["s3_endpoint_url"],
        "mlflow_s3_access_key": "{{ vault_minio_access_key }}", "mlflow_s3_secret_key": "{{ vault_minio_secret_key }}",
        "mlflow_s3_region": facts["s3"]["region"], "mlflow_artifacts_bucket": BUCKET,
        "mlflow_auth_enabled": True, "mlflow_auth_admin_password": "{{ vault_mlflow_admin_password }}",
        "mlflow_flask_secret_key": "{{ vault_mlflow_flask_secret_key }}",
        "mlflow_k8s_replicas": 2, "mlflow_k8s_workers": 1, "mlflow_k8s_cpu_request": "100m", "mlflow_k8s_cpu_limit": "1",
        "mlflow_k8s_memory_request": "512Mi", "mlflow_k8s_memory_limit": "1Gi",
        "mlflow_k8s_network_policy_enabled": True, "mlflow_k8s_network_policy_egress_cidrs": [f"{node['gateway']}/32"],
        "mlflow_k8s_ingress_enabled": False,
        "mlflow_k8s_allowed_hosts": [f"mlflow.{NS}.svc.cluster.local:5000", f"mlflow.{NS}.svc:5000", f"mlflow.{NS}:5000",
                                     "mlflow:5000", "127.0.0.1:*"],
        "cloudflare_dns_enabled": False,
        "mlflow_verify_url": verify_url, "mlflow_verify_host_header": host_header,
    }  # fmt: skip
    return {
        "inventory": {"name": "MLflow sandbox", "variables": variables,
                      "hosts": [{"name": "localhost", "variables": {"ansible_connection": "local",
                                                                    "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}]},
        "credentials": [
            {"name": "MLflow sandbox PostgreSQL", "credential_type": "carbon254 MLflow PostgreSQL",
             "secret_inputs": ["admin_password", "mlflow_db_password"]},
            {"name": "MLflow sandbox MinIO", "credential_type": "carbon254 MLflow MinIO", "secret_inputs": ["secret_key"]},
            {"name": "MLflow sandbox server", "credential_type": "carbon254 MLflow server",
             "secret_inputs": ["admin_password", "flask_secret_key"]},
            {"name": "carbon254 CA bundle", "credential_type": "carbon254 CA bundle", "secret_inputs": []},
            {"name": "MLflow sandbox cluster", "credential_type": "OpenShift or Kubernetes API Bearer Token",
             "inputs": {"host": facts["kubernetes"]["url"], "verify_ssl": True},
             "secret_inputs": ["bearer_token", "ssl_ca_cert"]},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def awx(sandbox, ee, project_url, secrets_in_play, tmp_path_factory):
    """The AWX double with configure_awx.yml's objects; the sandbox environment's stores removed afterwards."""
    workdir = tmp_path_factory.mktemp("awx")
    verify_url = subprocess.run([str(BIN / "python"), "-m", "sandbox", "service-url", "--lazy", "--port", "5000", NS, "mlflow"],
                                cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
                                env={**ansible_env(), "SANDBOX_STATE_DIR": sandbox["state_dir"]}).stdout.strip()  # fmt: skip
    facts = sandbox
    environments = yaml.safe_load((ROOT / "awx" / "environments.yml").read_text())["awx_environments"]
    environments[ENV] = sandbox_environment(facts, verify_url)
    inputs = {
        "MLflow sandbox PostgreSQL": {"admin_password": secrets_in_play["postgres admin password"],
                                      "mlflow_db_password": secrets_in_play["mlflow db password"]},
        "MLflow sandbox MinIO": {"access_key": facts["s3"]["access_key"], "secret_key": secrets_in_play["s3 secret key"]},
        "MLflow sandbox server": {"admin_password": secrets_in_play["mlflow admin password"],
                                  "flask_secret_key": secrets_in_play["flask secret key"]},
        "carbon254 CA bundle": {"ca_pem": Path(facts["postgres"]["ca_file"]).read_text()},
        "MLflow sandbox cluster": {"bearer_token": secrets_in_play["kubernetes token"],
                                   "ssl_ca_cert": Path(facts["kubernetes"]["ca_file"]).read_text()},
    }  # fmt: skip
    project = yaml.safe_load((ROOT / "awx" / "organization.yml").read_text())["awx_project"]
    extra = {"awx_environments": environments, "awx_credential_inputs": inputs,
             "awx_project": {**project, "scm_url": project_url, "update_timeout": 300}}  # fmt: skip
    with AwxDouble(workdir, mode=instance_group) as double:
        double.extra = extra
        yield double
    delete_namespace(facts, NS)
    drop_stores(facts, BUCKET, [DB, f"{DB}_auth"], DB)


def instance_group(template: Any) -> str:
    """Where AWX runs a template's jobs: verify in a container group (ansible-runner worker inside the execution
    environment, as AWX on Kubernetes does), the others on an execution node (worker on the host, podman)."""
    return "container_group" if template.values["name"].startswith("MLflow verify") else "execution_node"


class Unsafe(str):
    """A string Ansible must pass on untemplated (YAML `!unsafe`): the job evaluates it, not configure_awx.yml."""


yaml.SafeDumper.add_representer(Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))


def _unsafe(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _unsafe(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_unsafe(v) for v in tree]
    return Unsafe(tree) if isinstance(tree, str) and "{{" in tree else tree


def configure(
    awx: AwxDouble, tmp_path: Path, extra: dict | None = None, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """ansible-playbook playbooks/configure_awx.yml as an administrator runs it, with CONTROLLER_* set; inventory
    variables that are Jinja for the job are tagged !unsafe, as awx/environments.yml says."""
    extra_file = tmp_path / "awx-extra.yml"
    extra_file.write_text(yaml.safe_dump(_unsafe(extra or awx.extra), sort_keys=False))
    return subprocess.run([str(BIN / "ansible-playbook"), str(ROOT / "playbooks" / "configure_awx.yml"), "-e", f"@{extra_file}", *args],
                          cwd=ROOT, env=ansible_env(**awx.controller_env()), capture_output=True, text=True,
                          timeout=1200, check=False)  # fmt: skip


def recap(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("localhost") and "changed=" in line)
    return {k: int(v) for k, v in (pair.split("=") for pair in line.split(":", 1)[1].split())}


def launch(awx: AwxDouble, template: str, extra_vars: dict | None = None, timeout: float = 900) -> Any:
    """POST .../launch/ as the UI does, then wait for the job."""
    record = awx.one(
        "job_templates" if not template.startswith("MLflow deploy") else "workflow_job_templates", name=template
    )
    endpoint = "job_templates" if record.endpoint == "job_templates" else "workflow_job_templates"
    status, body = awx.call("POST", f"/api/v2/{endpoint}/{record.id}/launch/", {"extra_vars": extra_vars or {}})
    assert status == 201, body
    job_endpoint = "jobs" if endpoint == "job_templates" else "workflow_jobs"
    return awx.wait(job_endpoint, body["id"], timeout)


def stats(job: Any) -> dict[str, Any]:
    [event] = [e for e in job.extra["events"] if e.get("event") == "playbook_on_stats"]
    return event["event_data"]


def event_files(job: Any) -> list[Path]:
    return sorted((Path(job.extra["private_data_dir"]) / "artifacts" / str(job.id) / "job_events").glob("*.json"))


def explain(job: Any) -> str:
    return f"{job.values['status']}: {job.values['job_explanation']}\n{job.extra['stdout'][-6000:]}"


JOBS: list[Any] = []


def test_configure_awx_creates_every_object_then_changes_nothing(awx, tmp_path):
    first = configure(awx, tmp_path)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    store = awx.store
    assert store.find("organizations", name="carbon254")
    [ee_record] = store.find("execution_environments", name="carbon254 MLflow EE")
    assert ee_record.values["image"] == "ghcr.io/carbon254/mlflow-ee:0.1.0"
    [project] = store.find("projects", name="carbon254.mlflow")
    assert project.values["status"] == "successful" and len(project.values["scm_revision"]) == 40
    assert {"playbooks/site.yml", "playbooks/verify.yml", "playbooks/teardown.yml"} <= set(
        project.extra["playbook_files"]
    )
    # The project's collections/requirements.yml put this very checkout in the job's collections path.
    cache = awx.tasks.cache(project) / project.extra["cache_id"] / "requirements_collections"
    assert (cache / "ansible_collections" / "carbon254" / "mlflow" / "MANIFEST.json").is_file()
    templates = {r.values["name"] for r in store.records["job_templates"].values()}
    for env in ("production", "staging", ENV):
        for name in ("MLflow site", "MLflow verify", "MLflow teardown", "MLflow preflight", "MLflow render"):
            assert f"{name} ({env})" in templates
        [workflow] = store.find("workflow_job_templates", name=f"MLflow deploy and verify ({env})")
        nodes = store.find("workflow_job_template_nodes", workflow_job_template=workflow.id)
        deploy = next(n for n in nodes if n.values["identifier"] == "deploy")
        assert [
            store.get("workflow_job_template_nodes", i).values["identifier"] for i in deploy.extra["success_nodes"]
        ] == ["verify"]
    site = awx.one("job_templates", name=f"MLflow site ({ENV})")
    assert {store.get("credentials", c).values["name"] for c in site.extra["credentials"]} == {
        "MLflow sandbox PostgreSQL", "MLflow sandbox MinIO", "MLflow sandbox server", "carbon254 CA bundle",
        "MLflow sandbox cluster"}  # fmt: skip
    assert site.extra["survey_spec"]["spec"][0]["variable"] == "mlflow_k8s_replicas"
    # Production's secrets were not given: their credentials exist without them, and the run says so.
    assert "No secrets given for MLflow production PostgreSQL" in first.stdout

    writes = len(store.writes)
    second = configure(awx, tmp_path)
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-6000:]
    assert store.writes[writes:] == []

    writes = len(store.writes)
    check = configure(awx, tmp_path, args=("--check", "--diff"))
    assert check.returncode == 0, check.stdout[-4000:]
    assert recap(check.stdout)["changed"] == 0 and store.writes[writes:] == [], check.stdout[-4000:]


def test_configure_awx_refuses_bad_inputs_before_writing(awx, tmp_path):
    writes = len(awx.store.writes)
    bad = {
        **awx.extra,
        "awx_secret_source": "vault",
        "awx_credential_inputs": {**awx.extra["awx_credential_inputs"], "MLflow qa MinIO": {}},
    }
    result = configure(awx, tmp_path, bad)
    assert result.returncode != 0
    assert 'awx_secret_source must be awx or hashicorp_vault, got "vault"' in result.stdout
    assert "awx_credential_inputs names MLflow qa MinIO, which no environment has" in result.stdout
    assert awx.store.writes[writes:] == []


def test_the_production_and_staging_inventories_import_from_the_project(awx):
    for env, namespace in (("production", "data-platform"), ("staging", "data-platform-staging")):
        source = awx.one("inventory_sources", name=f"MLflow {env} (project)")
        status, body = awx.call("POST", f"/api/v2/inventory_sources/{source.id}/update/")
        assert status == 202, body
        update = awx.wait("inventory_updates", body["id"], 300)
        assert update.values["status"] == "successful", explain(update)
        inventory = awx.one("inventories", name=f"MLflow {env}")
        data = awx.tasks.script_data(inventory)
        assert data["all"]["vars"]["mlflow_namespace"] == namespace
        assert "localhost" in data["_meta"]["hostvars"]


def test_a_job_refuses_to_start_while_its_credentials_lack_secrets(awx):
    job = launch(awx, "MLflow preflight (production)", timeout=120)
    assert job.values["status"] == "failed"
    assert ("Credential MLflow production PostgreSQL does not provide one or more required fields "
            "(admin_password, mlflow_db_password)") in job.values["job_explanation"]  # fmt: skip


def test_bad_survey_answers_are_refused(awx, sandbox):
    template = awx.one("job_templates", name=f"MLflow site ({ENV})")
    status, body = awx.call(
        "POST", f"/api/v2/job_templates/{template.id}/launch/", {"extra_vars": {"mlflow_k8s_replicas": "two"}}
    )
    assert status == 400
    assert body == {"variables_needed_to_start": ["Value two for 'mlflow_k8s_replicas' expected to be an integer."]}

    started = time.time()
    job = launch(awx, f"MLflow site ({ENV})", {"mlflow_k8s_version": "latest"})
    JOBS.append(job)
    assert job.values["status"] == "failed"
    assert 'mlflow_k8s_version "latest" is not an MLflow release' in job.extra["stdout"], explain(job)
    assert stats(job)["changed"] == {}
    assert writes_since(sandbox, started, user=DEPLOYER) == []


def test_deploy_and_verify_through_the_workflow(awx, sandbox):
    started = time.time()
    workflow = launch(awx, f"MLflow deploy and verify ({ENV})", timeout=1500)
    jobs = [awx.store.get("jobs", i) for i in workflow.extra.get("jobs", [])]
    JOBS.extend(jobs)
    assert [j.values["name"] for j in jobs] == [f"MLflow site ({ENV})", f"MLflow verify ({ENV})"]
    for job in jobs:
        assert job.values["status"] == "successful", explain(job)
        assert stats(job)["failures"] == {} and stats(job)["dark"] == {}
        assert event_files(job), "the controller keeps the job's events under artifacts/<id>/job_events"
    assert workflow.values["status"] == "successful"
    site, verify = jobs
    assert stats(site)["changed"].get("localhost", 0) > 0
    extravars = (Path(site.extra["private_data_dir"]) / "env" / "extravars").read_text()
    assert "!unsafe 'awx_job_template_name': !unsafe 'MLflow site (sandbox)'" in extravars
    assert "is healthy" in verify.extra["stdout"], explain(verify)
    deployment = api(sandbox, f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow")
    assert deployment["status"].get("readyReplicas") == 2
    # The jobs reached the cluster as the deployer (its token from the credential), and the audit log saw them:
    # so its silence in the refusal above means something.
    assert f"POST /apis/apps/v1/namespaces/{NS}/deployments" in writes_since(sandbox, started, user=DEPLOYER)


def test_render_writes_the_manifests_into_the_jobs_artifacts(awx):
    job = launch(awx, f"MLflow render ({ENV})")
    JOBS.append(job)
    assert job.values["status"] == "successful", explain(job)
    # Written in the execution environment, sent back with the job's artifacts by ansible-runner's worker.
    rendered = Path(job.extra["private_data_dir"]) / "artifacts" / str(job.id) / "rendered"
    manifests = sorted(p.name for p in (rendered / "mlflow_k8s").glob("*.yaml"))
    assert any("deployment-mlflow" in name for name in manifests), manifests
    assert (rendered / "integrations").is_dir()


def test_site_again_through_awx_changes_nothing(awx):
    job = launch(awx, f"MLflow site ({ENV})")
    JOBS.append(job)
    assert job.values["status"] == "successful", explain(job)
    assert stats(job)["changed"] == {}, explain(job)


def test_teardown_with_its_survey_removes_everything(awx, sandbox):
    job = launch(
        awx, f"MLflow teardown ({ENV})", {"mlflow_teardown_delete_data": "true", "mlflow_k8s_delete_namespace": "false"}
    )
    JOBS.append(job)
    assert job.values["status"] == "successful", explain(job)
    with pytest.raises(urllib.error.HTTPError, match="Not Found"):
        api(sandbox, f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow")
    with pytest.raises(s3_client(sandbox).exceptions.ClientError):
        s3_client(sandbox).head_bucket(Bucket=BUCKET)


def test_no_secret_appears_in_any_job_event(awx, secrets_in_play):
    assert JOBS, "the jobs above ran"
    for job in JOBS:
        texts = [path.read_text() for path in event_files(job)] + [json.dumps(job.extra["events"]), job.extra["stdout"]]
        for label, value in secrets_in_play.items():
            hits = [t for t in texts if value in t]
            assert not hits, f"the {label} appears in job {job.id} ({job.values['name']})"


def test_a_project_that_cannot_be_synced_fails_clearly_in_time(awx, tmp_path, project_url):
    broken = {**awx.extra, "awx_project": {**awx.extra["awx_project"], "name": "carbon254.mlflow broken",
                                           "scm_url": project_url.replace(".git", "-missing.git"), "update_timeout": 120}}  # fmt: skip
    started = time.monotonic()
    result = configure(awx, tmp_path, broken)
    assert result.returncode != 0
    assert time.monotonic() - started < 600
    assert "The update of project carbon254.mlflow broken" in result.stdout, result.stdout[-4000:]
    assert "did not succeed" in result.stdout
