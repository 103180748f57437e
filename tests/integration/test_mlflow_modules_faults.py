"""carbon254.mlflow.mlflow_health / mlflow_roundtrip name each real fault precisely (issue 5).

Every fault is injected for real into a real MLflow 3.17.2 server process (sandbox PostgreSQL and S3, as in
test_mlflow_modules.py), and the modules run through ansible-playbook:

- server down: a server that answered, killed with SIGKILL;
- wrong version: `expected_version` that the server does not run;
- 403: a `host_header` that is not in the server's --allowed-hosts;
- 401: a server with `--app-name basic-auth`, called without and then with the admin credentials;
- artifact store broken: a server whose AWS_SECRET_ACCESS_KEY is wrong, so its S3 upload fails;
- database down: the server's backend role is set NOLOGIN and its sessions are terminated.

Three servers are started once each (normal, basic-auth, wrong S3 secret) and shared by the tests.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from contextlib import contextmanager

import pytest

from harness.ansible import MLFLOW_VERSION
from harness.modules import (
    HEALTH,
    ROUNDTRIP,
    experiments,
    http,
    mlflow_server,
    objects,
    play,
    s3_vars,
    task,
)
from harness.stores import admin_conn

pytestmark = pytest.mark.integration
ADMIN_USER = "ci-admin"
ADMIN_PASSWORD = "Adm1n-pw-" + uuid.uuid4().hex[:12]  # basic-auth refuses passwords under 12 characters


@pytest.fixture(scope="module")
def server(sandbox_facts, tmp_path_factory):
    """The plain server: wrong version, 403, database down and, last, server down run against it."""
    with mlflow_server(sandbox_facts, tmp_path_factory.mktemp("mlflow-plain"), tag="flt") as srv:
        yield srv


@pytest.fixture(scope="module")
def auth_server(sandbox_facts, tmp_path_factory):
    with mlflow_server(
        sandbox_facts, tmp_path_factory.mktemp("mlflow-auth"), tag="flt", auth=(ADMIN_USER, ADMIN_PASSWORD)
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def bad_s3_server(sandbox_facts, tmp_path_factory):
    secret = "wrong-" + uuid.uuid4().hex  # the right access key id with a wrong secret: every signature fails
    with mlflow_server(sandbox_facts, tmp_path_factory.mktemp("mlflow-bads3"), tag="flt", s3_secret=secret) as srv:
        yield srv


def only_message(result) -> str:
    (message,) = result.failure_messages()
    return message


# -- wrong version -------------------------------------------------------------------------------------------


def test_wrong_version_names_both_versions(server):
    result = play(server, run_roundtrip=False, expected_version="3.16.0", health_retries=0)
    assert result.rc != 0
    health = task(result, HEALTH)
    assert health["failure_kind"] == "version_mismatch" and health["failed_endpoint"] == "/version"
    assert health["version"] == MLFLOW_VERSION
    message = only_message(result)
    assert f"GET /version ({server['url']}/version): version mismatch" in message
    assert f"the server runs '{MLFLOW_VERSION}', expected '3.16.0'" in message


# -- 403 Host check ------------------------------------------------------------------------------------------


def test_host_not_allowed_is_a_403_host_check(server):
    result = play(server, run_roundtrip=False, host_header="attacker.example:5000", health_retries=5)
    assert result.rc != 0
    health = task(result, HEALTH)
    assert health["failure_kind"] == "host_check" and health["attempts"] == 1  # not retried
    assert health["failed_endpoint"] == "/metrics" and health["endpoints"]["metrics"]["status_code"] == 403
    message = only_message(result)
    assert "HTTP 403 from MLflow's Host header check (--allowed-hosts)" in message
    assert "'attacker.example:5000'" in message and "Invalid Host header" in message

    before = experiments(server)
    result = play(server, run_health=False, host_header="attacker.example:5000")
    trip = task(result, ROUNDTRIP)
    assert result.rc != 0 and trip["failure_kind"] == "host_check" and trip["failed_step"] == "create_experiment"
    assert "POST /api/2.0/mlflow/experiments/create" in trip["msg"] and "Nothing was created" in trip["msg"]
    assert experiments(server) == before


# -- database down -------------------------------------------------------------------------------------------


@contextmanager
def database_blocked(srv):
    """The server's role may no longer log in and its open sessions are gone: the backend store is unreachable."""
    conn = admin_conn(srv["facts"])
    try:
        with conn.cursor() as cur:
            cur.execute(f"alter role {srv['user']} nologin")
            # With a timeout, pg_terminate_backend waits until the session is gone (PostgreSQL 14+).
            cur.execute("select bool_and(pg_terminate_backend(pid, 10000)) from pg_stat_activity where usename = %s",
                        (srv["user"],))  # fmt: skip
            cur.execute("select count(*) from pg_stat_activity where usename = %s", (srv["user"],))
            assert cur.fetchone()[0] == 0
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute(f"alter role {srv['user']} login")
        conn.close()


