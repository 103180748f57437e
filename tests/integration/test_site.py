"""playbooks/site.yml, render.yml and the inventories, through ansible-playbook.

The full deploy -> verify -> idempotence -> teardown cycle is the molecule `default` scenario; these tests cover
what it does not: the preflight's refusals (seed default passwords, TLS verification off, inputs that break the
roles' argument specs), secrets read from an ansible-vault file, tags and *_enabled flags, and the production
inventory rendered with its vault.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness.ansible import BIN, ROOT, SANDBOX_INVENTORY, PlayResult, ansible_env, play
from harness.kube import writes_since

pytestmark = pytest.mark.integration
SITE = ROOT / "playbooks" / "site.yml"
RENDER = ROOT / "playbooks" / "render.yml"
SEED_DB_PASSWORD = "mlflow-secure-password-change-me"


def executed_tasks(result: PlayResult) -> list[str]:
    """Names of the tasks that ran (not skipped) on localhost."""
    names = []
    for play_ in (result.report or {}).get("plays", []):
        for task in play_["tasks"]:
            outcome = task["hosts"].get("localhost", {})
            if outcome and not outcome.get("skipped"):
                names.append(task["task"]["name"])
    return names


@pytest.fixture
def sandbox(sandbox_facts):
    if "node" not in sandbox_facts["kubernetes"]:
        pytest.skip("the sandbox's Kubernetes node needs root and iproute2")
    return sandbox_facts


def test_preflight_refuses_the_seed_default_passwords_outside_the_sandbox(sandbox, tmp_path):
    extra = {"mlflow_environment": "staging", "mlflow_db_password": SEED_DB_PASSWORD, "mlflow_s3_access_key": "minioadmin",
             "mlflow_insecure_tls_acknowledged": True}  # fmt: skip
    result = play(SITE, extra=extra, tmp_path=tmp_path)
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "mlflow_db_password is a well-known default password" in message
    assert "mlflow_s3_access_key is a well-known default password" in message
    assert SEED_DB_PASSWORD not in message
    # Stopped before anything else ran: no role's preflight, no change.
    assert result.changed == 0
    assert executed_tasks(result) == ["Refuse settings that are only acceptable in the sandbox"]
    # cloudflare_dns (off by default) ends its play at once: none of its role's tasks is even evaluated (skipped).
    evaluated = [task["task"]["name"] for play_ in result.report["plays"] for task in play_["tasks"]]
    assert not [name for name in evaluated if "cloudflare_dns :" in name], evaluated

    # A short password of MLflow's own login is refused there too, by its length (never its value).
    short = {**extra, "mlflow_db_password": "abc123", "mlflow_s3_access_key": "an-access-key"}
    result = play(SITE, extra=short, tmp_path=tmp_path)
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "mlflow_db_password has 6 characters; outside the sandbox it needs at least 12" in message
    assert "abc123" not in message
    assert executed_tasks(result) == ["Refuse settings that are only acceptable in the sandbox"]
    # cloudflare_dns (off by default) ends its play at once: none of its role's tasks is even evaluated (skipped).
    evaluated = [task["task"]["name"] for play_ in result.report["plays"] for task in play_["tasks"]]
    assert not [name for name in evaluated if "cloudflare_dns :" in name], evaluated

    # The same password is accepted in the sandbox (the preflight then reaches every service).
    result = play(SITE, "--tags", "preflight", extra={"mlflow_db_password": SEED_DB_PASSWORD}, tmp_path=tmp_path)
    assert not result.failed, result.failure_messages() or result.output[-3000:]
    ran = executed_tasks(result)
    assert any(name.startswith("carbon254.mlflow.postgres_init : preflight | Reach PostgreSQL") for name in ran)
    assert any(name.startswith("carbon254.mlflow.mlflow_k8s : preflight | Reach the cluster") for name in ran)
    assert result.changed == 0


def test_preflight_refuses_tls_without_verification_unless_acknowledged(sandbox, tmp_path):
    extra = {"mlflow_environment": "staging", "mlflow_k8s_s3_ignore_tls": True, "mlflow_s3_validate_certs": False,
             "mlflow_postgres_sslmode": "require", "postgres_init_ssl_mode": "prefer"}  # fmt: skip
    result = play(SITE, "--tags", "preflight", extra=extra, tmp_path=tmp_path)
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "mlflow_k8s_s3_ignore_tls=true turns TLS verification off" in message
    assert "mlflow_s3_validate_certs=false turns TLS verification off" in message
    assert "mlflow_postgres_sslmode=require does not verify PostgreSQL's certificate" in message
    assert "postgres_init_ssl_mode=prefer does not verify PostgreSQL's certificate" in message
    # The sandbox's S3 endpoints are plain HTTP, which staging refuses too.
    assert "mlflow_s3_endpoint_url http://" in message

    # Accepted once acknowledged (sslmode=require with no CA: the role refuses a CA it would not use).
    acknowledged = {**extra, "mlflow_insecure_tls_acknowledged": True, "mlflow_postgres_ca_bundle_pem": ""}
    result = play(SITE, "--tags", "preflight", extra=acknowledged, tmp_path=tmp_path)
    assert not result.failed, result.failure_messages() or result.output[-3000:]


@pytest.mark.parametrize(
    ("variable", "value", "expected", "service"),
    [
        (
            "minio_bucket_state",
            "gone",
            "minio_bucket_state",
            "carbon254.mlflow.minio_bucket : preflight | Read the bucket",
        ),
        ("mlflow_k8s_replicas", "two", "mlflow_k8s_replicas", "carbon254.mlflow.mlflow_k8s : preflight | Reach"),
        (
            "postgres_init_ssl_mode",
            "maybe",
            "postgres_init_ssl_mode",
            "carbon254.mlflow.postgres_init : preflight | Reach",
        ),
        (
            "mlflow_client_presigned_transfers",
            "sometimes",
            "mlflow_client_presigned_transfers must be true or false",
            "carbon254.mlflow.postgres_init : preflight | Reach",
        ),
    ],
)
def test_preflight_validates_the_inputs_against_the_roles_argument_specs(  # noqa: PLR0917 - pytest parameters
    sandbox, tmp_path, variable, value, expected, service
):
    # Each role's `preflight` entry point is validated by Ansible before the role's first task: the role whose input
    # is wrong never reaches its service (the roles before it only read), and nothing is written.
    started = time.time()
    result = play(SITE, "--tags", "preflight", extra={variable: value}, tmp_path=tmp_path)
    assert result.failed
    errors = [message for message in result.failure_messages() if expected in message]
    assert errors, result.failure_messages()
    assert not any(name.startswith(service) for name in executed_tasks(result)), executed_tasks(result)
    assert result.changed == 0 and writes_since(sandbox, started) == []


def vault_inventory(tmp_path: Path, content: dict) -> tuple[Path, Path]:
    """An inventory whose group_vars/all/vault.yml is ansible-vault encrypted with a throwaway password file."""
    inventory = tmp_path / "vaulted"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("---\nall: {}\n")
    vault = inventory / "group_vars" / "all" / "vault.yml"
    vault.write_text("---\n" + yaml.safe_dump(content))
    password_file = tmp_path / "vault-password"
    password_file.write_text("throwaway-test-vault-password\n")
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file), str(vault)],
                   cwd=ROOT, env=ansible_env(), capture_output=True, text=True, check=True)  # fmt: skip
    assert vault.read_text().startswith("$ANSIBLE_VAULT;1.1;AES256")
    return inventory, password_file


def test_teardown_validates_its_inputs_before_removing_anything(sandbox, tmp_path):
    started = time.time()
    result = play(
        ROOT / "playbooks" / "teardown.yml", extra={"mlflow_teardown_delete_data": "maybe"}, tmp_path=tmp_path
    )
    assert result.failed
    assert any("mlflow_teardown_delete_data" in message for message in result.failure_messages()), result.output[-3000:]
    assert executed_tasks(result) == ["Validate the inputs before anything is removed"]
    assert writes_since(sandbox, started) == []


def test_secrets_come_from_an_ansible_vault_file(sandbox, tmp_path):
    inventory, password_file = vault_inventory(tmp_path, {"mlflow_db_password": SEED_DB_PASSWORD})
    extra = {"mlflow_environment": "staging", "mlflow_insecure_tls_acknowledged": True}
    inventories = (SANDBOX_INVENTORY, inventory)

    # Decrypted and checked: the vaulted value is the seed's default, which staging refuses.
    result = play(SITE, "--tags", "preflight", "--vault-password-file", str(password_file), inventories=inventories,
                  extra=extra, tmp_path=tmp_path)  # fmt: skip
    assert result.failed
    assert "mlflow_db_password is a well-known default password" in " ".join(result.failure_messages())

    # Without the vault password nothing runs.
    result = play(SITE, "--tags", "preflight", inventories=inventories, extra=extra, tmp_path=tmp_path)
    assert result.failed
    assert "vault" in result.output.lower()

    # A real password from the vault passes, and reaches the roles (postgres_init sees it).
    inventory, password_file = vault_inventory(tmp_path / "good", {"mlflow_db_password": "vaulted-Password-42"})
    result = play(SITE, "--tags", "preflight", "--vault-password-file", str(password_file),
                  inventories=(SANDBOX_INVENTORY, inventory), extra=extra, tmp_path=tmp_path)  # fmt: skip
    assert not result.failed, result.failure_messages() or result.output[-3000:]
    assert "vaulted-Password-42" not in result.output


def test_tags_and_enabled_flags_select_the_roles(sandbox, tmp_path):
    def list_tasks(*selection: str) -> str:
        """The task list for a tag selection, without the roles' argument-spec validations (tagged `always`)."""
        out = subprocess.run(
            [str(BIN / "ansible-playbook"), str(SITE), "-i", str(SANDBOX_INVENTORY), "--list-tasks", *selection],
            cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=300, check=True,
        ).stdout  # fmt: skip
        return "\n".join(line for line in out.splitlines() if "Validating arguments against arg spec" not in line)

    listed = list_tasks("--tags", "minio_bucket")
    assert "carbon254.mlflow.minio_bucket : apply | Create the bucket" in listed
    assert "Check the bucket inputs, reach S3 and check the credentials" in listed
    assert "postgres_init :" not in listed
    assert "mlflow_k8s :" not in listed
    assert "mlflow_health" not in listed and "Wait until /health" not in listed

    skipped = list_tasks("--skip-tags", "mlflow_k8s,mlflow_verify")
    assert "postgres_init : apply" in skipped and "mlflow_k8s :" not in skipped and "Wait until /health" not in skipped

    # Every role off: nothing runs but the sandbox guard.
    flags = {
        f"{name}_enabled": False
        for name in ("postgres_init", "minio_bucket", "mlflow_k8s", "monitoring", "cloudflare_dns", "mlflow_verify")
    }
    result = play(SITE, extra=flags, tmp_path=tmp_path)
    assert not result.failed, result.failure_messages() or result.output[-3000:]
    assert result.changed == 0
    assert executed_tasks(result) == ["Refuse settings that are only acceptable in the sandbox"]
    # cloudflare_dns (off by default) ends its play at once: none of its role's tasks is even evaluated (skipped).
    evaluated = [task["task"]["name"] for play_ in result.report["plays"] for task in play_["tasks"]]
    assert not [name for name in evaluated if "cloudflare_dns :" in name], evaluated


