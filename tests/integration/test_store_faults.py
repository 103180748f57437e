"""A deployed MLflow's stores and the Kubernetes API fail for real: site.yml and verify.yml say so clearly, and a
plain re-run converges once the store is back, with no manual step (issue: HA for real, faults).

One deployment through site.yml on the shared sandbox, in a namespace, databases and a bucket of its own; the
sandbox's PostgreSQL and S3 are stopped (their processes, not a blocked login) and started again. The Kubernetes API
is reached through a front on loopback (harness.faults.ApiFront) that answers some or all requests with 503, slowly.
"""

from __future__ import annotations

import time

import pytest

from harness.ansible import ROOT, PlayResult, play
from harness.evidence import record
from harness.faults import api_front, stopped
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
    """playbooks/<name> on the sandbox inventory with VARS and this test's own client and monitoring files."""
    variables = {**VARS, "mlflow_client_env_file": str(tmp_path / "client.env"),
                 "monitoring_scrape_config_dir": str(tmp_path / "monitoring"), **extra}  # fmt: skip
    return play(ROOT / "playbooks" / name, extra=variables, tmp_path=tmp_path)


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
        # The running server meanwhile: with basic-auth on (as in production) every authenticated request needs
        # the auth database, /version included, so the health check already fails, with MLflow's 503 and the
        # driver's error in its message (only the unauthenticated /health, the probes', still answers).
        served = playbook("verify.yml", tmp_path, mlflow_verify_retries=1, mlflow_verify_timeout_total=60)
    assert served.failed
    served_message = " ".join(served.failure_messages())
    assert "is not healthy" in served_message and "GET /version" in served_message, served_message
    assert "HTTP 503: TEMPORARILY_UNAVAILABLE: (psycopg2.OperationalError)" in served_message, served_message

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
    record("fault", fault="PostgreSQL stopped (its process)", where="site.yml",
           outcome="stops in the preflight: " + message[:160], writes=0,
           after="PostgreSQL back: the same site.yml verifies, changed=0, no manual step")  # fmt: skip
    record("fault", fault="PostgreSQL stopped (its process)", where="verify.yml on the running server",
           outcome="health check fails: " + served_message[served_message.index("GET /version") :][:200],
           after="pods stay Ready (/health needs no database); pooled connections reconnect")  # fmt: skip


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
    record("fault", fault="S3 stopped (its process)", where="verify.yml on the running server",
           outcome="tracking calls work; fails at step upload_artifact, the artifact store named",
           after="S3 back: verify.yml passes, no manual step")  # fmt: skip


def test_kubernetes_api_failing_every_third_request_slowly_is_ridden_out_with_nothing_written(deployed):
    """As behind a load balancer with one of three API servers restarting: every third request gets 503, every
    answer comes 0.2 s late. The roles' reads (k8s_read) and module calls (until k8s_transient) try again."""
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    start = time.time()
    with api_front(facts, tmp_path / "front.kubeconfig") as front:
        front.fail_every(3)
        front.slow(0.2)
        result = playbook("site.yml", tmp_path, mlflow_kubeconfig=str(front.kubeconfig), mlflow_k8s_api_retry_delay=1,
                          monitoring_api_retry_delay=1)  # fmt: skip
    assert not result.failed, result.failure_messages() or result.output[-3000:]
    assert result.changed == 0, result.changed_tasks()
    assert writes_since(facts, start) == []
    assert len(front.injected) >= 10, front.injected
    # Both kinds of call met a fault: the lookups' GETs by name and the modules' (a k8s_info list, discovery).
    paths = [path for _, path, _ in front.injected]
    assert any(f"/namespaces/{NS}/" in path for path in paths), paths
    record("fault", fault=f"Kubernetes API: 503 to every 3rd request, +0.2 s each ({len(front.injected)} of "
                          f"{front.requests} requests)", where="site.yml on the running deployment",
           outcome="reads and module calls retried; converged", writes=0, after="changed=0")  # fmt: skip


def test_kubernetes_api_down_fails_site_in_the_preflight_naming_the_api_before_any_write(deployed):
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    start = time.time()
    with api_front(facts, tmp_path / "front.kubeconfig") as front:
        front.fail_every(1)
        began = time.monotonic()
        result = playbook("site.yml", tmp_path, mlflow_kubeconfig=str(front.kubeconfig), mlflow_k8s_api_retries=2,
                          mlflow_k8s_api_retry_delay=1, monitoring_api_retries=2, monitoring_api_retry_delay=1)  # fmt: skip
        took = time.monotonic() - began
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "the Kubernetes API did not answer reading" in message, message
    assert "HTTP 503 on each of 3 tries" in message, message
    assert result.changed == 0, result.changed_tasks()
    assert writes_since(facts, start) == []
    record("fault", fault="Kubernetes API: 503 to every request", where="site.yml",
           outcome="stops in the preflight: " + message[message.index("the Kubernetes API") :][:140], writes=0,
           after=f"failed after {took:.0f} s with 2 retries 1 s apart (defaults: 10, 3 s)")  # fmt: skip


def _client_settings_task(result: PlayResult) -> dict:
    """How verify.yml's "Write the MLflow client settings" task ended (changed, skipped)."""
    for play_ in result.report["plays"]:
        for task in play_["tasks"]:
            if task["task"]["name"].startswith("Write the MLflow client settings"):
                return task["hosts"]["localhost"]
    raise AssertionError(result.output[-3000:])


def test_client_settings_edited_or_opened_up_are_put_back_then_left_without_a_module(deployed):
    """verify.yml reads the client env file first and skips the template module when it holds: an edit or a
    chmod must still be put back (the read compares content and mode, not only that the file exists)."""
    tmp_path = deployed["tmp"]
    env_file = tmp_path / "client.env"
    written = env_file.read_text()
    assert "MLFLOW_TRACKING_URI=" in written and env_file.stat().st_mode & 0o777 == 0o600

    env_file.chmod(0o644)
    result = playbook("verify.yml", tmp_path)
    assert not result.failed, result.failure_messages() or result.output[-3000:]
    assert _client_settings_task(result).get("changed") is True
    assert env_file.stat().st_mode & 0o777 == 0o600

    env_file.write_text(written.replace("MLFLOW_TRACKING_URI=", "MLFLOW_TRACKING_URI=http://elsewhere.invalid #"))
    result = playbook("verify.yml", tmp_path)
    assert _client_settings_task(result).get("changed") is True
    assert env_file.read_text() == written

    result = playbook("verify.yml", tmp_path)
    assert result.changed == 0, result.changed_tasks()
    assert _client_settings_task(result).get("skipped") is True
