"""The sandbox's real Kubernetes (sandbox/kubecluster.py): the pinned upstream release, as kubectl sees it.

One cluster for the module, on ports and a pod network of its own, with the small test images only (pause and
the static test tool); what Kubernetes itself must do, checked with the kubectl the sandbox built. The last test
stops it and checks that nothing is left on the host, then starts it again on the same state.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sandbox import audit, build, pins
from sandbox.config import SandboxConfig
from sandbox.kubecluster import NODE_NAME, KubeCluster
from sandbox.node import hierarchies
from tests.sandbox.kube_helpers import apply, get, host_state, kubectl, pod, wait_for

pytestmark = pytest.mark.skipif(not KubeCluster.node_supported(), reason="needs root, iproute2 and iptables")
# Apart from every other sandbox's (tests/sandbox/test_sandbox.py 264xx, tests/demo 275xx, molecule 276xx, bench 277xx).
PORTS = {"pg_port": 26132, "s3_port": 26133, "k8s_port": 26143, "weed_port_base": 26150}
POD_CIDR = "10.218.0.0/16"
TOOL = pins.TESTTOOL_IMAGE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    config = SandboxConfig(state_dir=tmp_path_factory.mktemp("cluster") / "state", pod_cidr=POD_CIDR, nodes=0, **PORTS)
    kube = KubeCluster(config, images=[pins.PAUSE_IMAGE, TOOL])
    names = (str(config.state_dir), kube.short_name)
    before = host_state(names)
    try:
        kube.start()
        kube.wait_ready()
        yield {"kube": kube, "before": before, "names": names}
    finally:
        kube.stop()


def test_the_server_is_the_pinned_release_and_the_node_is_ready(cluster):
    version = json.loads(kubectl(cluster, "version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == build.k8s_version()
    assert version["clientVersion"]["gitVersion"] == build.k8s_version()
    node = get(cluster, "node", NODE_NAME)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://2.")
    assert node["status"]["addresses"][0]["address"] == cluster["kube"].node_ip


def test_the_kubelet_neither_evicts_nor_deletes_images_when_the_hosts_disk_fills(cluster):
    """What the running kubelet reports it took from sandbox/nodeconf.py (its /configz, through the API server as
    kubectl reads it): disk thresholds off and image GC off, so the locally built images stay (a CI run lost them)."""
    config = json.loads(kubectl(cluster, "get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/configz"))["kubeletconfig"]
    disk = {k: v for k, v in config["evictionHard"].items() if k.startswith(("nodefs.", "imagefs."))}
    assert disk == dict.fromkeys(["nodefs.available", "nodefs.inodesFree", "imagefs.available", "imagefs.inodesFree"],
                                 "0%"), config["evictionHard"]  # fmt: skip
    assert config["imageGCHighThresholdPercent"] == 100 and config.get("imageMaximumGCAge", "0s") == "0s", config


def test_the_admin_is_a_certificate_identity_bound_to_cluster_admin_and_rbac_holds_for_others(cluster):
    whoami = json.loads(kubectl(cluster, "auth", "whoami", "-o", "json"))
    assert whoami["status"]["userInfo"]["username"] == "kubernetes-admin"
    assert "kubeadm:cluster-admins" in whoami["status"]["userInfo"]["groups"]
    denied = cluster["kube"].kubectl("auth", "can-i", "list", "secrets", "--as", "system:serviceaccount:default:x")
    assert denied.stdout.strip() == "no"
    # TLS with the sandbox's CA: the kubeconfig carries it and the admin's client certificate.
    config = Path(cluster["kube"].kubeconfig).read_text()
    assert "certificate-authority-data" in config and "client-certificate-data" in config and "token" not in config


def test_a_pod_logs_execs_describes_and_serves_through_its_service_from_the_host(cluster):
    apply(cluster, pod("web", ["serve", ":8080"], restart="Always"),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})  # fmt: skip
    kubectl(cluster, "wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
    assert "serving on :8080" in kubectl(cluster, "logs", "web")
    assert "hello" in kubectl(cluster, "exec", "web", "--", "/testtool", "echo", "hello")
    described = kubectl(cluster, "describe", "pod", "web")
    assert "Started" in described and TOOL in described
    url = cluster["kube"].service_url("default", "web")
    assert cluster["kube"].service_url("default", "web") == url  # one forwarder per Service port
    with urllib_open(url) as answer:
        assert answer == b"hello from web\n"


def urllib_open(url: str) -> contextlib.AbstractContextManager[bytes]:
    import urllib.request  # noqa: PLC0415

    @contextlib.contextmanager
    def opened():
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the sandbox's loopback URL
            yield response.read()

    return opened()


def test_a_pod_reaches_the_apiserver_through_the_kubernetes_service(cluster):
    apply(cluster, pod("kapi", ["kapi"]))
    wait_for(lambda: get(cluster, "pod", "kapi")["status"]["phase"] == "Succeeded", what="kapi to finish")
    logs = kubectl(cluster, "logs", "kapi")
    assert "/version -> 200 OK" in logs and "/pods -> 403 Forbidden" in logs  # its service account may not list


def test_pods_reach_the_hosts_services_at_the_node_address(cluster):
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
        gateway = cluster["kube"].gateway
        apply(cluster, pod("fetch", ["fetch", f"http://{gateway}:{PORTS['s3_port']}/"]))
        wait_for(lambda: get(cluster, "pod", "fetch")["status"]["phase"] == "Succeeded", what="fetch to finish")
        assert "host service answered" in kubectl(cluster, "logs", "fetch")
    finally:
        server.shutdown()
        server.server_close()


def test_a_container_over_its_memory_limit_is_oomkilled(cluster):
    apply(cluster, pod("hog", ["alloc", "256"], memory="64Mi"))

    def terminated() -> dict:
        state = get(cluster, "pod", "hog")["status"]["containerStatuses"][0]["state"]
        return state.get("terminated")

    ended = wait_for(terminated, what="the hog to be killed")
    assert ended["reason"] == "OOMKilled" and ended["exitCode"] == 137


def test_deleting_a_deployment_garbage_collects_its_replicaset_and_pods(cluster):
    template = pod("gc", ["sleep"], restart="Always", labels={"app": "gc"})
    apply(cluster, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gc"},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "gc"}},
                             "template": {"metadata": template["metadata"], "spec": template["spec"]}}})  # fmt: skip
    kubectl(cluster, "rollout", "status", "deployment/gc", "--timeout=120s")
    assert len(get(cluster, "replicasets", "-l", "app=gc")["items"]) == 1
    kubectl(cluster, "delete", "deployment", "gc", "--wait=true")
    wait_for(lambda: not get(cluster, "replicasets,pods", "-l", "app=gc")["items"], what="garbage collection")


def test_a_job_is_retried_up_to_its_backoff_limit(cluster):
    spec = pod("failing", ["fail", "3"], restart="Never")["spec"]
    apply(cluster, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "failing"},
                    "spec": {"backoffLimit": 1, "template": {"spec": spec}}})  # fmt: skip

    def failed() -> bool:
        conditions = get(cluster, "job", "failing")["status"].get("conditions", [])
        return any(c["type"] == "Failed" and c["status"] == "True" for c in conditions)

    wait_for(failed, timeout=180, what="the Job to fail")
    pods = get(cluster, "pods", "-l", "job-name=failing")["items"]
    assert len(pods) == 2  # the first try and one retry (backoffLimit 1)
    assert {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods} == {3}
    assert get(cluster, "job", "failing")["status"]["failed"] == 2


def test_the_audit_log_records_the_admins_requests(cluster):
    start = time.time()
    name = f"audit-{uuid.uuid4().hex[:6]}"
    kubectl(cluster, "create", "configmap", name, "--from-literal=a=b")
    kubectl(cluster, "get", "configmap", name)
    kubectl(cluster, "create", "configmap", name + "-dry", "--from-literal=a=b", "--dry-run=server")
    log = cluster["kube"].audit_log
    assert audit.writes(log, start) == ["POST /api/v1/namespaces/default/configmaps"]
    seen = [(e["verb"], e["name"], e["dry_run"]) for e in audit.entries(log, start) if e["resource"] == "configmaps"]
    assert seen == [("create", name, False), ("get", name, False), ("create", name + "-dry", True)]
    assert audit.writes(log, time.time()) == []


def test_down_leaves_nothing_behind_and_up_keeps_the_objects(cluster):
    kube: KubeCluster = cluster["kube"]
    kubectl(cluster, "create", "configmap", "survivor", "--from-literal=kept=yes")
    kube.stop()
    assert not kube.nodes.exists()
    assert not kube.is_running()
    assert not [root for root in hierarchies() if (root / kube.nodes.cgroup).exists()]
    assert not [pid for pid in kube.pids().values() if Path(f"/proc/{pid}").exists()]
    assert host_state(cluster["names"]) == cluster["before"]
    kube.start()
    kube.wait_ready()
    assert get(cluster, "configmap", "survivor")["data"] == {"kept": "yes"}