def test_production_inventory_renders_with_its_vault(tmp_path):
    """The seed's values and the production switches, rendered from a vault made from vault.yml.example."""
    production = tmp_path / "production"
    shutil.copytree(ROOT / "inventories" / "production", production)
    vars_dir = production / "group_vars" / "all"
    assert not (vars_dir / "vault.yml").exists()
    shutil.copy(vars_dir / "vault.yml.example", vars_dir / "vault.yml")
    password_file = tmp_path / "vault-password"
    password_file.write_text("throwaway\n")
    subprocess.run([str(BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password_file), str(vars_dir / "vault.yml")],
                   cwd=ROOT, env=ansible_env(), capture_output=True, text=True, check=True)  # fmt: skip
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    out = tmp_path / "out"
    extra = {"mlflow_render_dir": str(out), "mlflow_ca_bundle": str(ca)}
    args = ("--vault-password-file", str(password_file))
    result = play(RENDER, *args, inventories=(production,), extra=extra, tmp_path=tmp_path)
    assert not result.failed, result.failure_messages() or result.output[-3000:]

    manifests = {path.name: yaml.safe_load(path.read_text()) for path in (out / "mlflow_k8s").glob("*.yaml")}
    by_kind = {doc["kind"]: doc for doc in manifests.values()}
    assert {
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Deployment",
    } <= by_kind.keys()
    assert by_kind["Deployment"]["metadata"]["namespace"] == "data-platform"
    # The HPA owns the replica count (from 2 up to 5); the Deployment leaves it out.
    assert by_kind["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 2
    assert by_kind["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 5
    assert by_kind["Ingress"]["spec"]["rules"][0]["host"] == "mlflow.254carbon.com"
    config = next(
        doc
        for doc in manifests.values()
        if doc["kind"] == "ConfigMap" and "MLFLOW_S3_ENDPOINT_URL" in doc.get("data", {})
    )
    assert config["data"]["MLFLOW_S3_ENDPOINT_URL"] == "https://minio.minio.svc.cluster.local:9000"
    assert config["data"]["AWS_CA_BUNDLE"]
    assert "MLFLOW_S3_IGNORE_TLS" not in config["data"]
    assert "--app-name=basic-auth" in by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]

    integrations = out / "integrations"
    recipe = yaml.safe_load((integrations / "datahub-mlflow-recipe.yml").read_text())
    assert recipe["source"]["type"] == "mlflow"
    assert recipe["source"]["config"]["tracking_uri"] == "http://mlflow.data-platform.svc.cluster.local:5000"
    catalog = json.loads((integrations / "service-catalog.json").read_text())
    assert catalog["url"] == "https://mlflow.254carbon.com"
    assert catalog["tracking_uri"] == recipe["source"]["config"]["tracking_uri"]
    assert "MLFLOW_TRACKING_URI=http://mlflow.data-platform.svc.cluster.local:5000" in (
        integrations / "dolphinscheduler.env").read_text().splitlines()  # fmt: skip
    for path in integrations.iterdir():
        assert "CHANGE-ME" not in path.read_text(), path

    # A second render writes nothing new.
    again = play(RENDER, *args, inventories=(production,), extra=extra, tmp_path=tmp_path)
    assert not again.failed and again.changed == 0, again.changed_tasks()

    # The preflight refuses the example's placeholders before reaching anything.
    result = play(SITE, "--tags", "preflight", *args, inventories=(production,), extra=extra, tmp_path=tmp_path)
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "mlflow_db_password is still the placeholder from vault.yml.example" in message
    assert executed_tasks(result) == ["Refuse settings that are only acceptable in the sandbox"]
    # cloudflare_dns (off by default) ends its play at once: none of its role's tasks is even evaluated (skipped).
    evaluated = [task["task"]["name"] for play_ in result.report["plays"] for task in play_["tasks"]]
    assert not [name for name in evaluated if "cloudflare_dns :" in name], evaluated
