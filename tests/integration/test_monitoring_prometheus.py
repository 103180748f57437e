"""The monitoring role against the real things: the Prometheus Operator reconciling its ServiceMonitor and
PrometheusRule into a running Prometheus, and, for clusters without the operator, a plain Prometheus loading the
role's scrape job and rule file unchanged. Both scrape the MLflow that mlflow_k8s deployed, with basic-auth on.

One MLflow (2 replicas, basic-auth) serves both:
- first the monitoring role runs with no operator CRDs in the cluster, so it writes the plain scrape job and rules;
  Prometheus 3.16 (built from its Go module) runs them as a Deployment with a service account, discovering the MLflow
  pods through the API server, the scrape password mounted where the job says;
- then the Prometheus Operator's CRDs are installed (its v0.93.0 module), the role runs again and applies the
  ServiceMonitor, the scrape Secret and the PrometheusRule; the operator (built from the same module, its upstream
  RBAC and Deployment manifests) reconciles a `Prometheus` into a StatefulSet with its config-reloader sidecar;
  kube-state-metrics (its upstream manifests) and the kubelet's cAdvisor endpoint are scraped beside MLflow,
  through ServiceMonitors as kube-prometheus has them (tests/integration/monitoring_stack.py).

After some traffic: both MLflow pods are targets `up` in both Prometheus, every dashboard panel's query has data in
the operator's Prometheus, and scaling MLflow to zero makes MLflowDown go pending, then firing, in both.
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

from harness.ansible import MLFLOW_VERSION, ROOT, run_role
from harness.kube import api, delete_namespace, import_images, kubectl, service_base
from harness.stores import admin_conn, drop_stores, s3_client
from sandbox.build import prometheus_operator_crds
from sandbox.pins import ON_DEMAND, PROMETHEUS_IMAGE, older_mlflow_images
from tests.integration import monitoring_stack
from tests.integration.test_mlflow_k8s import call, role_vars

pytestmark = pytest.mark.integration
DASHBOARD = ROOT / "roles/monitoring/files/mlflow-dashboard.json"
# Panels whose series the sandbox cannot have, and why (none: kube-state-metrics and cAdvisor are scraped).
SKIPPED: dict[str, str] = {}
# The role's default monitoring_selector_labels: what a kube-prometheus-stack Prometheus selects.
SELECTOR = {"release": "kube-prometheus-stack"}
ADMIN = ("admin", "Prom-admin-pw-7")


def apply(facts: dict, objects: list[dict], path: Path) -> None:
    path.write_text(json.dumps(monitoring_stack.as_list(objects)))
    proc = kubectl(facts, "apply", "-f", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def monitoring_vars(facts: dict, stores: dict, **overrides: object) -> dict:
    return {"monitoring_namespace": stores["ns"], "monitoring_kubeconfig": facts["kubernetes"]["kubeconfig"],
            "monitoring_scrape_interval": "5s", "monitoring_scrape_timeout": "4s",
            "monitoring_alert_target_down_for": "20s", "monitoring_auth_enabled": True,
            "monitoring_scrape_username": ADMIN[0], "monitoring_scrape_password": ADMIN[1], **overrides}  # fmt: skip


@pytest.fixture(scope="module")
def deployment(sandbox_facts, tmp_path_factory):
    """MLflow (2 replicas, basic-auth) deployed by mlflow_k8s, and the monitoring role's plain files rendered for it
    (no operator CRDs yet)."""
    suffix = uuid.uuid4().hex[:6]
    stores = {"db": f"mp_{suffix}", "auth_db": f"mp_auth_{suffix}", "user": f"mp_{suffix}",
              "password": f"pw-{suffix}-Prom", "bucket": f"mp-{suffix}", "ns": f"mp-{suffix}",
              "prom_ns": f"prom-{suffix}", "op_ns": f"mon-{suffix}", "suffix": suffix, "created": set()}  # fmt: skip
    conn = admin_conn(sandbox_facts)
    with conn.cursor() as cur:
        cur.execute(f"create role {stores['user']} login password %s", (stores["password"],))
        for db in (stores["db"], stores["auth_db"]):
            cur.execute(f"create database {db} owner {stores['user']}")
    client = s3_client(sandbox_facts)
    client.create_bucket(Bucket=stores["bucket"])
    scrape_dir = tmp_path_factory.mktemp("scrape")
    try:
        result = run_role("mlflow_k8s", role_vars(
            sandbox_facts, stores, mlflow_k8s_prestop_sleep=0, mlflow_k8s_auth_enabled=True,
            mlflow_k8s_auth_db_name=stores["auth_db"], mlflow_k8s_auth_admin_password=ADMIN[1],
            mlflow_k8s_flask_secret_key=uuid.uuid4().hex,
            # Where the NetworkPolicy is enforced (not by the sandbox's bridge CNI), both Prometheus must be let in.
            mlflow_k8s_network_policy_ingress_namespaces=[stores["prom_ns"], stores["op_ns"]]))  # fmt: skip
        assert not result.failed, result.output[-4000:]
        result = run_role(
            "monitoring", monitoring_vars(sandbox_facts, stores, monitoring_scrape_config_dir=str(scrape_dir))
        )
        assert not result.failed, result.output[-4000:]
        assert {p.name for p in scrape_dir.iterdir()} == {"prometheus-scrape-job.yml", "prometheus-rules.yml"}
        yield {**stores, "scrape_dir": scrape_dir}
    finally:
        teardown(sandbox_facts, stores)
        conn.close()
        drop_stores(sandbox_facts, stores["bucket"], [stores["db"], stores["auth_db"]], stores["user"])


def teardown(facts: dict, stores: dict) -> None:
    """Removes what the test made, and only that: CRDs and the kubelet Service only when they were not there before."""
    created = stores.get("created", set())
    # The operator puts a finalizer on its Prometheus: delete that while the operator still runs.
    if kubectl(facts, "get", "crd", "prometheuses.monitoring.coreos.com").returncode == 0:
        ns = stores["op_ns"]
        proc = kubectl(facts, "delete", "prometheus", "--all", "-n", ns, "--wait=true", "--timeout=90s", timeout=120)
        if proc.returncode != 0:
            kubectl(facts, "patch", "prometheus", monitoring_stack.PROMETHEUS_NAME, "-n", ns, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')  # fmt: skip
    for ns in (stores["ns"], stores["prom_ns"], stores["op_ns"]):
        delete_namespace(facts, ns)
    names = [f"{name}-{stores['suffix']}" for name in ("prometheus-plain", *monitoring_stack.CLUSTER_SCOPED)]
    kubectl(facts, "delete", "clusterrolebinding,clusterrole", *names, "--ignore-not-found")
    if "kubelet-service" in created:  # what the operator keeps for the kubelet (--kubelet-service)
        kubectl(facts, "delete", "service,endpoints", "kubelet", "-n", "kube-system", "--ignore-not-found")
    if "crds" in created:
        kubectl(
            facts, "delete", "-f", str(prometheus_operator_crds()), "--ignore-not-found", "--wait=true", timeout=180
        )


def plain_prometheus_objects(ns: str, suffix: str, scrape_dir: Path) -> list[dict]:
    """Prometheus as users run it without the operator: the role's scrape job and rule file, unchanged, and the
    scrape password in a Secret mounted where the job's password_file says."""
    job = yaml.safe_load((scrape_dir / "prometheus-scrape-job.yml").read_text())
    password_file = Path(job["scrape_configs"][0]["basic_auth"]["password_file"])
    config = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
              "rule_files": ["/etc/prometheus/config/prometheus-rules.yml"], "scrape_configs": job["scrape_configs"]}  # fmt: skip
    labels = {"app.kubernetes.io/name": "prometheus"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "prometheus", "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": f"prometheus-plain-{suffix}"},
         "rules": [{"apiGroups": [""], "resources": ["pods", "services", "endpoints"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"prometheus-plain-{suffix}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"prometheus-plain-{suffix}"},
         "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prometheus", "namespace": ns},
         "data": {"prometheus.yml": yaml.safe_dump(config),
                  "prometheus-rules.yml": (scrape_dir / "prometheus-rules.yml").read_text()}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "scrape", "namespace": ns},
         "stringData": {password_file.name: ADMIN[1]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "prometheus", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"serviceAccountName": "prometheus",
                      "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534},
                      "containers": [{
                          "name": "prometheus", "image": PROMETHEUS_IMAGE, "imagePullPolicy": "Never",
                          "args": ["--config.file=/etc/prometheus/config/prometheus.yml", "--storage.tsdb.path=/data",
                                   "--web.listen-address=:9090"],
                          "ports": [{"name": "web", "containerPort": 9090}],
                          "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 2},
                          "resources": {"limits": {"memory": "512Mi"}},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/prometheus/config"},
                                           {"name": "scrape", "mountPath": str(password_file.parent), "readOnly": True},
                                           {"name": "data", "mountPath": "/data"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "prometheus"}},
                                  {"name": "scrape", "secret": {"secretName": "scrape"}},
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


def wait_for(what: str, probe, timeout: float = 180, every: float = 3, explain=None):
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
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})" + (f"\n{explain()}" if explain else ""))


def ready(base: str) -> bool:
    return urllib.request.urlopen(base + "/-/ready", timeout=5).status == 200  # noqa: S310 - loopback sandbox


@pytest.fixture(scope="module")
def prometheus(sandbox_facts, deployment, tmp_path_factory):
    """Both Prometheus, started together: {"plain": URL, "operator": URL}."""
    tmp = tmp_path_factory.mktemp("prometheus")
    import_images(sandbox_facts, sorted(ON_DEMAND - set(older_mlflow_images())))
    prom_ns, op_ns, suffix = deployment["prom_ns"], deployment["op_ns"], deployment["suffix"]
    created = deployment["created"]
    if kubectl(sandbox_facts, "get", "service", "kubelet", "-n", "kube-system").returncode != 0:
        created.add("kubelet-service")
    if kubectl(sandbox_facts, "get", "crd", "prometheuses.monitoring.coreos.com").returncode != 0:
        created.add("crds")
    for ns in (prom_ns, op_ns):
        api(sandbox_facts, "/api/v1/namespaces", method="POST", body={"metadata": {"name": ns}})
    apply(sandbox_facts, plain_prometheus_objects(prom_ns, suffix, deployment["scrape_dir"]), tmp / "plain.json")
    # The operator's CRDs appear, and the role's second run takes the operator's path.
    proc = kubectl(sandbox_facts, "apply", "--server-side", "-f", str(prometheus_operator_crds()), timeout=180)
    assert proc.returncode == 0, proc.stderr
    proc = kubectl(sandbox_facts, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    assert proc.returncode == 0, proc.stderr
    result = run_role("monitoring", monitoring_vars(sandbox_facts, deployment))
    assert not result.failed and result.changed, result.output[-4000:]
    stack = [*monitoring_stack.operator_objects(op_ns, suffix),
             *monitoring_stack.kube_state_metrics_objects(op_ns, suffix),
             *monitoring_stack.prometheus_objects(op_ns, suffix, SELECTOR),
             *monitoring_stack.service_monitors(op_ns, SELECTOR)]  # fmt: skip
    apply(sandbox_facts, stack, tmp / "stack.json")
    for ns, what in ((prom_ns, "deployment/prometheus"), (op_ns, "deployment/prometheus-operator"),
                     (op_ns, "deployment/kube-state-metrics")):  # fmt: skip
        proc = kubectl(sandbox_facts, "rollout", "status", "-n", ns, what, "--timeout=180s", timeout=200)
        assert proc.returncode == 0, (
            proc.stdout + proc.stderr + kubectl(sandbox_facts, "describe", "pods", "-n", ns).stdout
        )

    def reconciled() -> bool:
        sts = api(sandbox_facts, f"/apis/apps/v1/namespaces/{op_ns}/statefulsets")["items"]
        return any(s["status"].get("readyReplicas", 0) >= 1 for s in sts)

    wait_for("the operator's Prometheus StatefulSet ready", reconciled, timeout=240,
             explain=lambda: stack_state(sandbox_facts, op_ns))  # fmt: skip
    bases = {"plain": service_base(sandbox_facts, prom_ns, "prometheus"),
             "operator": service_base(sandbox_facts, op_ns, "prometheus")}  # fmt: skip
    for name, base in bases.items():
        wait_for(f"{name} Prometheus ready", lambda b=base: ready(b))
    return bases


def stack_state(facts: dict, ns: str) -> str:
    """What a failed wait shows: the operator's objects, its log and the Prometheus pod's events."""
    return "\n".join([
        kubectl(facts, "get", "prometheus,statefulsets,pods", "-n", ns, "-o", "wide").stdout,
        kubectl(facts, "logs", "-n", ns, "deployment/prometheus-operator", "--tail=30").stdout[-6000:],
        kubectl(facts, "describe", "pods", "-n", ns, "-l", "app.kubernetes.io/name=prometheus").stdout[-3000:],
        kubectl(facts, "logs", "-n", ns, f"prometheus-{monitoring_stack.PROMETHEUS_NAME}-0", "-c", "prometheus",
                "--tail=20").stdout[-3000:],
    ])  # fmt: skip


def traffic(facts: dict, ns: str, rounds: int = 20) -> None:
    for _ in range(rounds):
        status, _ = call(facts, ns, "/api/2.0/mlflow/experiments/search", "POST", {"max_results": 5}, auth=ADMIN)
        assert status == 200
        call(facts, ns, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=nope", auth=ADMIN)  # a 404


def mlflow_targets(base: str, ns: str, job: str) -> list[dict]:
    active = get_json(base, "/api/v1/targets?state=active")["data"]["activeTargets"]
    return [t for t in active if t["labels"].get("job") == job and t["labels"].get("namespace") == ns]


@pytest.mark.parametrize("which", ["plain", "operator"])
def test_both_mlflow_pods_are_targets_up(sandbox_facts, deployment, prometheus, which):
    traffic(sandbox_facts, deployment["ns"])
    # Without credentials MLflow refuses /metrics: an `up` target proves the scrape sends them.
    status, _ = call(sandbox_facts, deployment["ns"], "/metrics")
    assert status == 401

    def targets_up() -> list[dict]:
        mine = mlflow_targets(prometheus[which], deployment["ns"], "mlflow")
        return mine if len(mine) == 2 and all(t["health"] == "up" for t in mine) else []

    targets = wait_for(f"both MLflow pods scraped up by the {which} Prometheus", targets_up)
    pods = {p["metadata"]["name"] for p in api(sandbox_facts, f"/api/v1/namespaces/{deployment['ns']}/pods?labelSelector="
                                              "app.kubernetes.io%2Fcomponent%3Dtracking-server")["items"]}  # fmt: skip
    assert {t["labels"]["pod"] for t in targets} == pods
    assert all(t["scrapeUrl"].endswith(":5000/metrics") for t in targets)
    if which == "operator":
        # The operator's own relabelling: the target came from the role's ServiceMonitor.
        assert {t["scrapePool"] for t in targets} == {f"serviceMonitor/{deployment['ns']}/mlflow/0"}


def test_operator_prometheus_loads_the_prometheusrule(deployment, prometheus):
    groups = get_json(prometheus["operator"], "/api/v1/rules")["data"]["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    plain = {r["name"] for g in get_json(prometheus["plain"], "/api/v1/rules")["data"]["groups"] for r in g["rules"]}
    assert len(alerts) >= 8
    assert alerts == plain, "the PrometheusRule and the plain rule file carry the same alerts"
    assert all(g["file"].startswith("/etc/prometheus/rules/") for g in groups), "loaded through the operator"


def test_backup_alerts_read_the_backup_cronjobs_series(deployment, prometheus):
    """The backup CronJob (on by default, schedule in Etc/UTC) as kube-state-metrics reports it: its next run in the
    future, so both backup alerts are loaded and quiet. (A kube-state-metrics without a time zone database panics on
    that CronJob and reports nothing: this test's first failure.)"""
    sel = f'namespace="{deployment["ns"]}", cronjob="mlflow-backup"'
    base = prometheus["operator"]  # the one scraping kube-state-metrics
    (series,) = wait_for(
        "the backup CronJob's next run", lambda: query(base, f"kube_cronjob_next_schedule_time{{{sel}}}")
    )
    assert time.time() < float(series["value"][1]) <= time.time() + 86400 + 60, series
    assert query(base, f"kube_cronjob_spec_suspend{{{sel}}} == 0"), "the CronJob is not suspended"
    for which in ("plain", "operator"):
        rules = {r["name"]: r for g in get_json(prometheus[which], "/api/v1/rules")["data"]["groups"]
                 for r in g["rules"]}  # fmt: skip
        for alert in ("MLflowBackupFailed", "MLflowBackupNotScheduled"):
            assert rules[alert]["health"] == "ok" and rules[alert]["state"] == "inactive", (which, rules[alert])


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
            if not wait_for(f"{panel['title']}: {expr}", lambda e=expr: query(prometheus["operator"], e), timeout=60):
                empty.append((panel["title"], expr))
    assert empty == []
    assert checked == sum(len(p["targets"]) for p in panels if p["title"] not in SKIPPED) >= 14
    (version,) = query(
        prometheus["operator"],
        f'count by (mlflow_version) (mlflow_http_request_duration_seconds_count{{namespace="{deployment["ns"]}"}})',
    )
    assert version["metric"]["mlflow_version"] == MLFLOW_VERSION


def test_dashboard_picture(sandbox_facts, deployment, prometheus):
    """Only with MLFLOW_DASHBOARD_PICTURE=<png> (scripts/dashboard-picture.sh): a few minutes of uneven traffic, then
    every panel drawn from the operator's Prometheus' answers to the panel's own queries."""
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

    draw(prometheus["operator"], json.loads(DASHBOARD.read_text()), substitute, ROOT / out, minutes=6, skipped=SKIPPED)
    assert (ROOT / out).stat().st_size > 10_000


def test_scaled_to_zero_mlflow_down_goes_pending_then_firing(sandbox_facts, deployment, prometheus):
    for base in prometheus.values():
        rules = get_json(base, "/api/v1/rules")["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {
            "MLflowDown",
            "MLflowTargetDown",
            "MLflowHighErrorRatio",
        }
    proc = kubectl(sandbox_facts, "scale", "-n", deployment["ns"], "deployment/mlflow", "--replicas=0")
    assert proc.returncode == 0, proc.stderr

    def states() -> dict[str, str]:
        found = {}
        for which, base in prometheus.items():
            alerts = get_json(base, "/api/v1/alerts")["data"]["alerts"]
            found[which] = next((a["state"] for a in alerts if a["labels"]["alertname"] == "MLflowDown"), "")
        return found

    seen: list[dict[str, str]] = []

    def progressed(wanted: tuple[str, ...]) -> dict[str, str]:
        now = states()
        seen.append(now)
        return now if all(state in wanted for state in now.values()) else {}

    wait_for("MLflowDown pending in both", lambda: progressed(("pending", "firing")), timeout=120, every=2)
    wait_for("MLflowDown firing in both", lambda: progressed(("firing",)), timeout=120, every=2)
    for which in prometheus:
        observed = [s[which] for s in seen if s[which]]
        assert observed[0] == "pending", f"MLflowDown fired in the {which} Prometheus without going pending: {observed}"
