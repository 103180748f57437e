"""Role mlflow_k8s against the Kubernetes sandbox, running the real MLflow 3.17.2 against PostgreSQL and S3.

The tests share one deployment and run in file order, each building on the state the previous one left, as an
operator's successive runs would: check mode on an empty namespace, converge, an unchanged re-run, a config
change, a version change, a broken command, a failed migration, teardown. Basic-auth has its own deployment.
Every role run goes through ansible-playbook (harness.ansible.run_role), as users run it.
"""

from __future__ import annotations

import base64
import collections
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from harness.ansible import MLFLOW_IMAGE, MLFLOW_VERSION, PlayResult, run_role
from harness.kube import api, delete_namespace, service_base, tag_image, writes_since
from harness.stores import admin_conn, drop_stores, s3_client

pytestmark = pytest.mark.integration


# -- helpers ------------------------------------------------------------------------------------------------------
def server_pods(facts: dict, ns: str) -> list[dict]:
    """The server pods, not counting those being deleted (a replaced pod serves on for its preStop sleep)."""
    selector = "app.kubernetes.io/component%3Dtracking-server"
    pods = api(facts, f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"]
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def pod_state(facts: dict, ns: str) -> dict[str, int]:
    """uid → restart count of the server pods."""
    return {
        p["metadata"]["uid"]: sum(c.get("restartCount", 0) for c in p.get("status", {}).get("containerStatuses", []))
        for p in server_pods(facts, ns)
    }


def jobs(facts: dict, ns: str) -> dict[str, dict]:
    return {j["metadata"]["name"]: j for j in api(facts, f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]}


def conditions(obj: dict) -> set[str]:
    return {c["type"] for c in obj.get("status", {}).get("conditions", []) if c["status"] == "True"}


def call(facts: dict, ns: str, path: str, method: str = "GET", body: object = None, *, raw: bytes | None = None,
         auth: tuple[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    """A request through the Service, with the Host header of the in-cluster name (MLflow checks it)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Host": f"mlflow.{ns}.svc.cluster.local:5000",
               "Content-Type": "application/octet-stream" if raw is not None else "application/json"}  # fmt: skip
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(service_base(facts, ns) + path, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - loopback sandbox
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def add_image_tag(facts: dict, tag: str) -> None:
    """A rebuilt image of the same MLflow under a new tag, as a registry would get it pushed."""
    tag_image(facts, MLFLOW_IMAGE, f"{MLFLOW_IMAGE.rsplit(':', 1)[0]}:{tag}")


@pytest.fixture(scope="module")
def stores(sandbox_facts):
    """A database, login, a second database for basic-auth, and a bucket, as postgres_init / minio_bucket make them."""
    if "node" not in sandbox_facts["kubernetes"]:
        pytest.skip("the sandbox's Kubernetes node needs root and iproute2")
    suffix = uuid.uuid4().hex[:8]
    names = {"db": f"mk_{suffix}", "auth_db": f"mk_auth_{suffix}", "user": f"mk_{suffix}",
             "password": f"pw/{suffix}@Secret:%", "bucket": f"mk-{suffix}", "ns": f"mk-{suffix}",
             "auth_ns": f"mka-{suffix}"}  # fmt: skip
    conn = admin_conn(sandbox_facts)
    with conn.cursor() as cur:
        cur.execute(f"create role {names['user']} login password %s", (names["password"],))
        cur.execute(f"create database {names['db']} owner {names['user']}")
        cur.execute(f"create database {names['auth_db']} owner {names['user']}")
        # A database the login may connect to but not create tables in: its migration fails at once.
        cur.execute(f"create database {names['db']}_ro")
        cur.execute(f"grant connect on database {names['db']}_ro to {names['user']}")
    client = s3_client(sandbox_facts)
    client.create_bucket(Bucket=names["bucket"])
    yield {**names, "s3": client}
    for ns in (names["ns"], names["auth_ns"]):
        delete_namespace(sandbox_facts, ns)
    conn.close()
    drop_stores(sandbox_facts, names["bucket"], [names["db"], names["auth_db"], names["db"] + "_ro"], names["user"])


def role_vars(facts: dict, stores: dict, **overrides: object) -> dict:
    node = facts["kubernetes"]["node"]
    return {
        "mlflow_k8s_namespace": stores["ns"],
        "mlflow_k8s_kubeconfig": facts["kubernetes"]["kubeconfig"],
        "mlflow_k8s_db_host": node["postgres_host"],
        "mlflow_k8s_db_port": node["postgres_port"],
        "mlflow_k8s_db_name": stores["db"],
        "mlflow_k8s_db_user": stores["user"],
        "mlflow_k8s_db_password": stores["password"],
        "mlflow_k8s_artifacts_bucket": stores["bucket"],
        "mlflow_k8s_s3_endpoint_url": node["s3_endpoint_url"],
        "mlflow_k8s_s3_access_key": facts["s3"]["access_key"],
        "mlflow_k8s_s3_secret_key": facts["s3"]["secret_key"],
        # Small pods for a 2-core test machine; the default sizing is measured in bench/mlflow_k8s_load.py.
        "mlflow_k8s_workers": 1,
        "mlflow_k8s_cpu_request": "100m",
        "mlflow_k8s_memory_request": "512Mi",
        "mlflow_k8s_memory_limit": "1Gi",
        "mlflow_k8s_probe_period": 2,
        "mlflow_k8s_rollout_timeout": 240,
        **overrides,
    }


def converge(facts: dict, stores: dict, check: bool = False, **overrides: object) -> tuple[PlayResult, float]:
    start = time.time()
    result = run_role("mlflow_k8s", role_vars(facts, stores, **overrides), check=check, diff=check)
    return result, start


# -- the deployment's life ---------------------------------------------------------------------------------------
def test_check_mode_on_an_empty_namespace_changes_nothing(sandbox_facts, stores):
    result, start = converge(sandbox_facts, stores, check=True)
    assert not result.failed, result.output[-4000:]
    assert result.changed > 0
    assert writes_since(sandbox_facts, start, stores["ns"]) == []
    with pytest.raises(urllib.error.HTTPError):
        api(sandbox_facts, f"/api/v1/namespaces/{stores['ns']}")


def test_converge_migrates_then_serves_from_postgres_and_s3(sandbox_facts, stores):
    result, _ = converge(sandbox_facts, stores)
    assert not result.failed, result.output[-6000:]
    assert stores["password"] not in result.output and sandbox_facts["s3"]["secret_key"] not in result.output

    (job,) = jobs(sandbox_facts, stores["ns"]).values()
    assert "Complete" in conditions(job)
    deployment = api(sandbox_facts, f"/apis/apps/v1/namespaces/{stores['ns']}/deployments/mlflow")
    assert deployment["status"]["readyReplicas"] == 2
    assert {"Available", "Progressing"} <= conditions(deployment)
    # The migration ran before the server: the Job finished before any server pod was created.
    finished = job["status"]["completionTime"]
    assert all(p["metadata"]["creationTimestamp"] >= finished for p in server_pods(sandbox_facts, stores["ns"]))

    ns = stores["ns"]
    assert call(sandbox_facts, ns, "/version") == (200, MLFLOW_VERSION.encode())
    status, body = call(sandbox_facts, ns, "/api/2.0/mlflow/experiments/create", "POST", {"name": f"it-{ns}"})
    assert status == 200, body
    experiment = json.loads(body)["experiment_id"]
    run = json.loads(call(sandbox_facts, ns, "/api/2.0/mlflow/runs/create", "POST", {"experiment_id": experiment})[1])
    run_id = run["run"]["info"]["run_id"]
    metric = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0}
    assert call(sandbox_facts, ns, "/api/2.0/mlflow/runs/log-metric", "POST", metric)[0] == 200
    path = f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/model.txt"
    assert call(sandbox_facts, ns, path, "PUT", raw=b"weights")[0] == 200

    with admin_conn(sandbox_facts, stores["db"]) as conn, conn.cursor() as cur:
        cur.execute("select key, value from metrics where run_uuid = %s", (run_id,))
        assert cur.fetchall() == [("loss", 0.5)]
    obj = stores["s3"].get_object(Bucket=stores["bucket"], Key=f"{experiment}/{run_id}/artifacts/model.txt")
    assert obj["Body"].read() == b"weights"
    # Another Host than the allowed names is refused (the API, not /health).
    req = urllib.request.Request(service_base(sandbox_facts, ns) + "/api/2.0/mlflow/experiments/search?max_results=1")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)  # noqa: S310 - loopback sandbox
    assert refused.value.code == 403


def test_second_run_changes_and_writes_nothing(sandbox_facts, stores):
    before = pod_state(sandbox_facts, stores["ns"])
    result, start = converge(sandbox_facts, stores)
    assert not result.failed, result.output[-4000:]
    assert result.changed == 0, result.changed_tasks()
    assert writes_since(sandbox_facts, start, stores["ns"]) == []
    assert pod_state(sandbox_facts, stores["ns"]) == before, "a pod was replaced or restarted"


def test_check_mode_on_the_deployment_reports_nothing_to_do(sandbox_facts, stores):
    result, start = converge(sandbox_facts, stores, check=True)
    assert not result.failed, result.output[-4000:]
    assert result.changed == 0, result.changed_tasks()
    assert writes_since(sandbox_facts, start, stores["ns"]) == []


def test_switched_off_objects_are_removed_then_come_back_with_no_pod_replaced(sandbox_facts, stores):
    """PodDisruptionBudget, NetworkPolicy and the backup CronJob with its script, switched on then off: the run
    deletes exactly those objects (read first: one task over what the run found), the next writes nothing."""
    ns, before = stores["ns"], pod_state(sandbox_facts, stores["ns"])
    objects = {"PodDisruptionBudget": f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/mlflow",
               "NetworkPolicy": f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/mlflow",
               "CronJob": f"/apis/batch/v1/namespaces/{ns}/cronjobs/mlflow-backup",
               "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps/mlflow-backup"}  # fmt: skip

    def present() -> set[str]:
        found = set()
        for kind, path in objects.items():
            try:
                obj = api(sandbox_facts, path)
            except urllib.error.HTTPError as exc:
                assert exc.code == 404, exc
                continue
            if not obj["metadata"].get("deletionTimestamp"):
                found.add(kind)
        return found

    result, _ = converge(sandbox_facts, stores, mlflow_k8s_network_policy_enabled=True)
    assert not result.failed, result.output[-4000:]
    assert present() == set(objects)

    off = {"mlflow_k8s_network_policy_enabled": False, "mlflow_k8s_pdb_enabled": False,
           "mlflow_k8s_backup_enabled": False}  # fmt: skip
    result, start = converge(sandbox_facts, stores, **off)
    assert not result.failed, result.output[-4000:]
    deleted = sorted(w for w in writes_since(sandbox_facts, start, ns) if w.startswith("DELETE "))
    assert len(deleted) == 4 and present() == set(), (deleted, present())
    result, start = converge(sandbox_facts, stores, **off)
    assert result.changed == 0, result.changed_tasks()
    assert writes_since(sandbox_facts, start, ns) == []

    result, _ = converge(sandbox_facts, stores)
    assert not result.failed, result.output[-4000:]
    assert present() == {"PodDisruptionBudget", "CronJob", "ConfigMap"}
    assert pod_state(sandbox_facts, ns) == before, "switching these objects replaced or restarted a pod"


def test_config_change_rolls_the_pods_without_migrating_and_serves_every_request(sandbox_facts, stores):
    """RollingUpdate with maxSurge 1 / maxUnavailable 0: while the pods are replaced, clients calling the Service all
    the time (a new connection each, as kube-proxy balances them) get every answer."""
    before = pod_state(sandbox_facts, stores["ns"])
    base = service_base(sandbox_facts, stores["ns"])
    host = {"Host": f"mlflow.{stores['ns']}.svc.cluster.local:5000"}
    answers: collections.Counter = collections.Counter()
    done = threading.Event()

    def client() -> None:
        while not done.is_set():
            request = urllib.request.Request(base + "/api/2.0/mlflow/experiments/search?max_results=1", headers=host)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback sandbox
                    answers[response.status] += 1
            except Exception as exc:  # every failure counts, whatever it is
                answers[type(exc).__name__ + ": " + str(exc)[:80]] += 1
            time.sleep(0.1)

    threading.Thread(target=client, daemon=True).start()
    try:
        result, start = converge(sandbox_facts, stores, mlflow_k8s_log_level="WARNING")
    finally:
        done.set()
        time.sleep(0.5)
    assert not result.failed, result.output[-4000:]
    assert set(answers) == {200} and answers[200] > 20, answers
    after = pod_state(sandbox_facts, stores["ns"])
    assert len(after) == 2
    assert not set(after) & set(before), "the config change did not replace the pods"
    config = api(sandbox_facts, f"/api/v1/namespaces/{stores['ns']}/configmaps/mlflow-config")
    assert config["data"]["MLFLOW_LOGGING_LEVEL"] == "WARNING"
    assert not [w for w in writes_since(sandbox_facts, start, stores["ns"]) if "/jobs" in w]


def test_version_change_migrates_once_then_rolls(sandbox_facts, stores):
    add_image_tag(sandbox_facts, f"{MLFLOW_VERSION}-build2")
    changes = {"mlflow_k8s_log_level": "WARNING", "mlflow_k8s_version": f"{MLFLOW_VERSION}-build2"}
    before = pod_state(sandbox_facts, stores["ns"])
    result, start = converge(sandbox_facts, stores, **changes)
    assert not result.failed, result.output[-4000:]
    created = [
        w for w in writes_since(sandbox_facts, start, stores["ns"]) if w.startswith("POST") and w.endswith("/jobs")
    ]
    assert len(created) == 3  # an upgrade's schema check and backup first, then the migration
    all_jobs = jobs(sandbox_facts, stores["ns"])
    new_jobs = [j for name, j in all_jobs.items() if "3-17-2-build2" in name]
    assert len(new_jobs) == 1 and "Complete" in conditions(new_jobs[0])
    (backup,) = [j for name, j in all_jobs.items() if re.search(r"-backup-b[0-9]{12}$", name)]
    (check,) = [j for name, j in all_jobs.items() if re.search(r"-backup-s[0-9]{12}$", name)]
    assert "Complete" in conditions(backup) and "Complete" in conditions(check)
    # The same image under another release name: no migration to run, so a rolling update (no stop).
    assert "stopped for" not in result.output
    assert backup["status"]["completionTime"] <= new_jobs[0]["metadata"]["creationTimestamp"]
    assert f"from {MLFLOW_VERSION} to {MLFLOW_VERSION}-build2: backed up first to s3://{stores['bucket']}/" in (
        result.output
    )
    after = pod_state(sandbox_facts, stores["ns"])
    assert len(after) == 2 and not set(after) & set(before)
    pods = server_pods(sandbox_facts, stores["ns"])
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {f"{MLFLOW_IMAGE}-build2"}

    again, start = converge(sandbox_facts, stores, **changes)
    assert not again.failed and again.changed == 0, again.changed_tasks()
    assert writes_since(sandbox_facts, start, stores["ns"]) == []


def test_broken_command_keeps_the_old_pods_serving_and_fails_with_the_reason(sandbox_facts, stores):
    good = {"mlflow_k8s_log_level": "WARNING", "mlflow_k8s_version": f"{MLFLOW_VERSION}-build2"}
    before = pod_state(sandbox_facts, stores["ns"])
    result, _ = converge(sandbox_facts, stores, **good, mlflow_k8s_extra_args=["--no-such-option"],
                         mlflow_k8s_rollout_timeout=30)  # fmt: skip
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "did not finish within 30s" in message
    assert "restarts" in message and ("CrashLoopBackOff" in message or "last exit code 2" in message), message
    assert "No such option" in message, "the pod's log tail should say what is wrong"
    # maxUnavailable 0: the old pods still run and answer.
    assert set(before) <= set(pod_state(sandbox_facts, stores["ns"]))
    assert call(sandbox_facts, stores["ns"], "/version") == (200, MLFLOW_VERSION.encode())

    # Fixing the input rolls back to a working template.
    fixed, _ = converge(sandbox_facts, stores, **good)
    assert not fixed.failed, fixed.output[-4000:]
    assert len(pod_state(sandbox_facts, stores["ns"])) == 2


def test_failed_migration_stops_before_the_rollout(sandbox_facts, stores):
    good = {"mlflow_k8s_log_level": "WARNING", "mlflow_k8s_version": f"{MLFLOW_VERSION}-build2"}
    before = pod_state(sandbox_facts, stores["ns"])
    deployment = api(sandbox_facts, f"/apis/apps/v1/namespaces/{stores['ns']}/deployments/mlflow")
    result, _ = converge(sandbox_facts, stores, **good, mlflow_k8s_db_name=stores["db"] + "_ro")
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "migration job" in message and "failed" in message, message
    assert "permission denied" in message, "the Job's log tail should say why"
    after = api(sandbox_facts, f"/apis/apps/v1/namespaces/{stores['ns']}/deployments/mlflow")
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"], "the Deployment changed"
    assert set(pod_state(sandbox_facts, stores["ns"])) == set(before)
    assert call(sandbox_facts, stores["ns"], "/version") == (200, MLFLOW_VERSION.encode())


def test_teardown_removes_the_objects_and_keeps_the_data(sandbox_facts, stores):
    result, _ = converge(
        sandbox_facts, stores, mlflow_k8s_state="absent", mlflow_k8s_version=f"{MLFLOW_VERSION}-build2"
    )
    assert not result.failed, result.output[-4000:]
    ns = stores["ns"]
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments/mlflow", f"/api/v1/namespaces/{ns}/services/mlflow",
                 f"/api/v1/namespaces/{ns}/secrets/mlflow-secrets", f"/api/v1/namespaces/{ns}/configmaps/mlflow-config"):  # fmt: skip
        with pytest.raises(urllib.error.HTTPError):
            api(sandbox_facts, path)
    assert jobs(sandbox_facts, ns) == {}
    with admin_conn(sandbox_facts, stores["db"]) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from metrics")
        assert cur.fetchone()[0] >= 1
    assert stores["s3"].list_objects_v2(Bucket=stores["bucket"]).get("KeyCount", 0) >= 1
    again, start = converge(
        sandbox_facts, stores, mlflow_k8s_state="absent", mlflow_k8s_version=f"{MLFLOW_VERSION}-build2"
    )
    assert not again.failed and again.changed == 0
    assert writes_since(sandbox_facts, start, ns) == []


# -- basic-auth ----------------------------------------------------------------------------------------------------
def test_basic_auth_users_live_in_postgres_and_are_shared_by_the_replicas(sandbox_facts, stores):
    admin_password = "admin-" + uuid.uuid4().hex
    result, _ = converge(
        sandbox_facts, stores, mlflow_k8s_namespace=stores["auth_ns"], mlflow_k8s_auth_enabled=True,
        mlflow_k8s_auth_db_name=stores["auth_db"], mlflow_k8s_auth_admin_password=admin_password,
        mlflow_k8s_flask_secret_key=uuid.uuid4().hex,
    )  # fmt: skip
    assert not result.failed, result.output[-6000:]
    assert admin_password not in result.output
    ns = stores["auth_ns"]
    assert len(jobs(sandbox_facts, ns)) == 2, "tracking and auth migrations"

    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert call(sandbox_facts, ns, search)[0] == 401
    assert call(sandbox_facts, ns, "/health")[0] == 200
    admin = ("admin", admin_password)
    status, body = call(
        sandbox_facts, ns, "/api/2.0/mlflow/experiments/create", "POST", {"name": "auth-it"}, auth=admin
    )
    assert status == 200, body
    experiment = json.loads(body)["experiment_id"]
    status, body = call(
        sandbox_facts, ns, "/api/2.0/mlflow/runs/create", "POST", {"experiment_id": experiment}, auth=admin
    )
    assert status == 200, body
    metric = {
        "run_id": json.loads(body)["run"]["info"]["run_id"],
        "key": "acc",
        "value": 0.9,
        "timestamp": 1,
        "step": 0,
    }
    assert call(sandbox_facts, ns, "/api/2.0/mlflow/runs/log-metric", "POST", metric, auth=admin)[0] == 200
    assert call(sandbox_facts, ns, "/api/2.0/mlflow/runs/log-metric", "POST", metric)[0] == 401
    user = ("alice", "alice-" + uuid.uuid4().hex)
    status, body = call(sandbox_facts, ns, "/api/2.0/mlflow/users/create", "POST",
                        {"username": user[0], "password": user[1]}, auth=admin)  # fmt: skip
    assert status == 200, body
    # The Service alternates between the two ready pods: every request must know alice, whichever pod answers.
    assert [call(sandbox_facts, ns, search, auth=user)[0] for _ in range(6)] == [200] * 6
    with admin_conn(sandbox_facts, stores["auth_db"]) as conn, conn.cursor() as cur:
        cur.execute("select username from users order by username")
        assert [row[0] for row in cur.fetchall()] == ["admin", "alice"]
