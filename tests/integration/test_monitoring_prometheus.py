"""A real Prometheus scrapes the deployed MLflow: the monitoring role's plain scrape job and rules (the path for
clusters without the Prometheus Operator), loaded unchanged by Prometheus 3.16 built from its Go module and run as
a pod in the sandbox's Kubernetes with a service account, discovering the MLflow pods through the API server as it
would in any cluster.

After some traffic: both MLflow pods are targets `up`, every dashboard panel's query has data (those that need
kube-state-metrics or cAdvisor, which the sandbox does not run, are listed as skipped with the reason), and scaling
MLflow to zero makes MLflowDown go pending, then firing.

Not covered here: the Prometheus Operator reconciling the ServiceMonitor into a Prometheus (its CRDs validate the
role's objects in test_monitoring.py; the operator itself is not built into the sandbox yet).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from sandbox.images import PROMETHEUS_IMAGE
from tests.helpers import ROOT, run_role
from tests.integration.test_mlflow_k8s import admin_conn, call, drop_stores, role_vars, s3_client
from tests.kube import api, delete_namespace, kubectl, service_base

pytestmark = pytest.mark.integration
DASHBOARD = ROOT / "roles/monitoring/files/mlflow-dashboard.json"
# Panels whose series the sandbox cannot have, and why.
SKIPPED = {
    "Replicas ready / desired": "kube-state-metrics is not installed in the sandbox",
    "Container restarts (1h)": "kube-state-metrics is not installed in the sandbox",
    "CPU per pod against its limit": "cAdvisor series (kubelet /metrics/cadvisor) and kube-state-metrics are not scraped",
    "Memory per pod against its limit": "cAdvisor series (kubelet /metrics/cadvisor) and kube-state-metrics are not scraped",
}


@pytest.fixture(scope="module")
def deployment(sandbox_facts, tmp_path_factory):
    """MLflow (2 replicas) deployed by mlflow_k8s, and the monitoring role's plain files rendered for it."""
    suffix = uuid.uuid4().hex[:6]
    stores = {"db": f"mp_{suffix}", "user": f"mp_{suffix}", "password": f"pw-{suffix}-Prom", "bucket": f"mp-{suffix}",
              "ns": f"mp-{suffix}", "prom_ns": f"prom-{suffix}"}  # fmt: skip
    conn = admin_conn(sandbox_facts)
    with conn.cursor() as cur:
        cur.execute(f"create role {stores['user']} login password %s", (stores["password"],))
        cur.execute(f"create database {stores['db']} owner {stores['user']}")
    client = s3_client(sandbox_facts)
    client.create_bucket(Bucket=stores["bucket"])
    scrape_dir = tmp_path_factory.mktemp("scrape")
    try:
        result = run_role("mlflow_k8s", role_vars(sandbox_facts, stores, mlflow_k8s_prestop_sleep=0))
        assert not result.failed, result.output[-4000:]
        result = run_role("monitoring", {
            "monitoring_namespace": stores["ns"], "monitoring_kubeconfig": sandbox_facts["kubernetes"]["kubeconfig"],
            "monitoring_scrape_config_dir": str(scrape_dir), "monitoring_scrape_interval": "5s",
            "monitoring_scrape_timeout": "4s", "monitoring_alert_target_down_for": "20s",
        })  # fmt: skip
        assert not result.failed, result.output[-4000:]
        yield {**stores, "scrape_dir": scrape_dir}
    finally:
        for ns in (stores["ns"], stores["prom_ns"]):
            delete_namespace(sandbox_facts, ns)
        kubectl(sandbox_facts, "delete", "clusterrolebinding,clusterrole", f"prometheus-{suffix}", "--ignore-not-found")
        drop_stores(conn, client, stores["bucket"], [stores["db"]], stores["user"])


