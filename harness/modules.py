"""A real MLflow 3.17.2 server for carbon254.mlflow.mlflow_health and mlflow_roundtrip, and the modules run against it.

The server runs as a plain process on 127.0.0.1 (not in the Kubernetes sandbox): sandbox PostgreSQL as backend
store (a throwaway database and role), sandbox S3 as artifact destination (a throwaway bucket, below a prefix),
--expose-prometheus and an explicit --allowed-hosts list as our deployments use. The modules run through
ansible-playbook with this checkout as the collection (tests/integration/playbooks/mlflow_modules.yml); what they
claim can be checked independently (`experiments`, `objects`). Used by tests/integration/test_mlflow_modules*.py
and bench/verify_modules.py.
"""

from __future__ import annotations

import configparser
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from harness.ansible import BIN, INVENTORY, ROOT, PlayResult, ansible_env
from harness.stores import admin_conn, s3_client

MLFLOW = Path("/opt/carbon254-sandbox/mlflow/bin/mlflow")
PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "mlflow_modules.yml"
SERVICE_HOST = "mlflow.mlflow.svc.cluster.local:5000"  # the name a port-forwarded client must send as Host


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url: str, method: str = "GET", body: object = None, host: str | None = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback test server
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextmanager
def mlflow_server(facts: dict, workdir: Path, *, tag: str = "mod", auth: tuple[str, str] | None = None,
                  s3_secret: str | None = None) -> Iterator[dict]:  # fmt: skip
    """A real MLflow 3.17.2 on its own role, database(s), bucket and port; removed again afterwards.

    `tag` goes into the names of the role, database and bucket. `auth` (admin user, password): --app-name
    basic-auth with its user database on the sandbox PostgreSQL, the ini file given through MLFLOW_AUTH_CONFIG_PATH
    and the admin through MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD. `s3_secret`: the
    AWS_SECRET_ACCESS_KEY the server gets (default: the right one). The server creates its schemas itself on
    the empty databases (measured: docs/research/mlflow-3.17.2-server.md).
    """
    if not MLFLOW.exists():
        pytest.skip(f"{MLFLOW} missing (make sandbox-mlflow)")
    suffix = uuid.uuid4().hex[:8]
    names = {"db": f"mlflow_{tag}_{suffix}", "user": f"mlflow_{tag}_{suffix}", "password": f"pw-{suffix}-Secret",
             "bucket": f"mlflow-{tag}-{suffix}", "prefix": "team/artifacts"}  # fmt: skip
    conn = admin_conn(facts)
    with conn.cursor() as cur:
        cur.execute(f"create role {names['user']} login password %s", (names["password"],))
        cur.execute(f"create database {names['db']} owner {names['user']}")
        if auth:
            cur.execute(f"create database {names['db']}_auth owner {names['user']}")
    s3 = facts["s3"]
    client = s3_client(facts)
    client.create_bucket(Bucket=names["bucket"])
    pg = facts["postgres"]
    base = f"postgresql+psycopg2://{names['user']}:{names['password']}@{pg['host']}:{pg['port']}/{names['db']}"
    env = {**os.environ, "HOME": str(workdir), "TMPDIR": str(workdir), "MLFLOW_S3_ENDPOINT_URL": s3["endpoint_url"],
           "AWS_ACCESS_KEY_ID": s3["access_key"], "AWS_SECRET_ACCESS_KEY": s3_secret or s3["secret_key"],
           "AWS_DEFAULT_REGION": s3["region"], "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    port = free_port()
    argv = [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", base,
            "--serve-artifacts", "--artifacts-destination", f"s3://{names['bucket']}/{names['prefix']}",
            "--expose-prometheus", str(workdir / "prom"), "--allowed-hosts", f"{SERVICE_HOST},127.0.0.1:{port}",
            "--workers", "1"]  # fmt: skip
    if auth:
        ini = configparser.ConfigParser()
        ini["mlflow"] = {"default_permission": "READ", "database_uri": base + "_auth",
                         "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth"}  # fmt: skip
        with (workdir / "auth.ini").open("w") as handle:
            ini.write(handle)
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(workdir / "auth.ini"), MLFLOW_AUTH_ADMIN_USERNAME=auth[0],
                   MLFLOW_AUTH_ADMIN_PASSWORD=auth[1], MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex)  # fmt: skip
        argv += ["--app-name", "basic-auth"]
    (workdir / "prom").mkdir()
    log = workdir / "server.log"
    proc = None
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, url, log)
        yield {**names, "url": url, "port": port, "s3": client, "facts": facts, "log": log, "proc": proc}
    finally:
        if proc is not None:
            _stop(proc)
        _remove(names, client, conn)


