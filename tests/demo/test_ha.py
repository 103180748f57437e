"""HA of `make demo`'s deployment on the sandbox's two workers: where the replicas run, and a client that keeps
logging runs through a configuration change's rolling update, a drain of a replica's node, and the loss of a replica's
node (its wire cut and every process of it killed, as a machine dies), which then comes back as a rebooted machine.

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
from harness.kube import api, kubectl
from harness.load import Poller
from sandbox.config import SandboxConfig
from sandbox.kubecluster import KubeCluster
from tests.demo.helpers import recap_changed, site

ZONE = "topology.kubernetes.io/zone"
# A lost node's pod stays an endpoint of the Service until the node-lifecycle controller declares the node lost:
# after kube-controller-manager's --node-monitor-grace-period (upstream's default, 50 s since Kubernetes 1.32; the
# demo's sandbox keeps it), checked every --node-monitor-period (5 s). Then the pod is marked not ready, the
# EndpointSlice controller drops it and kube-proxy's next sync stops sending to it.
NODE_GRACE = 50
NODE_MONITOR_PERIOD = 5
# After the pod left the EndpointSlice, kube-proxy's rules stop naming it within a second or two (watched: 0.2 s).
# Yet in 1 of 4 runs here (and once in CI) requests still failed for up to 35 s after that, each a connect to the
# ClusterIP that went nowhere. Not pinned down; the likely cause is a stale conntrack entry: kube-proxy clears
# conntrack for UDP only, and a TCP SYN_SENT entry to a dead pod lives nf_conntrack_tcp_timeout_syn_sent (120 s)
# for a client that reuses its source port (kubernetes/kubernetes#101607). So the bound is that, plus one client
# iteration (three requests of up to 10 s each, counted when it starts).
CONNTRACK_SYN_SENT = 120
EVICTION = 60  # roles/mlflow_k8s: mlflow_k8s_node_lost_eviction_seconds' default


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


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def node_ready(facts: dict, name: str) -> str:
    node = api(facts, f"/api/v1/nodes/{name}")
    return {c["type"]: c["status"] for c in node["status"].get("conditions", [])}.get("Ready", "")


def serving_endpoint(facts: dict, pod: str) -> bool:
    """Whether the Service's EndpointSlices still list `pod` as ready (kube-proxy sends it requests)."""
    query = "labelSelector=kubernetes.io/service-name%3Dmlflow"
    slices = api(facts, f"/apis/discovery.k8s.io/v1/namespaces/mlflow/endpointslices?{query}")["items"]
    return any(e.get("targetRef", {}).get("name") == pod and e.get("conditions", {}).get("ready")
               for s in slices for e in s.get("endpoints") or [])  # fmt: skip


def demo_cluster(demo: dict) -> KubeCluster:
    """The demo sandbox's Kubernetes, as `make demo` started it (its state directory, ports and pod network)."""
    env = demo["env"]
    config = SandboxConfig(state_dir=Path(demo["state"]), pg_port=int(env["SANDBOX_PG_PORT"]),
                           s3_port=int(env["SANDBOX_S3_PORT"]), k8s_port=int(env["SANDBOX_K8S_PORT"]),
                           weed_port_base=int(env["SANDBOX_WEED_PORT_BASE"]), pod_cidr=env["SANDBOX_POD_CIDR"])  # fmt: skip
    return KubeCluster(config)


def wait_for(check, timeout: float, what: str, since: float | None = None) -> float:
    """Seconds (from `since`, default now) until `check()` holds, polled twice a second; fails naming `what`."""
    started = time.monotonic() if since is None else since
    while time.monotonic() < started + timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def test_the_two_replicas_run_on_two_workers_in_two_zones(demo):
    facts = facts_of(demo)
    pods = mlflow_pods(facts)
    nodes = [p["spec"]["nodeName"] for p in pods]
    assert len(pods) == 2 and len(set(nodes)) == 2, nodes
    by_zone = zones(facts)
    assert len({by_zone[n] for n in nodes}) == 2, {n: by_zone[n] for n in nodes}
    assert "carbon254-sandbox" not in nodes  # the tainted control plane runs no MLflow pod