def prometheus_objects(ns: str, suffix: str, scrape_dir: Path) -> list[dict]:
    """Prometheus as users run it without the operator: the role's scrape job and rule file, unchanged."""
    job = yaml.safe_load((scrape_dir / "prometheus-scrape-job.yml").read_text())
    config = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
              "rule_files": ["/etc/prometheus/prometheus-rules.yml"], "scrape_configs": job["scrape_configs"]}  # fmt: skip
    labels = {"app.kubernetes.io/name": "prometheus"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": f"prometheus-{suffix}"},
         "rules": [{"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"prometheus-{suffix}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"prometheus-{suffix}"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus", "namespace": ns},
         "data": {"prometheus.yml": yaml.safe_dump(config),
                  "prometheus-rules.yml": (scrape_dir / "prometheus-rules.yml").read_text()}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prometheus", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"serviceAccountName": "prometheus",
                      "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534},
                      "containers": [{
                          "name": "prometheus", "image": PROMETHEUS_IMAGE, "imagePullPolicy": "Never",
                          "args": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/data",
                                   "--web.listen-address=:9090"],
                          "ports": [{"name": "web", "containerPort": 9090}],
                          "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 2},
                          "resources": {"limits": {"memory": "512Mi"}},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus"},
                                           {"name": "data", "mountPath": "/data"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "prometheus"}},
                                  {"name": "data", "emptyDir": {}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "prometheus", "namespace": ns},
         "spec": {"selector": labels, "ports": [{"name": "web", "port": 9090, "targetPort": "web"}]}},
    ]  # fmt: skip


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback sandbox
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def get_json(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as response:  # noqa: S310 - loopback sandbox
        return json.loads(response.read())


def wait_for(what: str, probe, timeout: float = 180, every: float = 3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def prometheus(sandbox_facts, deployment, tmp_path_factory):
    ns = deployment["prom_ns"]
    api(sandbox_facts, "/api/v1/namespaces", method="POST", body={"metadata": {"name": ns}})
    manifest = tmp_path_factory.mktemp("prometheus") / "prometheus.json"
    items = prometheus_objects(ns, ns.removeprefix("prom-"), deployment["scrape_dir"])
    manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    proc = kubectl(sandbox_facts, "apply", "-f", str(manifest))
    assert proc.returncode == 0, proc.stderr
    proc = kubectl(sandbox_facts, "rollout", "status", "-n", ns, "deployment/prometheus", "--timeout=180s", timeout=200)
    assert proc.returncode == 0, proc.stdout + proc.stderr + kubectl(sandbox_facts, "describe", "pods", "-n", ns).stdout
    base = service_base(sandbox_facts, ns, "prometheus")
    wait_for("Prometheus ready", lambda: urllib.request.urlopen(base + "/-/ready", timeout=5).status == 200)  # noqa: S310
    return base


def traffic(facts: dict, ns: str, rounds: int = 20) -> None:
    for _ in range(rounds):
        status, _ = call(facts, ns, "/api/2.0/mlflow/experiments/search", "POST", {"max_results": 5})
        assert status == 200
        call(facts, ns, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=nope")  # a 404


def test_both_mlflow_pods_are_targets_up(sandbox_facts, deployment, prometheus):
    traffic(sandbox_facts, deployment["ns"])

    def targets_up() -> list[dict]:
        active = get_json(prometheus, "/api/v1/targets?state=active")["data"]["activeTargets"]
        mine = [
            t for t in active if t["labels"].get("job") == "mlflow" and t["labels"].get("namespace") == deployment["ns"]
        ]
        return mine if len(mine) == 2 and all(t["health"] == "up" for t in mine) else []

    targets = wait_for("both MLflow pods scraped up", targets_up)
    pods = {p["metadata"]["name"] for p in api(sandbox_facts, f"/api/v1/namespaces/{deployment['ns']}/pods?labelSelector="
                                              "app.kubernetes.io%2Fcomponent%3Dtracking-server")["items"]}  # fmt: skip
    assert {t["labels"]["pod"] for t in targets} == pods
    assert all(t["scrapeUrl"].endswith(":5000/metrics") for t in targets)


def test_every_dashboard_panel_query_has_data(sandbox_facts, deployment, prometheus):
    board = json.loads(DASHBOARD.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert set(SKIPPED) <= {p["title"] for p in panels}, "a skipped panel no longer exists"
    traffic(sandbox_facts, deployment["ns"])
    # Two scrapes after the traffic, so that rate() has two points of it.
    time.sleep(12)
    empty, checked = [], 0
    for panel in panels:
        if panel["title"] in SKIPPED:
            continue
        for target in panel["targets"]:
            expr = (target["expr"].replace("$namespace", deployment["ns"]).replace("$job", "mlflow")
                    .replace("$__rate_interval", "1m"))  # fmt: skip
            checked += 1
            if not wait_for(f"{panel['title']}: {expr}", lambda e=expr: query(prometheus, e), timeout=60):
                empty.append((panel["title"], expr))
    assert empty == []
    assert checked >= 7
    (version,) = query(
        prometheus,
        f'count by (mlflow_version) (mlflow_http_request_duration_seconds_count{{namespace="{deployment["ns"]}"}})',
    )
    assert version["metric"]["mlflow_version"] == "3.17.2"


def test_dashboard_picture(sandbox_facts, deployment, prometheus):
    """Only with MLFLOW_DASHBOARD_PICTURE=<png> (scripts/dashboard-picture.sh): a few minutes of uneven traffic, then
    every panel drawn from this Prometheus' answers to the panel's own queries."""
    out = os.environ.get("MLFLOW_DASHBOARD_PICTURE")
    if not out:
        pytest.skip("MLFLOW_DASHBOARD_PICTURE not set (scripts/dashboard-picture.sh sets it)")
    from tests.integration.dashboard_picture import draw  # noqa: PLC0415

    started = time.monotonic()
    while time.monotonic() - started < 240:
        minute = int((time.monotonic() - started) // 60)
        traffic(sandbox_facts, deployment["ns"], rounds=5 * (1 + minute % 3))
        time.sleep(2)
    time.sleep(12)

    def substitute(expr: str) -> str:
        return expr.replace("$namespace", deployment["ns"]).replace("$job", "mlflow").replace("$__rate_interval", "1m")

    draw(prometheus, json.loads(DASHBOARD.read_text()), substitute, ROOT / out, minutes=6, skipped=SKIPPED)
    assert (ROOT / out).stat().st_size > 10_000


def test_scaled_to_zero_mlflow_down_goes_pending_then_firing(sandbox_facts, deployment, prometheus):
    rules = get_json(prometheus, "/api/v1/rules")["data"]["groups"]
    assert {r["name"] for g in rules for r in g["rules"]} >= {"MLflowDown", "MLflowTargetDown", "MLflowHighErrorRatio"}
    proc = kubectl(sandbox_facts, "scale", "-n", deployment["ns"], "deployment/mlflow", "--replicas=0")
    assert proc.returncode == 0, proc.stderr

    def state() -> str:
        alerts = get_json(prometheus, "/api/v1/alerts")["data"]["alerts"]
        return next((a["state"] for a in alerts if a["labels"]["alertname"] == "MLflowDown"), "")

    seen = [wait_for("MLflowDown pending", lambda: state() if state() in ("pending", "firing") else "", timeout=120)]
    seen.append(wait_for("MLflowDown firing", lambda: state() if state() == "firing" else "", timeout=120, every=2))
    assert seen[0] == "pending", f"MLflowDown fired without going pending first: {seen}"
