"""Backups that restore (issue: Day 2): the backup CronJob site.yml deploys, playbooks/backup.yml taking one with its
pod while MLflow holds real runs, the dump restored into a scratch database by hand (pg_restore), and
playbooks/restore.yml after the databases were lost: everything the client logged is back, the same login works.

One deployment through site.yml on the shared sandbox (basic-auth on, as in production), in a namespace, databases
and a bucket of its own. Tests run in file order, each building on the one before.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest

from harness.ansible import MLFLOW_VERSION, PlayResult, deployment_play
from harness.evidence import record
from harness.kube import api, delete_namespace, writes_since
from harness.stores import drop_stores, query, s3_client

pytestmark = pytest.mark.integration

NS = "backup-restore"
VARS = {
    "mlflow_namespace": NS,
    "mlflow_db_name": "mlflow_bk",
    "mlflow_db_user": "mlflow_bk",
    "mlflow_auth_db_name": "mlflow_bk_auth",
    "mlflow_artifacts_bucket": "mlflow-backup-restore",
    # Hard anti-affinity with as many workers as replicas: the rolling updates below finish only because the term
    # weighs the new revision's pods alone (matchLabelKeys); without it the surge pod has nowhere to go.
    "mlflow_k8s_pod_anti_affinity": "hard",
}
PREFIX = f"mlflow-backups/{NS}/mlflow"
SCRATCH = "mlflow_bk_scratch"


def playbook(name: str, tmp_path, *args: str, **extra) -> PlayResult:
    return deployment_play(VARS, name, tmp_path, *args, **extra)


class Client:
    """MLflow's REST API with the settings verify.yml wrote (the URI the sandbox forwards, the admin's login)."""

    def __init__(self, env_file) -> None:
        settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        self.base = settings["MLFLOW_TRACKING_URI"].strip("'\"").rstrip("/") + "/api/2.0/mlflow/"
        token = f"{settings['MLFLOW_TRACKING_USERNAME'].strip(chr(39))}:{settings['MLFLOW_TRACKING_PASSWORD'].strip(chr(39))}"
        self.auth = "Basic " + base64.b64encode(token.encode()).decode()

    def call(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method="POST" if data else "GET",  # noqa: S310
                                         headers={"Authorization": self.auth, "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the sandbox's loopback URL
            return json.loads(answer.read() or b"{}")


@pytest.fixture(scope="module")
def deployed(sandbox_facts, tmp_path_factory):
    if "node" not in sandbox_facts["kubernetes"]:
        pytest.skip("the sandbox's Kubernetes node needs root and iproute2")
    tmp_path = tmp_path_factory.mktemp("backup")
    try:
        result = playbook("site.yml", tmp_path)
        assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
        client = Client(tmp_path / "client.env")
        experiment = client.call("experiments/create", {"name": f"backup-{uuid.uuid4().hex[:8]}"})["experiment_id"]
        runs = []
        for index in range(3):
            run = client.call("runs/create", {"experiment_id": experiment, "start_time": int(time.time() * 1000)})
            run_id = run["run"]["info"]["run_id"]
            client.call("runs/log-batch", {"run_id": run_id,
                                           "metrics": [{"key": "loss", "value": 0.5 + index / 8, "timestamp": 1, "step": s}
                                                       for s in range(5)],
                                           "params": [{"key": "lr", "value": str(index)}],
                                           "tags": [{"key": "team", "value": "carbon254"}]})  # fmt: skip
            runs.append(run_id)
        yield {"facts": sandbox_facts, "tmp": tmp_path, "client": client, "experiment": experiment, "runs": runs}
    finally:
        playbook("teardown.yml", tmp_path, mlflow_teardown_delete_data=True)
        delete_namespace(sandbox_facts, NS)
        drop_stores(sandbox_facts, VARS["mlflow_artifacts_bucket"],
                    [VARS["mlflow_db_name"], VARS["mlflow_auth_db_name"], SCRATCH], VARS["mlflow_db_user"])  # fmt: skip


def counts(facts: dict, dbname: str) -> dict[str, int]:
    return {t: query(facts, f"select count(*) from {t}", dbname=dbname)[0][0]  # noqa: S608 - fixed names
            for t in ("experiments", "runs", "metrics", "params", "tags", "registered_models", "model_versions")}  # fmt: skip


def test_the_backup_cronjob_runs_the_servers_image_with_its_pod_security(deployed):
    cronjob = api(deployed["facts"], f"/apis/batch/v1/namespaces/{NS}/cronjobs/mlflow-backup")
    assert cronjob["spec"]["schedule"] == "17 2 * * *" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    server = api(deployed["facts"], f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow")["spec"]["template"]["spec"]
    assert pod["securityContext"] == server["securityContext"]
    assert pod["containers"][0]["image"] == server["containers"][0]["image"]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


class Writer(threading.Thread):
    """A client logging metrics to a run of its own, as fast as the server takes them, until stopped."""

    def __init__(self, client: Client, experiment: str) -> None:
        super().__init__(daemon=True)
        self.client, self.stop, self.logged, self.errors = client, threading.Event(), 0, []
        self.run_id = client.call("runs/create", {"experiment_id": experiment})["run"]["info"]["run_id"]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.client.call("runs/log-metric", {"run_id": self.run_id, "key": "during-backup",
                                                     "value": self.logged, "timestamp": 1, "step": self.logged})  # fmt: skip
                self.logged += 1
            except OSError as error:  # the assertion below says it; the thread must not die silently
                self.errors.append(repr(error))


def test_backup_playbook_dumps_both_databases_and_the_dump_restores_with_every_run(deployed):
    """Taken while a client keeps logging (the CronJob runs under a live server): the manifest's row counts are those
    of the dump itself, or a restore of it would fail its check."""
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    live = counts(facts, VARS["mlflow_db_name"])
    writer = Writer(deployed["client"], deployed["experiment"])
    writer.start()
    started = time.monotonic()
    try:
        result = playbook("backup.yml", tmp_path)
    finally:
        took = time.monotonic() - started
        writer.stop.set()
        writer.join(60)
    assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
    assert writer.errors == [] and writer.logged >= 20, (writer.logged, writer.errors[:3])
    s3 = s3_client(facts)
    keys = [
        o["Key"] for o in s3.list_objects_v2(Bucket=VARS["mlflow_artifacts_bucket"], Prefix=PREFIX + "/")["Contents"]
    ]
    (manifest_key,) = [k for k in keys if k.endswith("/manifest.json")]
    manifest = json.loads(s3.get_object(Bucket=VARS["mlflow_artifacts_bucket"], Key=manifest_key)["Body"].read())
    assert set(manifest["databases"]) == {"tracking", "auth"}
    tracking = manifest["databases"]["tracking"]
    assert tracking["counts"]["runs"] == live["runs"] + 1 and live["runs"] >= 3  # the writer's run
    assert live["metrics"] < tracking["counts"]["metrics"] < live["metrics"] + writer.logged  # taken mid-writing
    assert tracking["alembic_revision"] and manifest["databases"]["auth"]["counts"]["users"] >= 1
    assert manifest["name"] in " ".join(result.output.splitlines()[-200:])  # the playbook said where it is

    # By hand, as docs/upgrade.md tells: the dump into a scratch database with the host's pg_restore.
    dump = tmp_path / "tracking.dump"
    s3.download_file(VARS["mlflow_artifacts_bucket"], tracking["key"], str(dump))
    query(facts, f"create database {SCRATCH}")
    pg = facts["postgres"]
    restored = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "-h", pg["host"],
                               "-p", str(pg["port"]), "-U", pg["admin_user"], "-d", SCRATCH, str(dump)],
                              env={"PGPASSWORD": pg["admin_password"], "PATH": "/usr/bin:/bin"}, capture_output=True,
                              text=True, check=False)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    dumped = counts(facts, SCRATCH)
    assert {t: dumped[t] for t in tracking["counts"]} == tracking["counts"]  # counted in the snapshot it dumped
    deployed["dumped"] = dumped
    (value,) = query(
        facts, "select value from metrics where run_uuid = %s and step = 4", (deployed["runs"][2],), SCRATCH
    )
    assert value == (0.75,)
    record("backup", what="playbooks/backup.yml (pg_dump -Fc of both databases to S3)", seconds=round(took, 1),
           bytes=tracking["bytes"], metrics_logged_meanwhile=writer.logged,
           restored_by_hand="pg_restore into a scratch database: the manifest's row counts")  # fmt: skip


def test_restore_refuses_databases_that_hold_tables_and_leaves_the_server_alone(deployed):
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    start = time.time()
    result = playbook("restore.yml", tmp_path)
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "tables; restore into an empty database, or force it" in message, message
    # Its only write: the checking Job. The server was not scaled, the databases not touched.
    writes = writes_since(facts, start, NS)
    assert writes and all(w.startswith("POST /apis/batch/v1/namespaces/") for w in writes), writes
    assert api(facts, f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow")["status"]["readyReplicas"] == 2


def test_databases_lost_then_restore_brings_back_every_run_and_the_login(deployed):
    facts, tmp_path, client = deployed["facts"], deployed["tmp"], deployed["client"]
    before = deployed["dumped"]  # the latest backup is the one the writer wrote through
    # The PostgreSQL server lost and rebuilt: both databases back, empty, owned by MLflow's login.
    for db in (VARS["mlflow_db_name"], VARS["mlflow_auth_db_name"]):
        query(facts, f"drop database {db} with (force)")
        query(facts, f"create database {db} owner {VARS['mlflow_db_user']}")
    result = playbook("restore.yml", tmp_path)
    assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
    outage = re.search(r"the server was stopped for ([0-9.]+) s", result.output)
    assert outage, result.output[-2000:]
    assert counts(facts, VARS["mlflow_db_name"]) == before
    # Through the server, with the same login (the auth database came back too).
    for index, run_id in enumerate(deployed["runs"]):
        run = client.call(f"runs/get?run_id={run_id}")["run"]
        assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"loss": 0.5 + index / 8}
        assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": str(index)}
    record("restore", what="playbooks/restore.yml after both databases were lost (latest backup)",
           outage_s=float(outage.group(1)), rows=before)  # fmt: skip


def server_pods(facts: dict) -> list[dict]:
    """The server's pods that are not on their way out."""
    query = "labelSelector=app.kubernetes.io/component%3Dtracking-server"
    listed = api(facts, f"/api/v1/namespaces/{NS}/pods?{query}")["items"]
    return [p for p in listed if not p["metadata"].get("deletionTimestamp")]


