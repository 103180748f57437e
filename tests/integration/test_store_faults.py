"""A deployed MLflow's stores fail for real: site.yml and verify.yml say so clearly, and a plain re-run converges once
the store is back, with no manual step (issue: HA for real, faults).

One deployment through site.yml on the shared sandbox, in a namespace, databases and a bucket of its own; the
sandbox's PostgreSQL and S3 are stopped (their processes, not a blocked login) and started again.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from harness.ansible import BIN, ROOT, PlayResult, ansible_env
from harness.faults import stopped
from harness.kube import delete_namespace, writes_since
from harness.stores import drop_stores

pytestmark = pytest.mark.integration

NS = "store-faults"
VARS = {
    "mlflow_namespace": NS,
    "mlflow_db_name": "mlflow_faults",
    "mlflow_db_user": "mlflow_faults",
    "mlflow_auth_db_name": "mlflow_faults_auth",
    "mlflow_artifacts_bucket": "mlflow-store-faults",
}


def playbook(name: str, tmp_path, **extra) -> PlayResult:
    """playbooks/<name> on the sandbox inventory with VARS, the JSON callback's report parsed."""
    variables = {**VARS, "mlflow_client_env_file": str(tmp_path / "client.env"),
                 "monitoring_scrape_config_dir": str(tmp_path / "monitoring"), **extra}  # fmt: skip
    vars_file = tmp_path / f"vars-{time.monotonic_ns()}.json"
    vars_file.write_text(json.dumps(variables))
    argv = [str(BIN / "ansible-playbook"), f"playbooks/{name}", "-i", "inventories/sandbox", "-e", f"@{vars_file}"]
    proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"),
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    try:
        report = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        report = None
    return PlayResult(proc.returncode, proc.stdout, proc.stderr, report)


@pytest.fixture(scope="module")
def deployed(sandbox_facts, tmp_path_factory):
    if "node" not in sandbox_facts["kubernetes"]:
        pytest.skip("the sandbox's Kubernetes node needs root and iproute2")
    tmp_path = tmp_path_factory.mktemp("store-faults")
    try:
        result = playbook("site.yml", tmp_path)
        assert not result.failed, result.failure_messages() or result.output[-3000:]
        yield {"facts": sandbox_facts, "tmp": tmp_path}
    finally:
        playbook("teardown.yml", tmp_path, mlflow_teardown_delete_data=True)
        delete_namespace(sandbox_facts, NS)
        drop_stores(sandbox_facts, VARS["mlflow_artifacts_bucket"],
                    [VARS["mlflow_db_name"], VARS["mlflow_auth_db_name"]], VARS["mlflow_db_user"])  # fmt: skip


def test_postgresql_stopped_fails_site_before_any_change_then_a_rerun_converges(deployed):
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    start = time.time()
    with stopped(facts, "postgres"):
        result = playbook("site.yml", tmp_path)
    assert result.failed
    message = " ".join(result.failure_messages())
    # Said where it stopped: the preflight, naming the server and the variables to check.
    assert (
        f"postgres_init: cannot connect to PostgreSQL at {facts['postgres']['host']}:{facts['postgres']['port']}"
        in message
    )
    assert "postgres_init_login_host" in message
    assert result.changed == 0
    assert writes_since(facts, start) == []

    # PostgreSQL is back: the same site.yml, nothing done by hand, finds everything as it was and verifies it
    # (the pods' connection pools reconnect: MLflow pings pooled connections before use).
    result = playbook("site.yml", tmp_path)
    assert not result.failed, result.failure_messages() or result.output[-3000:]
    assert result.changed == 0, result.changed_tasks()


def test_s3_stopped_fails_the_artifact_step_while_tracking_works_then_verify_passes(deployed):
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    with stopped(facts, "s3"):
        # Long enough for the server to give up on S3 itself (botocore retries) and answer the upload with its 500.
        result = playbook("verify.yml", tmp_path, mlflow_verify_timeout=90)
    assert result.failed
    message = " ".join(result.failure_messages())
    # The tracking calls before it worked: the round trip got as far as the artifact upload, and says where.
    assert "failed at step upload_artifact" in message, message
    assert "could not write the artifact to its artifact store" in message, message

    result = playbook("verify.yml", tmp_path)
    assert not result.failed, result.failure_messages() or result.output[-3000:]
