"""The README's quick start, literally: `make demo`, an MLflow client on the URL it prints, `make demo-down`.

Before `make demo`, site.yml --check --diff on the still empty sandbox; after it, again on the converged one.

Runs in a sandbox of its own (state directory, ports and pod network set through the SANDBOX_* variables the
Makefile and `python -m sandbox` honour), so it never touches the shared sandbox of the other stages nor a
developer's own `make demo`. The stage `quickstart` of `make test` runs it; on a fresh clone in CI this is the proof
that the two README commands work.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import psycopg2
import pytest
from botocore.config import Config

from tests.helpers import BIN, ROOT
from tests.integration.test_k8s_conformance import writes_since

pytestmark = pytest.mark.integration

# Apart from the defaults (55432/58333/58443/58340, 10.213/16), tests/sandbox (263xx-264xx), bench/ (574xx) and
# molecule in make test (276xx); below Linux's ephemeral range (32768-60999), so no outgoing connection or
# port-forward listener of another sandbox running at the same time can hold one of them.
DEMO_SANDBOX = {
    "SANDBOX_PG_PORT": "27532",
    "SANDBOX_S3_PORT": "27533",
    "SANDBOX_K8S_PORT": "27543",
    "SANDBOX_WEED_PORT_BASE": "27550",
    "SANDBOX_POD_CIDR": "10.215.0.0/16",
}
# The MLflow Python client: the sandbox's MLflow installation (scripts/install-sandbox-mlflow.sh), the same
# release a user would pip install next to the server.
MLFLOW_PYTHON = Path(os.environ.get("SANDBOX_MLFLOW_PYTHON", "/opt/carbon254-sandbox/mlflow/bin/python"))

CLIENT = """
import json, os, sys
import mlflow
mlflow.set_experiment(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.log_param("source", "make-demo-test")
    mlflow.log_metric("accuracy", 0.93)
    mlflow.log_artifact(sys.argv[2], artifact_path="model")
print(json.dumps({"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                  "artifact_uri": run.info.artifact_uri}))
"""


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200, check=False)  # fmt: skip
    print(f"$ make {target}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


def printed(stdout: str, label: str) -> str | None:
    found = re.findall(rf"^{re.escape(label)}: (.+)$", stdout, flags=re.MULTILINE)
    return found[-1].strip() if found else None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as a shell reads them (values are shell-quoted by playbooks/verify.yml)."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


def site(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-playbook"), "playbooks/site.yml", "-i", "inventories/sandbox", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)  # fmt: skip


def recap_changed(proc: subprocess.CompletedProcess) -> int | None:
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", proc.stdout)
    return int(recap.group(1)) if recap else None


def s3_client(facts: dict):  # boto3 clients have no importable type
    s3 = facts["s3"]
    return boto3.client("s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["access_key"],
                        aws_secret_access_key=s3["secret_key"], region_name=s3["region"],
                        config=Config(s3={"addressing_style": "path"}))  # fmt: skip


def what_exists(facts: dict) -> dict:
    """The MLflow databases and login role in PostgreSQL (over verified TLS) and the buckets in S3."""
    pg = facts["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"], password=pg["admin_password"],
                            dbname="postgres", sslmode="verify-full", sslrootcert=pg["ca_file"])  # fmt: skip
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mlflow%' ORDER BY 1")
            databases = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'mlflow%' ORDER BY 1")
            roles = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    buckets = [bucket["Name"] for bucket in s3_client(facts).list_buckets().get("Buckets", [])]
    return {"databases": databases, "roles": roles, "buckets": buckets}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`make demo` in its own sandbox; `make demo-down` afterwards whatever happened."""
    state = tmp_path_factory.mktemp("demo") / ".sandbox"
    env = {**os.environ, **DEMO_SANDBOX, "SANDBOX_STATE_DIR": str(state)}
    # make test keeps its shared sandbox between stages; `make demo-down` must really stop this one.
    env.pop("SANDBOX_KEEP", None)
    try:
        # First the empty sandbox: site.yml --check --diff, and what it left behind (nothing, it must be).
        subprocess.run([str(BIN / "python"), "-m", "sandbox", "up"], cwd=ROOT, env=env, check=True,
                       capture_output=True, text=True)  # fmt: skip
        facts = json.loads((state / "facts.json").read_text())
        start = time.time()
        check = site(env, "--check", "--diff")
        empty = {"check": check, "writes": writes_since(facts, start), **what_exists(facts)}
        proc = make("demo", env)
        yield {"proc": proc, "env": env, "state": state, "empty": empty}
    finally:
        down = make("demo-down", env)
        assert down.returncode == 0, down.stderr[-2000:]
        status = subprocess.run([str(BIN / "python"), "-m", "sandbox", "status"], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert status.returncode != 0, f"the demo sandbox still runs after make demo-down:\n{status.stdout}"
        assert not (state / "mlflow-client.env").exists()


def test_site_check_diff_on_an_empty_sandbox_reports_the_changes_and_writes_nothing(demo):
    check, empty = demo["empty"]["check"], demo["empty"]
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert (recap_changed(check) or 0) >= 10, check.stdout[-3000:]
    assert "--- before" in check.stdout  # the diffs of what would be created
    assert empty["writes"] == []
    assert empty["databases"] == [] and empty["roles"] == [] and "mlflow-artifacts" not in empty["buckets"], empty


def test_make_demo_prints_a_url_and_credentials_that_serve_mlflow_to_its_python_client(demo):
    proc = demo["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert recap_changed(proc) is not None, proc.stdout[-3000:]
    url = printed(proc.stdout, "MLflow URL")
    credentials = printed(proc.stdout, "MLflow credentials")
    assert url and re.fullmatch(r"http://127\.0\.0\.1:\d+", url), proc.stdout[-2000:]
    assert credentials, "the sandbox enables basic-auth, so make demo must print the credentials file"

    env_file = Path(credentials)
    assert env_file.stat().st_mode & 0o777 == 0o600
    settings = read_env_file(env_file)
    assert settings["MLFLOW_TRACKING_URI"] == url
    assert settings["MLFLOW_TRACKING_USERNAME"] == "admin"
    password = settings["MLFLOW_TRACKING_PASSWORD"]
    assert len(password) >= 12
    assert password not in proc.stdout and password not in proc.stderr

    # Basic-auth is really on: without the credentials the tracking API answers 401.
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)  # noqa: S310
    assert denied.value.code == 401

    # An MLflow client with nothing but the env file: a run, a param, a metric and an artifact.
    payload = demo["state"].parent / "model.txt"
    content = f"trained by the make demo test {uuid.uuid4()}\n"
    payload.write_text(content)
    client_env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MLFLOW_"))}
    client = subprocess.run([str(MLFLOW_PYTHON), "-c", CLIENT, f"demo-test-{uuid.uuid4().hex[:8]}", str(payload)],
                            env={**client_env, **settings}, capture_output=True, text=True, timeout=300,
                            check=False)  # fmt: skip
    assert client.returncode == 0, client.stderr[-3000:]
    run = json.loads(client.stdout.strip().splitlines()[-1])
    # Uploaded through the server's artifact proxy (the client has no S3 credentials) ...
    assert run["artifact_uri"].startswith("mlflow-artifacts:"), run

    # ... into the artifact bucket.
    facts = json.loads((demo["state"] / "facts.json").read_text())
    s3 = s3_client(facts)
    prefix = f"{run['experiment_id']}/{run['run_id']}/artifacts/model/"
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="mlflow-artifacts", Prefix=prefix).get("Contents", [])]
    assert keys == [prefix + "model.txt"], keys
    body = s3.get_object(Bucket="mlflow-artifacts", Key=keys[0])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(content.encode()).hexdigest()


def test_site_check_diff_on_the_converged_demo_reports_no_change_and_writes_nothing(demo):
    assert demo["proc"].returncode == 0, "make demo failed (see the first test)"
    facts = json.loads((demo["state"] / "facts.json").read_text())
    start = time.time()
    proc = site(demo["env"], "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert recap_changed(proc) == 0, proc.stdout[-4000:]
    # No diff printed either: every object, the database and the bucket already are as asked.
    assert "--- before" not in proc.stdout
    assert writes_since(facts, start) == []