def pod_hash(facts: dict) -> str:
    """The pod-template-hash of the Deployment's newest ReplicaSet (revision annotation)."""
    sets = api(facts, f"/apis/apps/v1/namespaces/{NS}/replicasets")["items"]
    newest = max(sets, key=lambda r: int(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))
    return newest["metadata"]["labels"]["pod-template-hash"]


def jobs(facts: dict) -> dict[str, dict]:
    return {j["metadata"]["name"]: j for j in api(facts, f"/apis/batch/v1/namespaces/{NS}/jobs")["items"]}


def backups(facts: dict) -> set[str]:
    listed = s3_client(facts).list_objects_v2(Bucket=VARS["mlflow_artifacts_bucket"], Prefix=PREFIX + "/")
    return {o["Key"].split("/")[-2] for o in listed.get("Contents", []) if o["Key"].endswith("/manifest.json")}


def test_an_older_version_is_refused_before_any_write(deployed):
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    start = time.time()
    result = playbook("site.yml", tmp_path, mlflow_k8s_version="3.17.1")
    assert result.failed
    message = " ".join(result.failure_messages())
    assert f"mlflow_k8s_version 3.17.1 is older than the {MLFLOW_VERSION} that Deployment {NS}/mlflow runs" in message
    assert "Nothing was changed" in message and "playbooks/restore.yml" in message, message
    assert writes_since(facts, start, NS) == []