def test_database_down_fails_the_first_tracking_call(server):
    # The server's tracking store exists (created at the first tracking request): the fault hits a running server.
    assert http(server["url"] + "/api/2.0/mlflow/experiments/search", "POST", {"max_results": 1})[0] == 200
    before = experiments(server)
    with database_blocked(server):
        result = play(server, health_retries=0, **s3_vars(server))
        status, body = http(server["url"] + "/health")
    assert result.rc != 0
    health = task(result, HEALTH)
    # What is true of MLflow 3.17.2: /health, /version and /metrics do not touch the database, so they pass.
    assert (status, body) == (200, b"OK")
    assert health.get("failed") is not True and health["version"] == MLFLOW_VERSION
    trip = task(result, ROUNDTRIP)
    assert trip["failure_kind"] == "http_status" and trip["failed_step"] == "create_experiment"
    message = only_message(result)
    # MLflow answers 503 TEMPORARILY_UNAVAILABLE with the driver's error, which the module passes on.
    assert f"POST /api/2.0/mlflow/experiments/create ({server['url']}" in message
    assert "HTTP 503: TEMPORARILY_UNAVAILABLE: (psycopg2.OperationalError)" in message
    assert f'role "{server["user"]}" is not permitted to log in' in message
    assert "Nothing was created" in message
    assert experiments(server) == before

    # Login allowed again: the same server works, so the database was the fault.
    result = play(server, run_health=False, **s3_vars(server))
    assert result.rc == 0, result.output[-3000:]
    assert task(result, ROUNDTRIP)["cleaned_up"] is True


# -- 401 basic auth ------------------------------------------------------------------------------------------


def test_basic_auth_without_credentials_is_a_401(auth_server):
    result = play(auth_server, run_roundtrip=False, health_retries=5)
    assert result.rc != 0
    health = task(result, HEALTH)
    # /health is open on a basic-auth server, /version is not (docs/research/mlflow-3.17.2-server.md, section 6).
    assert health["endpoints"]["health"]["status_code"] == 200
    assert health["failure_kind"] == "auth" and health["failed_endpoint"] == "/version"
    assert health["endpoints"]["version"]["status_code"] == 401 and health["attempts"] == 1
    message = only_message(result)
    assert "GET /version" in message and "HTTP 401 authentication failed" in message
    assert "set username and password" in message

    before = experiments(auth_server)
    result = play(auth_server, run_health=False)
    trip = task(result, ROUNDTRIP)
    assert result.rc != 0 and trip["failure_kind"] == "auth" and trip["failed_step"] == "create_experiment"
    assert "Nothing was created" in trip["msg"]

    result = play(auth_server, run_health=False, mlflow_username=ADMIN_USER, mlflow_password="wrong-" + ADMIN_PASSWORD)
    trip = task(result, ROUNDTRIP)
    assert result.rc != 0 and trip["failure_kind"] == "auth"
    assert f"rejected the credentials of user '{ADMIN_USER}'" in trip["msg"]
    assert experiments(auth_server) == before


