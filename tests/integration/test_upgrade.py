"""MLflow upgrades across real schema changes (issue: Day 2), with real data and a client that does not retry.

One deployment through site.yml on the shared sandbox (basic-auth on) in a namespace, databases and a bucket of its
own, starting from the oldest release built here (images/mlflow/releases/: 2.22.5, the last 2.x) and upgraded twice:
to 3.10.1 (20 tracking migrations, the workspace key rewrites among them) and to the current release (18 more, the
3.13 auth migration that drops NO_PERMISSIONS denies among them). The data is logged on 2.22.5 through MLflow's REST
API: an experiment, runs with metric histories, params, tags and an artifact, a registered model with two versions
and an alias, users with an EDIT grant and a NO_PERMISSIONS deny. During each upgrade a client logs a metric about
10 times a second through the Service; every write it was told succeeded must be there afterwards. Then a database
newer than a release is refused, and the backup taken before the last upgrade is restored into new databases with
the older release running on them (the rollback). Tests run in file order, each building on the one before.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from harness.ansible import MLFLOW_VERSION, PlayResult, deployment_play
from harness.evidence import record
from harness.kube import api, delete_namespace, import_images, writes_since
from harness.load import Poller
from harness.stores import drop_stores, query
from sandbox.pins import older_mlflow_images

pytestmark = pytest.mark.integration

NS = "upgrade"
VARS = {
    "mlflow_namespace": NS,
    "mlflow_db_name": "mlflow_up",
    "mlflow_db_user": "mlflow_up",
    "mlflow_auth_db_name": "mlflow_up_auth",
    "mlflow_artifacts_bucket": "mlflow-upgrade",
}
ROLLBACK_DBS = {"mlflow_db_name": "mlflow_up_rb", "mlflow_auth_db_name": "mlflow_up_rb_auth"}
RELEASES = sorted(
    (image.rsplit(":", 1)[1] for image in older_mlflow_images()), key=lambda v: tuple(map(int, v.split(".")))
)
OLDEST, MIDDLE = RELEASES[0], RELEASES[-1]
# The tracking schema's head of each release (docs/research/mlflow-migrations.md).
HEADS = {"2.22.5": "0584bdc529eb", "3.10.1": "1b5f0d9ad7c1"}
PASSWORD = "Upgrade-test-1"


def playbook(name: str, tmp_path, *args: str, **extra) -> PlayResult:
    return deployment_play(VARS, name, tmp_path, *args, **extra)


class User:
    """MLflow's REST API as one user, through the URL the sandbox forwards to the Service."""

    def __init__(self, root: str, username: str, password: str) -> None:
        self.root = root
        self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def request(self, path: str, body: dict | None = None, method: str | None = None, data: bytes | None = None):
        payload = json.dumps(body).encode() if body is not None else data
        request = urllib.request.Request(self.root + path, data=payload,  # noqa: S310 - the sandbox's loopback URL
                                         method=method or ("POST" if payload is not None else "GET"),
                                         headers={"Authorization": self.auth, "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.read()

    def call(self, path: str, body: dict | None = None) -> dict:
        return json.loads(self.request("/api/2.0/mlflow/" + path, body) or b"{}")

    def status(self, path: str, body: dict | None = None) -> int:
        try:
            self.request("/api/2.0/mlflow/" + path, body)
        except urllib.error.HTTPError as exc:
            return exc.code
        return 200


def admin(tmp_path) -> User:
    settings = dict(line.split("=", 1) for line in (tmp_path / "client.env").read_text().splitlines() if "=" in line)
    value = {k: v.strip("'\"") for k, v in settings.items()}
    return User(value["MLFLOW_TRACKING_URI"].rstrip("/"), value["MLFLOW_TRACKING_USERNAME"],
                value["MLFLOW_TRACKING_PASSWORD"])  # fmt: skip


def log_everything(root: User) -> dict:
    """What a team's tracking server holds, in small: logged on the oldest release."""
    experiment = root.call("experiments/create", {"name": f"upgrade-{uuid.uuid4().hex[:8]}"})["experiment_id"]
    runs = {}
    for index in range(3):
        info = root.call("runs/create", {"experiment_id": experiment, "start_time": int(time.time() * 1000),
                                         "tags": [{"key": "team", "value": "carbon254"}]})["run"]["info"]  # fmt: skip
        run_id = info["run_id"]
        root.call("runs/log-batch", {"run_id": run_id,
                                     "metrics": [{"key": "loss", "value": round(1 / (step + 1 + index), 6),
                                                  "timestamp": 1000 + step, "step": step} for step in range(20)],
                                     "params": [{"key": "lr", "value": f"0.0{index + 1}"}]})  # fmt: skip
        artifact = info["artifact_uri"].split("mlflow-artifacts:/", 1)[1].strip("/") + "/model.txt"
        root.request(f"/api/2.0/mlflow-artifacts/artifacts/{artifact}", data=f"weights {index}".encode(), method="PUT")
        root.call("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
        runs[run_id] = {"index": index, "artifact": artifact}
    model = f"upgrade-model-{uuid.uuid4().hex[:6]}"
    root.call("registered-models/create", {"name": model})
    for run_id in list(runs)[:2]:
        root.call("model-versions/create", {"name": model, "run_id": run_id,
                                            "source": f"mlflow-artifacts:/{runs[run_id]['artifact'].rsplit('/', 1)[0]}"})  # fmt: skip
    root.call("registered-models/alias", {"name": model, "alias": "champion", "version": "2"})
    for user in ("alice", "bob", "carol"):
        root.call("users/create", {"username": user, "password": PASSWORD})
    root.call("experiments/permissions/create", {"experiment_id": experiment, "username": "bob", "permission": "EDIT"})
    root.call("experiments/permissions/create",
              {"experiment_id": experiment, "username": "alice", "permission": "NO_PERMISSIONS"})  # fmt: skip
    return {"experiment": experiment, "runs": runs, "model": model}


def everything_is_there(root: User, data: dict, *, alice_denied: bool) -> None:
    experiment = data["experiment"]
    assert root.call(f"experiments/get?experiment_id={experiment}")["experiment"]["lifecycle_stage"] == "active"
    found = root.call("runs/search", {"experiment_ids": [experiment], "max_results": 100})["runs"]
    assert {r["info"]["run_id"] for r in found} >= set(data["runs"])
    for run_id, run in data["runs"].items():
        index = run["index"]
        got = root.call(f"runs/get?run_id={run_id}")["run"]
        assert got["info"]["status"] == "FINISHED"
        assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"lr": f"0.0{index + 1}"}
        assert {t["key"]: t["value"] for t in got["data"].get("tags", [])}["team"] == "carbon254"
        history = root.call(f"metrics/get-history?run_id={run_id}&metric_key=loss&max_results=1000")["metrics"]
        assert sorted((m["step"], m["value"]) for m in history) == [
            (step, round(1 / (step + 1 + index), 6)) for step in range(20)
        ]
        assert root.request(f"/api/2.0/mlflow-artifacts/artifacts/{run['artifact']}") == f"weights {index}".encode()
    found = urllib.parse.quote(f"name='{data['model']}'")
    versions = root.call(f"model-versions/search?filter={found}")["model_versions"]
    assert sorted(v["version"] for v in versions) == ["1", "2"]
    alias = root.call(f"registered-models/alias?name={data['model']}&alias=champion")["model_version"]
    assert alias["version"] == "2"
    # The grants: bob may write to the experiment (EDIT); carol, with no grant, may only read (default READ).
    bob, carol, alice = (User(root.root, name, PASSWORD) for name in ("bob", "carol", "alice"))
    body = {"experiment_id": experiment, "start_time": int(time.time() * 1000)}
    assert bob.status("runs/create", body) == 200
    assert carol.status("runs/create", body) == 403
    assert carol.status(f"experiments/get?experiment_id={experiment}") == 200
    assert alice.status(f"experiments/get?experiment_id={experiment}") == (403 if alice_denied else 200)


class Writer:
    """Logs metric `live` on one run, a new value per request; remembers the values the server said it stored."""

    def __init__(self, root: User, experiment: str) -> None:
        self.root = root
        self.run_id = root.call("runs/create", {"experiment_id": experiment, "start_time": 1})["run"]["info"]["run_id"]
        self.sent = 0
        self.acknowledged: list[float] = []

    def __call__(self) -> str:
        self.sent += 1
        value = float(self.sent)
        self.root.call("runs/log-metric", {"run_id": self.run_id, "key": "live", "value": value,
                                           "timestamp": int(time.time() * 1000), "step": self.sent})  # fmt: skip
        self.acknowledged.append(value)
        return "ok"

    def stored(self) -> set[float]:
        path = f"metrics/get-history?run_id={self.run_id}&metric_key=live&max_results=100000"
        return {m["value"] for m in self.root.call(path)["metrics"]}


@pytest.fixture(scope="module")
def oldest(sandbox_facts, tmp_path_factory):
    if "node" not in sandbox_facts["kubernetes"]:
        pytest.skip("the sandbox's Kubernetes node needs root and iproute2")
    import_images(sandbox_facts, sorted(older_mlflow_images()))
    tmp_path = tmp_path_factory.mktemp("upgrade")
    leftovers(sandbox_facts)  # of an interrupted run: this one starts from nothing
    try:
        result = playbook("site.yml", tmp_path, mlflow_k8s_version=OLDEST)
        assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
        root = admin(tmp_path)
        yield {"facts": sandbox_facts, "tmp": tmp_path, "root": root, "data": log_everything(root), "backups": {}}
    finally:
        playbook("teardown.yml", tmp_path, mlflow_teardown_delete_data=True)
        leftovers(sandbox_facts)


def leftovers(facts: dict) -> None:
    """Remove the namespace (waiting until it is gone), the databases, the login and the bucket."""
    delete_namespace(facts, NS)
    for _ in range(60):
        if not [n for n in api(facts, "/api/v1/namespaces")["items"] if n["metadata"]["name"] == NS]:
            break
        time.sleep(2)
    drop_stores(facts, VARS["mlflow_artifacts_bucket"],
                [VARS["mlflow_db_name"], VARS["mlflow_auth_db_name"], *ROLLBACK_DBS.values()],
                VARS["mlflow_db_user"])  # fmt: skip


def test_the_oldest_release_serves_what_was_logged(oldest):
    assert oldest["root"].request("/version").decode() == OLDEST
    revision = query(oldest["facts"], "select version_num from alembic_version", dbname=VARS["mlflow_db_name"])
    assert revision == [(HEADS[OLDEST],)]
    everything_is_there(oldest["root"], oldest["data"], alice_denied=True)


def upgrade(oldest: dict, version: str) -> tuple[PlayResult, dict, Writer]:
    root, data = oldest["root"], oldest["data"]
    writer = Writer(root, data["experiment"])
    with Poller(writer, interval=0.1) as poller:
        poller.wait_for(5)
        started = time.monotonic()
        result = playbook("site.yml", oldest["tmp"], mlflow_k8s_version=version)
        time.sleep(2)
    assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
    outcome = poller.summary(since=started)
    # What the client saw: the longest time between two requests that succeeded (a request may also have waited
    # through the stop: the Service's address takes the connection and a pod answers once one is ready).
    ok = [o.at for o in poller.outcomes if o.ok and o.at >= started]
    outcome["longest_gap_s"] = round(max((b - a for a, b in itertools.pairwise(ok)), default=0.0), 1)
    # Every write the client was told succeeded is stored (none lost when the server stopped mid-request).
    assert set(writer.acknowledged) <= writer.stored()
    assert root.request("/version").decode() == version
    taken = re.search(r"backed up first to (s3://\S+/)(\d{8}T\d{6}Z)/", result.output)
    assert taken, result.output[-2000:]
    oldest["backups"][version] = taken.group(2)
    return result, outcome, writer


def stopped_for(result: PlayResult) -> float:
    stop = re.search(r"was stopped for ([0-9.]+) s while the migrations ran \((\d+);", result.output)
    assert stop, result.output[-3000:]
    assert int(stop.group(2)) > 0
    return float(stop.group(1))


def test_an_upgrade_across_schema_changes_stops_the_writers_and_keeps_every_record(oldest):
    """2.22.5 -> 3.10.1: twenty migrations in one transaction, the server scaled to zero meanwhile."""
    result, outcome, writer = upgrade(oldest, MIDDLE)
    outage = stopped_for(result)
    # Requests failed only while the server was stopped: between the first and the last failure no more time passed
    # than the play says the server was down (plus the client's own timeout), and some were answered before.
    assert outcome["requests"] > outcome["failed"], outcome
    if outcome["failed"]:
        assert outcome["last_failure_s"] - outcome["first_failure_s"] <= outage + 10, (outcome, outage)
    assert outcome["longest_gap_s"] <= outage + 15, (outcome, outage)
    revision = query(oldest["facts"], "select version_num from alembic_version", dbname=VARS["mlflow_db_name"])
    assert revision == [(HEADS[MIDDLE],)]
    everything_is_there(oldest["root"], oldest["data"], alice_denied=True)
    record("upgrade", what=f"{OLDEST} -> {MIDDLE} (recreate: scaled to zero for the migration)", outage_s=outage,
           acknowledged_writes=len(writer.acknowledged), **outcome)  # fmt: skip


def test_the_upgrade_to_the_current_release_reports_the_denies_it_drops(oldest):
    """3.10.1 -> current: the 3.13 auth migration turns grants into roles and drops alice's NO_PERMISSIONS."""
    result, outcome, writer = upgrade(oldest, MLFLOW_VERSION)
    outage = stopped_for(result)
    if outcome["failed"]:
        assert outcome["last_failure_s"] - outcome["first_failure_s"] <= outage + 10, (outcome, outage)
    assert outcome["longest_gap_s"] <= outage + 15, (outcome, outage)
    warning = re.search(r"WARNING: MLflow \S+ auth migration .*?Re-create them as DENY grants", result.output)
    named = warning.group(0).replace('\\"', '"') if warning else ""
    assert '"user": "alice"' in named and f'"experiment_id": "{oldest["data"]["experiment"]}"' in named, result.output[
        -3000:
    ]
    # What the warning says is what happens: alice now reads the experiment through the default READ.
    everything_is_there(oldest["root"], oldest["data"], alice_denied=False)
    record("upgrade", what=f"{MIDDLE} -> {MLFLOW_VERSION} (recreate; the 3.13 deny loss reported)", outage_s=outage,
           acknowledged_writes=len(writer.acknowledged), **outcome)  # fmt: skip


def test_a_version_with_no_image_is_refused_with_the_reason_before_the_deployment_changes(oldest):
    facts = oldest["facts"]
    start = time.time()
    result = playbook("site.yml", oldest["tmp"], "--tags", "mlflow_k8s", mlflow_k8s_version="3.99.0")
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "could not start its container (" in message and "ghcr.io/carbon254/mlflow:3.99.0" in message, message
    assert "Pull" in message or "InvalidImageName" in message, message
    writes = writes_since(facts, start, NS)
    assert not [w for w in writes if "/deployments" in w], writes
    assert oldest["root"].request("/version").decode() == MLFLOW_VERSION


def test_a_release_older_than_the_database_is_refused_before_the_deployment_changes(oldest):
    facts = oldest["facts"]
    start = time.time()
    result = playbook("site.yml", oldest["tmp"], "--tags", "mlflow_k8s", mlflow_k8s_version=MIDDLE,
                      mlflow_k8s_allow_downgrade=True)  # fmt: skip
    assert result.failed
    message = " ".join(result.failure_messages())
    assert f"is unknown to MLflow {MIDDLE} (mlflow_k8s_version)" in message and "restore a backup" in message, message
    # The Deployment and the databases were not touched: no Deployment write, no migration or backup Job.
    writes = writes_since(facts, start, NS)
    assert not [w for w in writes if "/deployments" in w], writes
    assert len([w for w in writes if w.startswith("POST /apis/batch/v1/") and "/jobs" in w]) == 1, writes
    deployment = api(facts, f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == MLFLOW_VERSION
    assert oldest["root"].request("/version").decode() == MLFLOW_VERSION
    # Run again with the version the database has: back as it was, the configuration included.
    result = playbook("site.yml", oldest["tmp"], "--tags", "mlflow_k8s")
    assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]


def test_rollback_restores_the_backup_into_new_databases_under_the_older_release(oldest):
    """The way back docs/upgrade.md gives: new databases, the older release deployed on them, the backup taken
    before the upgrade restored over them (forced: the release's migration made its tables)."""
    tmp_path, name = oldest["tmp"], oldest["backups"][MLFLOW_VERSION]
    older = {"mlflow_k8s_version": MIDDLE, "mlflow_k8s_allow_downgrade": True, **ROLLBACK_DBS}
    result = playbook("site.yml", tmp_path, **older)
    assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
    assert "stopped for" not in result.output  # new databases: nothing to migrate under running pods
    result = playbook("restore.yml", tmp_path, mlflow_k8s_restore_name=name, mlflow_k8s_restore_force=True, **older)
    assert not result.failed, "\n".join(result.failure_messages()) or result.output[-3000:]
    outage = re.search(r"the server was stopped for ([0-9.]+) s", result.output)
    assert outage, result.output[-2000:]
    root = oldest["root"]
    assert root.request("/version").decode() == MIDDLE
    # The backup was taken on 3.10.1 before the 3.13 auth migration: alice's deny is back with everything else.
    everything_is_there(root, oldest["data"], alice_denied=True)
    revision = query(oldest["facts"], "select version_num from alembic_version", dbname=ROLLBACK_DBS["mlflow_db_name"])
    assert revision == [(HEADS[MIDDLE],)]
    record("rollback", what=f"{MLFLOW_VERSION} -> {MIDDLE}: backup {name} restored into new databases",
           restore_outage_s=float(outage.group(1)))  # fmt: skip
