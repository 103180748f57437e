"""A real MLflow server (the version the collection pins) running in the Kubernetes sandbox.

Deployed with kubernetes.core (tests/integration/playbooks/k8s_mlflow.yml) against the sandbox PostgreSQL and
SeaweedFS: the migration Job completes, 2 replicas become Available through `wait: true`, MLflow answers through
its Service, and a run's metadata and artifact land in the stores. Broken variants fail as on a cluster.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import boto3
import psycopg2
import pytest

from tests.helpers import BIN, INVENTORY, ROOT, ansible_env
from tests.kube import api, delete_namespace, kubectl, service_base

pytestmark = pytest.mark.integration
IMAGE = "ghcr.io/carbon254/mlflow:3.17.2"


def test_the_node_runs_the_image_built_from_the_containerfile(sandbox_facts):
    """The image the role deploys is the one podman built from images/mlflow/Containerfile: MLflow of the pinned
    version, as the Containerfile's non-root user, on a read-only root filesystem."""
    pinned = [line for line in (ROOT / "images" / "mlflow" / "requirements.txt").read_text().splitlines()
              if line.startswith("mlflow==")]  # fmt: skip
    assert pinned == ["mlflow==3.17.2"]
    ns = f"image-{uuid.uuid4().hex[:8]}"
    code = "import os, mlflow; print(os.getuid(), mlflow.__version__); open('/probe', 'w')"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "probe", "image": IMAGE, "imagePullPolicy": "Never", "command": ["python", "-c", code],
               "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                   "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}  # fmt: skip
    try:
        api(sandbox_facts, "/api/v1/namespaces", "POST", {"metadata": {"name": ns}})
        deadline = time.monotonic() + 120
        while True:  # pods are admitted once the namespace's default ServiceAccount exists
            try:
                api(sandbox_facts, f"/api/v1/namespaces/{ns}/pods", "POST", pod)
                break
            except urllib.error.HTTPError as exc:
                assert exc.code == 403 and time.monotonic() < deadline, exc.read()
                time.sleep(0.5)
        while (phase := api(sandbox_facts, f"/api/v1/namespaces/{ns}/pods/probe")["status"].get("phase")) not in (
            "Succeeded", "Failed"):  # fmt: skip
            assert time.monotonic() < deadline, phase
            time.sleep(1)
        logs = kubectl(sandbox_facts, "logs", "-n", ns, "probe").stdout
        # uid 10001 from the Containerfile's USER, MLflow 3.17.2, and the root filesystem refused the write.
        assert "10001 3.17.2" in logs and "Read-only file system" in logs, logs
    finally:
        delete_namespace(sandbox_facts, ns)


def admin(facts: dict, dbname: str = "postgres"):
    pg = facts["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"], password=pg["admin_password"],
                            dbname=dbname, connect_timeout=5)  # fmt: skip
    conn.autocommit = True
    return conn


@pytest.fixture
def stores(sandbox_facts):
    if "node" not in sandbox_facts["kubernetes"]:
        pytest.skip("the sandbox's Kubernetes node needs root and iproute2")
    suffix = uuid.uuid4().hex[:8]
    names = {"db": f"mlflow_k8s_{suffix}", "user": f"mlflow_k8s_{suffix}", "password": f"pw-{suffix}-Secret",
             "bucket": f"mlflow-k8s-{suffix}", "ns": f"mlflow-{suffix}"}  # fmt: skip
    conn = admin(sandbox_facts)
    with conn.cursor() as cur:
        cur.execute(f"create role {names['user']} login password %s", (names["password"],))
        cur.execute(f"create database {names['db']} owner {names['user']}")
    s3 = sandbox_facts["s3"]
    client = boto3.client("s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["access_key"],
                          aws_secret_access_key=s3["secret_key"], region_name=s3["region"])  # fmt: skip
    client.create_bucket(Bucket=names["bucket"])
    yield {**names, "s3": client}
    delete_namespace(sandbox_facts, names["ns"])
    for obj in client.list_objects_v2(Bucket=names["bucket"]).get("Contents", []):
        client.delete_object(Bucket=names["bucket"], Key=obj["Key"])
    client.delete_bucket(Bucket=names["bucket"])
    with conn.cursor() as cur:
        cur.execute(f"drop database if exists {names['db']} with (force)")
        cur.execute(f"drop role if exists {names['user']}")
    conn.close()


def call(url: str, method: str = "GET", body: object = None, raw: bytes | None = None) -> tuple[int, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/octet-stream" if raw is not None else "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback sandbox
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_mlflow_runs_in_the_sandbox(sandbox_facts, stores):
    node = sandbox_facts["kubernetes"]["node"]
    db_uri = (f"postgresql+psycopg2://{stores['user']}:{stores['password']}@{node['postgres_host']}:"
              f"{node['postgres_port']}/{stores['db']}")  # fmt: skip
    extra = {"ns": stores["ns"], "image": IMAGE, "db_uri": db_uri, "s3_endpoint": node["s3_endpoint_url"],
             "access_key": sandbox_facts["s3"]["access_key"], "secret_key": sandbox_facts["s3"]["secret_key"],
             "bucket": stores["bucket"]}  # fmt: skip
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(ROOT / "tests/integration/playbooks/k8s_mlflow.yml"),
         "-e", json.dumps(extra)],
        cwd=ROOT, env=ansible_env(K8S_AUTH_KUBECONFIG=sandbox_facts["kubernetes"]["kubeconfig"]),
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert stores["password"] not in result.stdout

    base = service_base(sandbox_facts, stores["ns"])
    assert call(base + "/version") == (200, b"3.17.2")

    api = base + "/api/2.0/mlflow"
    status, body = call(api + "/experiments/create", "POST", {"name": f"sandbox-{stores['ns']}"})
    assert status == 200, body
    experiment = json.loads(body)["experiment_id"]
    status, body = call(api + "/runs/create", "POST", {"experiment_id": experiment})
    run = json.loads(body)["run"]["info"]["run_id"]
    assert (
        call(
            api + "/runs/log-metric", "POST", {"run_id": run, "key": "loss", "value": 0.25, "timestamp": 1, "step": 0}
        )[0]
        == 200
    )
    artifact = f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/hello.txt"
    assert call(artifact, "PUT", raw=b"hello from the sandbox")[0] == 200

    with admin(sandbox_facts, stores["db"]) as conn, conn.cursor() as cur:
        cur.execute("select key, value from metrics where run_uuid = %s", (run,))
        assert cur.fetchall() == [("loss", 0.25)]
    obj = stores["s3"].get_object(Bucket=stores["bucket"], Key=f"{experiment}/{run}/artifacts/hello.txt")
    assert obj["Body"].read() == b"hello from the sandbox"