def test_a_version_change_backs_up_both_databases_before_migrating(deployed):
    """Only one MLflow image is built here, so the version before is the current image under an older release's
    name (allowed as a downgrade first, which backs up too); the migrations of a really older schema are not tested
    here yet (docs/upgrade.md)."""
    facts, tmp_path = deployed["facts"], deployed["tmp"]
    older = {"mlflow_k8s_version": "3.17.1", "mlflow_k8s_image": f"ghcr.io/carbon254/mlflow:{MLFLOW_VERSION}"}
    # The first step runs the role alone (verify.yml would see 3.17.2 answer for 3.17.1); the second all of site.yml.
    for step, tags, extra in (("to 3.17.1", ("--tags", "mlflow_k8s"), {**older, "mlflow_k8s_allow_downgrade": True}),
                              ("back", (), {})):  # fmt: skip
        before_jobs, before_backups = set(jobs(facts)), backups(facts)
        result = playbook("site.yml", tmp_path, *tags, **extra)
        assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
        new = {name: job for name, job in jobs(facts).items() if name not in before_jobs}
        # The backup CronJob's pod ran twice: the schema check (-s<time>), then the backup (-b<time>).
        made = [j for j in new.values() if j["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"]
        (backup,) = [j for j in made if re.search(r"-b[0-9]{12}$", j["metadata"]["name"])]
        (check,) = [j for j in made if re.search(r"-s[0-9]{12}$", j["metadata"]["name"])]
        assert check["status"]["completionTime"] <= backup["metadata"]["creationTimestamp"], step
        assert "stopped for" not in result.output, step  # one schema: a rolling update
        assert "Complete" in [c["type"] for c in backup["status"]["conditions"] if c["status"] == "True"], step
        (taken,) = backups(facts) - before_backups
        where = f"backed up first to s3://{VARS['mlflow_artifacts_bucket']}/{PREFIX}/{taken}/"
        assert where in result.output, (step, result.output[-2000:])
        for job in new.values():  # the migration Jobs of a version not run before start after the backup
            if job not in made:
                assert job["metadata"]["creationTimestamp"] >= backup["status"]["completionTime"], (step, job)
        if step == "to 3.17.1":
            assert any("-migrate-3-17-1-" in name for name in new), (step, sorted(new))
        deployment = api(facts, f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow")
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == extra.get(
            "mlflow_k8s_version", MLFLOW_VERSION
        )
        # Both replicas of the new revision, on two nodes (the rollout's wait saw them ready).
        newest = pod_hash(facts)
        nodes = [p["spec"]["nodeName"] for p in server_pods(facts) if p["metadata"]["labels"]["pod-template-hash"]
                 == newest]  # fmt: skip
        assert len(nodes) == 2 and len(set(nodes)) == 2, (step, nodes)
    # The same version again: no backup, no write.
    start, before_jobs = time.time(), set(jobs(facts))
    result = playbook("site.yml", tmp_path, "--tags", "mlflow_k8s")
    assert not result.failed and result.changed == 0, result.changed_tasks()
    assert set(jobs(facts)) == before_jobs and writes_since(facts, start, NS) == []