def _wait_healthy(proc: subprocess.Popen, url: str, log: Path) -> None:
    """Until the server answers /health (4 minutes at most); its log's tail when it exits or never answers."""
    deadline = time.monotonic() + 240
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if http(url + "/health")[0] == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, "MLflow did not answer /health:\n" + log.read_text()[-3000:]
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """The server's whole process group: SIGTERM, SIGKILL after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _remove(names: dict, client: Any, conn: Any) -> None:  # boto3 and psycopg2 objects have no importable type
    """The server's bucket (every object first), databases and role; the admin connection closed."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=names["bucket"]):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=names["bucket"], Key=obj["Key"])
    client.delete_bucket(Bucket=names["bucket"])
    with conn.cursor() as cur:
        cur.execute(f"drop database if exists {names['db']} with (force)")
        cur.execute(f"drop database if exists {names['db']}_auth with (force)")
        cur.execute(f"drop role if exists {names['user']}")
    conn.close()


def s3_vars(mlflow: dict) -> dict:
    s3 = mlflow["facts"]["s3"]
    return {"s3_endpoint_url": s3["endpoint_url"], "s3_bucket": mlflow["bucket"], "s3_prefix": mlflow["prefix"],
            "s3_access_key": s3["access_key"], "s3_secret_key": s3["secret_key"]}  # fmt: skip


def play(mlflow: dict, check: bool = False, verbosity: int = 0, **variables) -> PlayResult:
    """Run playbooks/mlflow_modules.yml with the json callback (or the default one with -v...)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"mlflow_url": mlflow["url"], **variables}, handle)
        vars_file = handle.name
    argv = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(PLAYBOOK), "-e", f"@{vars_file}"]
    argv += ["--check"] if check else []
    argv += ["-" + "v" * verbosity] if verbosity else []
    callback = "default" if verbosity else "ansible.posix.json"
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(ANSIBLE_STDOUT_CALLBACK=callback), capture_output=True,
                              text=True, timeout=600, check=False)  # fmt: skip
    finally:
        os.unlink(vars_file)
    report = json.loads(proc.stdout[proc.stdout.index("{") :]) if callback != "default" else None
    return PlayResult(proc.returncode, proc.stdout, proc.stderr, report)


def task(result: PlayResult, name: str) -> dict:
    for p in result.report["plays"]:
        for t in p["tasks"]:
            if t["task"]["name"] == name:
                return t["hosts"]["localhost"]
    raise AssertionError(f"no task {name!r} in the report")


HEALTH = "Check health, version and metrics"
ROUNDTRIP = "Round trip through the tracking API and the artifact store"


def experiments(mlflow: dict) -> list[tuple[str, str]]:
    with admin_conn(mlflow["facts"], mlflow["db"]) as conn, conn.cursor() as cur:
        cur.execute("select name, lifecycle_stage from experiments order by experiment_id")
        return cur.fetchall()


def objects(mlflow: dict) -> list[str]:
    listing = mlflow["s3"].list_objects_v2(Bucket=mlflow["bucket"])
    return [obj["Key"] for obj in listing.get("Contents", [])]
