"""The sandbox's Kubernetes with worker nodes: a control plane and two workers, each its own machine as far as
Kubernetes can tell (own network and mount namespaces, cgroup subtree, containerd, kubelet and kube-proxy).

One cluster for the module (ports and pod network of its own, the small test images only, a short node grace
period: see `GRACE`). A client polls a two-replica Service from the host throughout, one new connection per request
and no retries; the last tests lose a node for real and then check that `down` leaves nothing on the host.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.evidence import record
from harness.load import Poller
from sandbox import audit, pins
from sandbox.config import SandboxConfig
from sandbox.kubeadmin import CONTROL_PLANE_TAINT
from sandbox.kubecluster import NODE_NAME, KubeCluster
from sandbox.node import hierarchies
from sandbox.topology import ZONE_LABEL, worker_name
from tests.sandbox.kube_helpers import apply, get, host_state, kubectl, pod, wait_for

pytestmark = pytest.mark.skipif(not KubeCluster.node_supported(), reason="needs root, iproute2 and iptables")
PORTS = {"pg_port": 26232, "s3_port": 26233, "k8s_port": 26243, "weed_port_base": 26250}  # 262xx: this module's
POD_CIDR = "10.219.0.0/16"
WORKERS = (worker_name(1), worker_name(2))
# Node grace period and Lease (s). Upstream's 50 s / 40 s would make the node-loss test wait minutes; the pods
# tolerate an unreachable node for TOLERATE s instead of 300.
GRACE, TOLERATE = 20, 10
# After a node is lost: requests may fail for at most LAST_FAILURE_BOUND s, then none for QUIET s.
LAST_FAILURE_BOUND, QUIET = 120, 30
PRESTOP = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    config = SandboxConfig(state_dir=tmp_path_factory.mktemp("nodes") / "state", pod_cidr=POD_CIDR, nodes=2, **PORTS)
    kube = KubeCluster(config, images=[pins.PAUSE_IMAGE, pins.TESTTOOL_IMAGE], node_grace=GRACE)
    names = (str(config.state_dir), kube.short_name)
    state = {"kube": kube, "before": host_state(names), "names": names}
    try:
        kube.start()
        kube.wait_ready()
        yield state
    finally:
        state["kube"].stop()


def web(replicas: int = 2) -> list[dict]:
    """The seed's shape in small: replicas spread over nodes and zones (preferred, so a drained node's pod has
    somewhere to go), readiness, a preStop pause, a PDB allowing one pod down, and a Service."""
    labels = {"app": "web"}
    spec = pod("web", ["serve", ":8080"], restart="Always", labels=labels)["spec"]
    container = spec["containers"][0]
    container["readinessProbe"] = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRESTOP}}}
    spec["terminationGracePeriodSeconds"] = PRESTOP + 10
    spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": labels}}}]}}  # fmt: skip
    spec["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": ZONE_LABEL, "whenUnsatisfiable": "ScheduleAnyway",
                                          "labelSelector": {"matchLabels": labels}}]  # fmt: skip
    spec["tolerations"] = [{"key": f"node.kubernetes.io/{t}", "operator": "Exists", "effect": "NoExecute",
                            "tolerationSeconds": TOLERATE} for t in ("unreachable", "not-ready")]  # fmt: skip
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": spec}}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]  # fmt: skip


def placement(cluster: dict) -> dict[str, str]:
    """Running, ready web pods: name -> node."""
    found = {}
    for item in get(cluster, "pods", "-l", "app=web")["items"]:
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in item["status"].get("conditions", []))
        if ready and not item["metadata"].get("deletionTimestamp"):
            found[item["metadata"]["name"]] = item["spec"]["nodeName"]
    return found


@pytest.fixture(scope="module")
def served(cluster):
    apply(cluster, *web())
    kubectl(cluster, "rollout", "status", "deployment/web", "--timeout=120s")
    url = cluster["kube"].service_url("default", "web")

    def request() -> str:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - the sandbox's loopback URL
            return answer.read().decode().strip()

    def answers() -> bool:  # kube-proxy programs a new Service a moment after it exists
        try:
            return bool(request())
        except OSError:
            return False

    wait_for(answers, timeout=30, what="the Service to answer from the host")
    return request


def test_workers_register_with_their_zones_and_the_control_plane_takes_no_pods(cluster):
    nodes = {n["metadata"]["name"]: n for n in get(cluster, "nodes")["items"]}
    assert set(nodes) == {NODE_NAME, *WORKERS}
    assert all({c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"] == "True" for n in nodes.values())
    control = nodes[NODE_NAME]
    assert {"key": CONTROL_PLANE_TAINT, "effect": "NoSchedule"} in [
        {k: t[k] for k in ("key", "effect")} for t in control["spec"].get("taints", [])
    ]
    assert CONTROL_PLANE_TAINT in control["metadata"]["labels"]
    facts = cluster["kube"].facts()["nodes"]
    for index, name in enumerate(WORKERS, start=1):
        assert nodes[name]["metadata"]["labels"][ZONE_LABEL] == f"zone-{index}"
        assert not nodes[name]["spec"].get("taints")
        address = next(a["address"] for a in nodes[name]["status"]["addresses"] if a["type"] == "InternalIP")
        assert address == f"10.219.0.{1 + index}" == facts[index]["ip"]
    # An `up` of the running cluster reads the node's placement and writes nothing.
    start = time.time()
    cluster["kube"].wait_ready()
    assert audit.writes(cluster["kube"].facts()["audit_log"], start, None, "kubernetes-admin") == []


def test_two_replicas_land_on_two_workers_in_two_zones_and_the_service_reaches_both(cluster, served):
    where = placement(cluster)
    assert sorted(where.values()) == sorted(WORKERS)
    expected, answers = {f"hello from {name}" for name in where}, set()

    def both() -> bool:  # each endpoint is in kube-proxy's rules a moment after its pod is ready
        answers.add(served())
        return answers == expected

    wait_for(both, timeout=30, what=f"answers from both replicas (so far {answers})")


def test_pods_reach_each_other_the_api_server_and_the_hosts_services_across_nodes(cluster, served):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host service answered")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", PORTS["s3_port"]), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pods = get(cluster, "pods", "-l", "app=web")["items"]
        by_node = {p["spec"]["nodeName"]: p for p in pods}
        first, second = (by_node[name] for name in WORKERS)
        reply = kubectl(cluster, "exec", first["metadata"]["name"], "--", "/testtool", "fetch",
                        f"http://{second['status']['podIP']}:8080/")  # fmt: skip
        assert f"hello from {second['metadata']['name']}" in reply
        gateway = cluster["kube"].gateway
        reply = kubectl(cluster, "exec", second["metadata"]["name"], "--", "/testtool", "fetch",
                        f"http://{gateway}:{PORTS['s3_port']}/")  # fmt: skip
        assert "host service answered" in reply
        apply(cluster, {**pod("kapi", ["kapi"]), "spec": {**pod("kapi", ["kapi"])["spec"], "nodeName": WORKERS[1]}})
        wait_for(lambda: get(cluster, "pod", "kapi")["status"]["phase"] == "Succeeded", what="kapi to finish")
        assert "/version -> 200 OK" in kubectl(cluster, "logs", "kapi")
    finally:
        server.shutdown()
        server.server_close()


def test_draining_a_replicas_node_fails_no_request(cluster, served):
    victim = placement(cluster)
    node = next(iter(victim.values()))
    with Poller(served, interval=0.05) as client:
        client.wait_for(20)
        started = time.monotonic()
        kubectl(cluster, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s", timeout=180)
        # The replacement is ready on the other worker and the client kept working throughout.
        wait_for(lambda: len(placement(cluster)) == 2 and node not in placement(cluster).values(), timeout=120,
                 what="a second ready replica off the drained node")  # fmt: skip
        time.sleep(2)
    kubectl(cluster, "uncordon", node)
    outcome = client.summary(since=started)
    record("disruption", what="kubectl drain of a replica's node (test pods, tests/sandbox/test_nodes.py)", **outcome)
    assert outcome["requests"] > 100, outcome
    assert outcome["failed"] == 0, (outcome, client.failures(started)[:5])


def test_a_lost_node_stops_getting_requests_and_its_pod_is_replaced_elsewhere(cluster, served):
    # Spread again after the drain (a rolling restart would weigh the old pods too): none, then two.
    kubectl(cluster, "scale", "deployment/web", "--replicas=0")
    wait_for(lambda: not get(cluster, "pods", "-l", "app=web")["items"], timeout=60, what="no web pod")
    kubectl(cluster, "scale", "deployment/web", "--replicas=2")
    kubectl(cluster, "rollout", "status", "deployment/web", "--timeout=120s")
    where = placement(cluster)
    assert sorted(where.values()) == sorted(WORKERS), where
    lost = WORKERS[1]
    with Poller(served, interval=0.05) as client:
        client.wait_for(20)
        started = time.monotonic()
        cluster["kube"].lose_node(lost)

        def replaced() -> bool:
            now = placement(cluster)
            return len(now) == 2 and set(now.values()) == {WORKERS[0]}

        wait_for(replaced, timeout=GRACE + TOLERATE + 90, what="the lost node's pod replaced on the other worker")
        replaced_after = round(time.monotonic() - started, 1)
        # Watched until QUIET s have passed without a failure (or the deadline), however soon the pod was replaced.
        while time.monotonic() < started + LAST_FAILURE_BOUND + QUIET:
            last = max((o.at for o in client.failures(started)), default=started)
            if time.monotonic() - last >= QUIET:
                break
            time.sleep(1)
    outcome = client.summary(since=started)
    node = get(cluster, "node", lost)
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "Unknown"
    record("disruption", what=f"a worker lost (wire cut, every process killed), node grace {GRACE} s, "
           f"toleration {TOLERATE} s (test pods, tests/sandbox/test_nodes.py)", replaced_after_s=replaced_after,
           **outcome)  # fmt: skip
    # Requests fail while the dead pod is an endpoint (until the node is declared lost: the grace period, plus the
    # controller's 2 s period and kube-proxy's resync), then stop for good: the watch ends with QUIET s of nothing
    # but successes. A few connections still time out after kube-proxy dropped the pod from its rules (seen up to
    # ~35 s after, in one run of three; not explained yet, docs/reliability.md), so the last failure is only held to
    # LAST_FAILURE_BOUND and recorded.
    assert outcome["last_failure_s"] is None or outcome["last_failure_s"] <= LAST_FAILURE_BOUND, outcome
    last = max((o.at for o in client.failures(started)), default=started)
    tail = [o for o in client.outcomes if o.at > last]
    assert len(tail) > 100 and tail[-1].at - last >= QUIET - 2, (outcome, len(tail))


def test_a_lost_node_comes_back_ready_and_takes_pods_again(cluster, served):
    lost = WORKERS[1]
    cluster["kube"].restore_node(lost)

    def ready() -> bool:
        node = get(cluster, "node", lost)
        return {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"

    wait_for(ready, timeout=120, what=f"{lost} Ready again")
    # The pod that was on it is gone for good once its kubelet reports; a new one may run there.
    wait_for(lambda: all(p["spec"]["nodeName"] == WORKERS[0] for p in get(cluster, "pods", "-l", "app=web")["items"]),
             timeout=120, what="the lost node's old pod to be gone")  # fmt: skip
    apply(
        cluster, {**pod("back", ["echo", "back"]), "spec": {**pod("back", ["echo", "back"])["spec"], "nodeName": lost}}
    )
    wait_for(lambda: get(cluster, "pod", "back")["status"]["phase"] == "Succeeded", what="a pod on the restored node")
    assert "back" in kubectl(cluster, "logs", "back")


def test_up_of_a_running_cluster_starts_again_what_had_died(cluster):
    """A crashed kubelet and scheduler (SIGKILL): `up` (revive) starts just those, and the node reports again."""
    kube: KubeCluster = cluster["kube"]
    assert kube.revive() == []  # all alive: nothing started
    worker = WORKERS[0]
    for key in (f"{worker}/kubelet", "kube-scheduler"):
        os.kill(kube.pids()[key], signal.SIGKILL)
    wait_for(lambda: not kube._alive(f"{worker}/kubelet") and not kube._alive("kube-scheduler"), timeout=30,
             what="the killed processes gone")  # fmt: skip
    revived_at = time.time()
    assert sorted(kube.revive()) == sorted(["kube-scheduler", f"{worker}/kubelet"])

    def renewed() -> bool:  # the new kubelet renews its node's Lease
        lease = get(cluster, "lease", "-n", "kube-node-lease", worker)["spec"]["renewTime"]
        stamp = datetime.datetime.strptime(lease[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.UTC)
        return stamp.timestamp() > revived_at

    wait_for(renewed, timeout=60, what=f"{worker}'s Lease renewed by its new kubelet")
    kube.wait_ready()
    assert kube.revive() == []


def test_down_leaves_nothing_behind_and_up_shrinks_to_fewer_workers(cluster):
    kube: KubeCluster = cluster["kube"]
    kube.stop()
    assert not kube.fabric.path.exists()
    assert not any(rt.ns.exists() for rt in kube.runtimes)
    assert not [root for root in hierarchies() for rt in kube.runtimes if (root / rt.ns.cgroup).exists()]
    assert host_state(cluster["names"]) == cluster["before"]
    smaller = KubeCluster(SandboxConfig(state_dir=kube.config.state_dir, pod_cidr=POD_CIDR, nodes=1, **PORTS),
                          images=[pins.PAUSE_IMAGE, pins.TESTTOOL_IMAGE])  # fmt: skip
    cluster["kube"] = smaller
    smaller.start()
    smaller.wait_ready()
    names = {n["metadata"]["name"] for n in get(cluster, "nodes")["items"]}
    assert wait_for(lambda: {n["metadata"]["name"] for n in get(cluster, "nodes")["items"]} == {NODE_NAME, WORKERS[0]},
                    what="the retired worker's Node to go"), names  # fmt: skip
    assert not (kube.base / "workers" / WORKERS[1]).exists()
    assert json.loads(smaller.nodes_file.read_text())["workers"] == 1