def test_a_lost_node_fails_only_requests_sent_to_it_until_kubernetes_takes_its_pod_out(demo, logger):
    """A replica's node dies (wire cut, every process killed). Requests the Service sends to its pod fail until the
    node-lifecycle controller declares the node lost and the pod leaves the Service's endpoints; from then on (within
    CONNTRACK_SYN_SENT) every request succeeds on the other replica, and no run the client was told was stored is
    lost. The bounds are the events Kubernetes was seen to reach, not fixed times. The lost pod is evicted after the
    role's mlflow_k8s_node_lost_eviction_seconds (60) and its replacement serves from the other worker; then the node
    comes back as a rebooted machine."""
    facts = facts_of(demo)
    kube = demo_cluster(demo)
    runs_before = len(logger.logged)
    pods = mlflow_pods(facts)
    assert len({p["spec"]["nodeName"] for p in pods}) == 2, [p["spec"]["nodeName"] for p in pods]
    lost, victim = pods[0]["spec"]["nodeName"], pods[0]["metadata"]["name"]
    limit = NODE_GRACE + NODE_MONITOR_PERIOD + 120  # only so that a hang ends; the bounds are the events seen

    def replaced() -> bool:
        return any(ready(p) and p["spec"]["nodeName"] != lost and p["metadata"]["name"] not in
                   {q["metadata"]["name"] for q in pods} for p in mlflow_pods(facts))  # fmt: skip

    try:
        with Poller(logger, interval=0.1) as poller:
            poller.wait_for(5)
            started = time.monotonic()
            kube.lose_node(lost)
            declared = wait_for(lambda: node_ready(facts, lost) != "True", limit, f"{lost} declared lost", started)
            out = wait_for(
                lambda: not serving_endpoint(facts, victim), limit, f"{victim} out of the endpoints", started
            )
            replacement = wait_for(replaced, declared + EVICTION + 180, f"a ready replacement of {victim} off {lost}",
                                   started)  # fmt: skip
            # Watched past the bound, however soon the replacement was ready.
            time.sleep(max(5.0, started + out + CONNTRACK_SYN_SENT + 30 + 20 - time.monotonic()))
        outcome = poller.summary(since=started)
    finally:
        kube.restore_node(lost)
    back = wait_for(lambda: node_ready(facts, lost) == "True", 180, f"{lost} Ready again")
    serving = wait_for(lambda: len([p for p in mlflow_pods(facts) if ready(p)]) == 2, 300, "two ready replicas")
    failed = [(round(o.at - started, 1), o.detail) for o in poller.failures(started)]
    after = poller.failures(started + out)
    seen = {"declared_lost_after_s": round(declared, 1), "out_of_endpoints_after_s": round(out, 1),
            "replacement_ready_after_s": round(replacement, 1), **outcome,
            "failed_after_out_of_endpoints": len(after), "failures": failed[:3] + failed[3:][-5:]}  # fmt: skip
    assert outcome["requests"] > 20, seen
    # Kubernetes' part: the node declared lost near its grace period (generous: the machine is shared and loaded).
    assert declared <= NODE_GRACE + NODE_MONITOR_PERIOD + 30, seen
    # Ours: the other replica served everything once the lost pod was out of the endpoints.
    bound = out + CONNTRACK_SYN_SENT + 30
    assert outcome["last_failure_s"] is None or outcome["last_failure_s"] <= bound, seen
    tail = [o for o in poller.outcomes if o.at > started + bound]
    assert len(tail) > 10 and all(o.ok for o in tail), seen
    # The eviction the role asked for (not Kubernetes' 300 s): the replacement started after it, not before.
    assert declared + EVICTION <= replacement, seen
    # Every run the client was told was stored is there, with its metric (the databases are off the lost node).
    assert len(logger.logged) > runs_before + 20
    for run_id, value in logger.logged[runs_before:]:
        metrics = logger.call(f"runs/get?run_id={run_id}")["run"]["data"]["metrics"]
        assert [(m["key"], m["value"]) for m in metrics] == [("m", value)], run_id
    record("disruption", what=f"an MLflow replica's node lost (wire cut, every process killed; make demo's MLflow, "
           f"node grace {NODE_GRACE} s, eviction after {EVICTION} s, client request timeout 10 s)",
           node_back_s=round(back, 1), replicas_ready_again_s=round(serving, 1),
           **{k: v for k, v in seen.items() if k != "failures"})  # fmt: skip


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
            ready_pods = [p for p in mlflow_pods(facts) if ready(p)]
            if len(ready_pods) == 2 and all(p["spec"]["nodeName"] != node for p in ready_pods):
                return
            time.sleep(1)
        raise AssertionError(f"no second ready replica off {node}")

    try:
        drained = disrupted(logger, "kubectl drain of an MLflow replica's node (make demo's MLflow, PDB minAvailable 1)",
                            drain)  # fmt: skip
    finally:
        uncordoned = kubectl(facts, "uncordon", node)
    assert uncordoned.returncode == 0, uncordoned.stderr
    assert drained["requests"] > 20 and drained["failed"] == 0, drained

    # Back to the inventory's configuration (another rolling update, also under the client).
    def back() -> None:
        proc = site(env)
        assert proc.returncode == 0 and (recap_changed(proc) or 0) > 0, proc.stdout[-3000:]

    restored = disrupted(logger, "rolling update back to the inventory's configuration (site.yml)", back)
    assert restored["failed"] == 0, restored
    # Spread again: the rollout's pods weigh only each other (matchLabelKeys), not the pods the drain piled up on
    # one worker (before, the last new pod could tie and join the first: seen twice).
    nodes = sorted(p["spec"]["nodeName"] for p in mlflow_pods(facts))
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes
    # Every run the client was told was stored is there, with its metric.
    assert len(logger.logged) > runs_before + 60
    for run_id, value in logger.logged[runs_before:]:
        metrics = logger.call(f"runs/get?run_id={run_id}")["run"]["data"]["metrics"]
        assert [(m["key"], m["value"]) for m in metrics] == [("m", value)], run_id
