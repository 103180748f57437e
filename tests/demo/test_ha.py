"""HA of `make demo`'s deployment on the sandbox's two workers: where the replicas run, and a client that keeps
logging runs through a configuration change's rolling update and a drain of a replica's node.

The client is MLflow's REST API as every MLflow client speaks it (create a run, log a metric, read the run back),
one new connection per request, no retries: a failed request is a failure a user's script would see.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from harness.evidence import record
from harness.kube import kubectl
from harness.load import Poller
from tests.demo.helpers import recap_changed, site

ZONE = "topology.kubernetes.io/zone"


def facts_of(demo: dict) -> dict:
    return json.loads((Path(demo["state"]) / "facts.json").read_text())


def mlflow_pods(facts: dict) -> list[dict]:
    listed = kubectl(
        facts, "get", "pods", "-n", "mlflow", "-l", "app.kubernetes.io/component=tracking-server", "-o", "json"
    )
    assert listed.returncode == 0, listed.stderr
    return [p for p in json.loads(listed.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]


def zones(facts: dict) -> dict[str, str]:
    listed = json.loads(kubectl(facts, "get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: n["metadata"]["labels"].get(ZONE, "") for n in listed}


class RunLogger:
    """Create a run, log a metric, read it back: the smallest real tracking workload."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.base = settings["MLFLOW_TRACKING_URI"].rstrip("/") + "/api/2.0/mlflow/"
        token = f"{settings['MLFLOW_TRACKING_USERNAME']}:{settings['MLFLOW_TRACKING_PASSWORD']}"
        self.auth = "Basic " + base64.b64encode(token.encode()).decode()
        self.experiment = self.call("experiments/create", {"name": f"ha-{uuid.uuid4().hex[:8]}"})["experiment_id"]
        self.logged: list[tuple[str, float]] = []  # runs the client was told were stored

    def call(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method="POST" if data else "GET",  # noqa: S310
                                         headers={"Authorization": self.auth, "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the demo's loopback URL
            return json.loads(answer.read() or b"{}")

    def __call__(self) -> str:
        run = self.call("runs/create", {"experiment_id": self.experiment, "start_time": int(time.time() * 1000)})
        run_id = run["run"]["info"]["run_id"]
        value = float(len(self.logged))
        self.call("runs/log-metric", {"run_id": run_id, "key": "m", "value": value,
                                      "timestamp": int(time.time() * 1000), "step": 0})  # fmt: skip
        got = self.call(f"runs/get?run_id={run_id}")["run"]["data"]["metrics"]
        assert [(m["key"], m["value"]) for m in got] == [("m", value)], got
        self.logged.append((run_id, value))
        return run_id


@pytest.fixture(scope="module")
def logger(demo, client) -> RunLogger:
    assert demo["proc"].returncode == 0, "make demo failed (see test_demo.py)"
    return RunLogger(client.settings)


def test_the_two_replicas_run_on_two_workers_in_two_zones(demo):
    facts = facts_of(demo)
    pods = mlflow_pods(facts)
    nodes = [p["spec"]["nodeName"] for p in pods]
    assert len(pods) == 2 and len(set(nodes)) == 2, nodes
    by_zone = zones(facts)
    assert len({by_zone[n] for n in nodes}) == 2, {n: by_zone[n] for n in nodes}
    assert "carbon254-sandbox" not in nodes  # the tainted control plane runs no MLflow pod


def disrupted(logger: RunLogger, what: str, action) -> dict:
    with Poller(logger, interval=0.1) as poller:
        poller.wait_for(5)
        started = time.monotonic()
        action()
        time.sleep(3)
    outcome = poller.summary(since=started)
    record("disruption", what=what, **outcome)
    return {**outcome, "failures": poller.failures(started)[:5]}


def test_a_configuration_change_rolls_out_and_a_drain_moves_a_replica_with_no_failed_request(demo, logger):
    facts = facts_of(demo)
    env = demo["env"]
    runs_before = len(logger.logged)

    def change() -> None:
        proc = site(env, "-e", json.dumps({"mlflow_k8s_extra_env": {"CARBON254_HA_TEST": "1"}}))
        assert proc.returncode == 0 and (recap_changed(proc) or 0) > 0, proc.stdout[-3000:]

    rolled = disrupted(logger, "rolling update of a configuration change (site.yml, make demo's MLflow)", change)
    assert rolled["requests"] > 20 and rolled["failed"] == 0, rolled

    node = mlflow_pods(facts)[0]["spec"]["nodeName"]

    def drain() -> None:
        drained = kubectl(facts, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s",
                          timeout=360)  # fmt: skip
        assert drained.returncode == 0, drained.stderr
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            pods = mlflow_pods(facts)
            ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                            for c in p["status"].get("conditions", []))]  # fmt: skip
            if len(ready) == 2 and all(p["spec"]["nodeName"] != node for p in ready):
                return
            time.sleep(1)
        raise AssertionError(f"no second ready replica off {node}")

    try:
        drained = disrupted(logger, "kubectl drain of an MLflow replica's node (make demo's MLflow, PDB minAvailable 1)",
                            drain)  # fmt: skip
    finally:
        kubectl(facts, "uncordon", node)
    assert drained["requests"] > 20 and drained["failed"] == 0, drained

    # Back to the inventory's configuration (another rolling update, also under the client).
    def back() -> None:
        proc = site(env)
        assert proc.returncode == 0, proc.stdout[-3000:]

    restored = disrupted(logger, "rolling update back to the inventory's configuration (site.yml)", back)
    assert restored["failed"] == 0, restored
    # Every run the client was told was stored is there, with its metric.
    assert len(logger.logged) > runs_before + 60
    for run_id, value in logger.logged[runs_before:]:
        metrics = logger.call(f"runs/get?run_id={run_id}")["run"]["data"]["metrics"]
        assert [(m["key"], m["value"]) for m in metrics] == [("m", value)], run_id