def test_basic_auth_with_the_admin_credentials_passes(auth_server):
    before = experiments(auth_server)
    result = play(auth_server, mlflow_username=ADMIN_USER, mlflow_password=ADMIN_PASSWORD,
                  expected_version=MLFLOW_VERSION, **s3_vars(auth_server))  # fmt: skip
    assert result.rc == 0, result.output[-5000:]
    assert ADMIN_PASSWORD not in result.output
    health = task(result, HEALTH)
    assert {name: e["status_code"] for name, e in health["endpoints"].items()} == {
        "health": 200,
        "version": 200,
        "metrics": 200,
    }
    trip = task(result, ROUNDTRIP)
    assert trip["cleaned_up"] is True and trip["s3_object"]["deleted"] is True
    assert experiments(auth_server)[len(before) :] == [(trip["experiment_name"], "deleted")]
    assert objects(auth_server) == []


# -- artifact store broken -----------------------------------------------------------------------------------


def test_wrong_s3_secret_fails_the_upload_and_still_cleans_up(bad_s3_server):
    srv = bad_s3_server
    before = experiments(srv)
    result = play(srv, health_retries=0, **s3_vars(srv))  # the module's own S3 check has the right keys
    assert result.rc != 0
    assert task(result, HEALTH).get("failed") is not True  # health does not touch the artifact store
    trip = task(result, ROUNDTRIP)
    assert trip["failed_step"] == "upload_artifact" and trip["failure_kind"] == "artifact_store"
    message = only_message(result)
    assert f"failed at step upload_artifact: PUT /api/2.0/mlflow-artifacts/artifacts/{trip['artifact_path']}" in message
    assert "artifact upload failed: HTTP 500: Internal Server Error" in message
    assert "could not write the artifact to its artifact store (--artifacts-destination)" in message
    # MLflow's 500 page carries no cause; its log does: S3 rejected the server's signature.
    assert "SignatureDoesNotMatch" in srv["log"].read_text()
    # Cleanup was attempted for all three: the run and experiment are deleted, the artifact DELETE fails the same
    # way (the server cannot list the store), and the message says so. Nothing reached the bucket.
    assert trip["cleanup"]["run"] == "deleted" and trip["cleanup"]["experiment"] == "deleted"
    assert "HTTP 500" in trip["cleanup"]["artifact"] and trip["cleaned_up"] is False
    assert "Cleanup FAILED for artifact (DELETE /api/2.0/mlflow-artifacts/artifacts/" in message
    assert experiments(srv)[len(before) :] == [(trip["experiment_name"], "deleted")]
    assert objects(srv) == []


# -- server down (last: it kills the plain server) -----------------------------------------------------------


def test_server_killed_is_connection_refused(server):
    assert http(server["url"] + "/health")[0] == 200  # healthy until now
    os.killpg(server["proc"].pid, signal.SIGKILL)
    server["proc"].wait(timeout=20)

    result = play(server, run_roundtrip=False, health_retries=1)
    assert result.rc != 0
    health = task(result, HEALTH)
    assert health["failure_kind"] == "connection_refused" and health["failed_endpoint"] == "/health"
    assert health["attempts"] == 2  # retried: a server that is restarting refuses connections too
    message = only_message(result)
    assert f"GET /health ({server['url']}/health): connection refused" in message
    assert re.search(r"not healthy after 2 attempt\(s\)", message)

    result = play(server, run_health=False)
    trip = task(result, ROUNDTRIP)
    assert result.rc != 0 and trip["failure_kind"] == "connection_refused"
    assert f"POST /api/2.0/mlflow/experiments/create ({server['url']}" in trip["msg"]
    assert "Nothing was created" in trip["msg"]
