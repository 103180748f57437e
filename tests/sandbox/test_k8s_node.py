"""The process kubelet and controllers: Deployments, Jobs and Services running real processes.

Needs root and iproute2 (network and mount namespaces), as CI has; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from sandbox.k8s.apiserver import ApiServer, kubeconfig
from sandbox.k8s.controllers import ControllerManager
from sandbox.k8s.images import ImageTable
from sandbox.k8s.kubelet import Kubelet
from sandbox.k8s.store import Store

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"), reason="the sandbox kubelet needs root and iproute2"
)
PYTHON_IMAGE = f"python:{sys.version_info.major}.{sys.version_info.minor}"
TOKEN = "node-test"


@pytest.fixture
def node(tmp_path: Path):
    from sandbox.k8s.runtime import NodeNetwork  # noqa: PLC0415 - only where the module can run

    store = Store()
    server = ApiServer(("127.0.0.1", 0), store, TOKEN)
    network = NodeNetwork("t" + uuid.uuid4().hex[:5], "10.214.0.0/16")
    network.up()
    kubelet = Kubelet(store, network, tmp_path, ImageTable.load(None), backoff=0.5)
    server.kubelet = kubelet
    manager = ControllerManager(store, network, kubelet, tmp_path, interval=0.1)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    manager.start()
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig(f"http://127.0.0.1:{server.server_address[1]}", TOKEN)))
    api = config.new_client_from_config(config_file=str(path))
    try:
        yield {"api": api, "store": store, "network": network, "dir": tmp_path}
    finally:
        manager.stop()
        network.down()
        server.shutdown()
        server.server_close()
    assert network.name not in os.popen("ip netns list").read()  # noqa: S605 - fixed command


def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AttributeError, TypeError, IndexError) as exc:  # status not written yet
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def http_server_deployment(name: str, replicas: int = 2, env_value: str = "1", command: list | None = None) -> dict:
    container = {
        "name": "web",
        "image": PYTHON_IMAGE,
        # 0.0.0.0 inside the pod's own network namespace: its pod IP, as a container would listen.
        "command": command or ["python3", "-m", "http.server", "8080", "--bind", "0.0.0.0"],  # noqa: S104
        "env": [{"name": "GENERATION", "value": env_value}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def service(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def available(apps: client.AppsV1Api, name: str, replicas: int) -> bool:
    dep = apps.read_namespaced_deployment(name, "default")
    s = dep.status
    # The predicate kubernetes.core's `wait: true` uses for Deployments.
    return bool(
        s
        and s.replicas == replicas
        and s.available_replicas == replicas
        and s.observed_generation == dep.metadata.generation
        and not s.unavailable_replicas
    )


def service_url(node: dict, name: str, port: int = 80) -> str | None:
    registry = node["dir"] / "services.json"
    if not registry.exists():
        return None
    entry = json.loads(registry.read_text()).get(f"default/{name}", {}).get(str(port))
    return f"http://{entry}" if entry else None


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback sandbox
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_deployment_becomes_available_behind_its_service(node):
    core, apps = client.CoreV1Api(node["api"]), client.AppsV1Api(node["api"])
    core.create_namespaced_service("default", service("web"))
    apps.create_namespaced_deployment("default", http_server_deployment("web"))
    wait_for(lambda: available(apps, "web", 2), what="2 available replicas")
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert len(pods) == 2
    assert len({p.status.pod_ip for p in pods}) == 2  # each pod its own IP, both on port 8080
    assert all(p.status.phase == "Running" and p.status.container_statuses[0].ready for p in pods)
    url = wait_for(lambda: service_url(node, "web"), what="service address")
    assert get(url) == 200
    conditions = {c.type: c.status for c in apps.read_namespaced_deployment("web", "default").status.conditions}
    assert conditions == {"Available": "True", "Progressing": "True"}


def test_wrong_command_crash_loops_and_never_becomes_available(node):
    apps, core = client.AppsV1Api(node["api"]), client.CoreV1Api(node["api"])
    apps.create_namespaced_deployment(
        "default", http_server_deployment("broken", 1, command=["python3", "-c", "raise SystemExit(3)"])
    )

    def crash_looping():
        pods = core.list_namespaced_pod("default", label_selector="app=broken").items
        statuses = [p.status.container_statuses[0] for p in pods if p.status and p.status.container_statuses]
        return [s for s in statuses if s.restart_count >= 2 and s.last_state.terminated] or None

    [status] = wait_for(crash_looping, what="restarts")
    assert status.last_state.terminated.exit_code == 3
    assert not available(apps, "broken", 1)
    dep = apps.read_namespaced_deployment("broken", "default")
    assert {c.type: c.reason for c in dep.status.conditions}["Available"] == "MinimumReplicasUnavailable"


def test_missing_image_and_non_root_violation_are_reported(node):
    core = client.CoreV1Api(node["api"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nope"},
        "spec": {"containers": [{"name": "c", "image": "example.com/nothing:1.0"}]},
    }
    core.create_namespaced_pod("default", pod)
    root = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rooty"},
        "spec": {
            "securityContext": {"runAsNonRoot": True},
            "containers": [{"name": "c", "image": PYTHON_IMAGE, "command": ["sleep", "30"]}],
        },
    }
    core.create_namespaced_pod("default", root)

    def reason(name):
        statuses = core.read_namespaced_pod(name, "default").status.container_statuses
        return statuses and statuses[0].state.waiting and statuses[0].state.waiting.reason

    assert wait_for(lambda: reason("nope"), what="image error") == "ErrImagePull"
    assert wait_for(lambda: reason("rooty"), what="config error") == "CreateContainerConfigError"


def test_rolling_update_with_max_unavailable_zero_drops_no_request(node):
    core, apps = client.CoreV1Api(node["api"]), client.AppsV1Api(node["api"])
    core.create_namespaced_service("default", service("roll"))
    apps.create_namespaced_deployment("default", http_server_deployment("roll"))
    wait_for(lambda: available(apps, "roll", 2), what="first rollout")
    url = wait_for(lambda: service_url(node, "roll"), what="service address")
    old_pods = {p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=roll").items}

    results: list[int] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                results.append(get(url))
            except OSError:
                results.append(0)
            time.sleep(0.1)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        apps.patch_namespaced_deployment("roll", "default", http_server_deployment("roll", env_value="2"))
        wait_for(
            lambda: (
                available(apps, "roll", 2)
                and not (
                    old_pods
                    & {p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=roll").items}
                )
            ),
            timeout=60,
            what="rolled pods",
        )
        time.sleep(1)
    finally:
        stop.set()
        poller.join()
    assert len(results) > 20
    assert set(results) == {200}, f"{results.count(200)} ok of {len(results)}"


def test_jobs_complete_or_fail_after_backoff_limit(node):
    batch, core = client.BatchV1Api(node["api"]), client.CoreV1Api(node["api"])

    def job(name, code, backoff=1):
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": backoff,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": PYTHON_IMAGE,
                                "command": ["python3", "-c", f"print('ran'); raise SystemExit({code})"],
                            }
                        ],
                    }
                },
            },
        }

    batch.create_namespaced_job("default", job("ok", 0))
    batch.create_namespaced_job("default", job("bad", 1))

    def condition(name):
        status = batch.read_namespaced_job(name, "default").status
        return next(
            (c.type for c in status.conditions or [] if c.status == "True" and c.type in ("Complete", "Failed")), None
        )

    assert wait_for(lambda: condition("ok"), what="ok job") == "Complete"
    assert batch.read_namespaced_job("ok", "default").status.succeeded == 1
    assert wait_for(lambda: condition("bad"), what="bad job") == "Failed"
    failed = batch.read_namespaced_job("bad", "default").status
    assert failed.failed == 2 and {c.reason for c in failed.conditions} == {"BackoffLimitExceeded"}
    [pod] = [p for p in core.list_namespaced_pod("default").items if p.metadata.name.startswith("ok-")]
    assert core.read_namespaced_pod_log(pod.metadata.name, "default").strip() == "ran"


def test_security_context_volumes_and_env_are_honoured(node):
    core = client.CoreV1Api(node["api"])
    core.create_namespaced_secret("default", {"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "conf"}, "data": {"LEVEL": "debug"}})
    script = (
        "import os, json\n"
        "out = {'uid': os.getuid(), 'password': os.environ.get('DB_PASSWORD'), 'level': os.environ.get('LEVEL'),"
        " 'ip': os.environ.get('POD_IP'), 'secret_file': open('/etc/creds/password').read()}\n"
        "open('/scratch/ok', 'w').write('x'); out['scratch'] = True\n"
        "try:\n    open('/var/tmp/denied', 'w')\nexcept OSError as e:\n    out['rootfs'] = e.errno\n"
        "print(json.dumps(out), flush=True)\n"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "secure"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534},
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "creds", "secret": {"secretName": "creds"}}],
            "containers": [
                {
                    "name": "c",
                    "image": PYTHON_IMAGE,
                    "command": ["python3", "-c", script],
                    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                    "env": [
                        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    ],
                    "envFrom": [{"configMapRef": {"name": "conf"}}],
                    "volumeMounts": [
                        {"name": "scratch", "mountPath": "/scratch"},
                        {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
                    ],
                }
            ],
        },
    }
    core.create_namespaced_pod("default", pod)
    wait_for(lambda: core.read_namespaced_pod("secure", "default").status.phase == "Succeeded", what="pod success")
    result = json.loads(core.read_namespaced_pod_log("secure", "default").strip().splitlines()[-1])
    ip = core.read_namespaced_pod("secure", "default").status.pod_ip
    assert result == {"uid": 65534, "password": "s3cret", "level": "debug", "ip": ip, "secret_file": "s3cret",
                      "scratch": True, "rootfs": 30}  # fmt: skip  # 30 = EROFS


def test_liveness_failure_restarts_the_container(node):
    core = client.CoreV1Api(node["api"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "unhealthy"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": PYTHON_IMAGE,
                    "command": ["sleep", "300"],
                    "livenessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1, "failureThreshold": 2},
                }
            ]
        },
    }
    core.create_namespaced_pod("default", pod)
    wait_for(
        lambda: core.read_namespaced_pod("unhealthy", "default").status.container_statuses[0].restart_count >= 1,
        what="a restart",
    )
