"""Role monitoring rendered through playbooks/render.yml, with no cluster: the alert rules checked and unit-tested by
Prometheus' own promtool, the plain scrape configuration checked by promtool, the dashboard and the secrets.

The rule unit tests (tests/unit/monitoring/rules-test.yml) run against the rules rendered with the role's defaults;
a second render with other thresholds must make them fail, so they test the rules and not themselves.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.ansible import BIN, ROOT, ansible_env
from harness.ansible import promtool as promtool_path

PROMTOOL = promtool_path()
RULES_TEST = ROOT / "tests/unit/monitoring/rules-test.yml"
BASE = {
    "mlflow_postgres_host": "postgres.data-platform.svc.cluster.local",
    "mlflow_s3_endpoint_url": "https://minio.minio.svc.cluster.local:9000",
    "mlflow_db_password": "pw-monitoring-render",
    "mlflow_s3_access_key": "AKIAMONITORING",
    "mlflow_s3_secret_key": "monitoring-secret-key",
}
SCRAPE_PASSWORD = "scrape-password-render-1"
AUTH = {
    **BASE,
    "mlflow_auth_enabled": True,
    "mlflow_k8s_auth_admin_password": "render-admin-password-1",
    "mlflow_k8s_flask_secret_key": "render-flask-secret-key-0123456789",
    "monitoring_scrape_username": "prometheus",
    "monitoring_scrape_password": SCRAPE_PASSWORD,
    "monitoring_dashboard_folder": "MLflow",
}


def render(tmp: Path, variables: dict) -> tuple[subprocess.CompletedProcess, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vars.json").write_text(json.dumps(variables))
    out = tmp / "out"
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), str(ROOT / "playbooks/render.yml"), "-e", f"@{tmp / 'vars.json'}",
         "-e", f"mlflow_render_dir={out}"],
        cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    return proc, out / "monitoring"


def objects(directory: Path) -> dict[str, dict]:
    return {obj["kind"]: obj for obj in (yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml")))}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module", params=["defaults", "auth"])
def rendered(request, tmp_path_factory):
    proc, out = render(tmp_path_factory.mktemp(request.param), BASE if request.param == "defaults" else AUTH)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"name": request.param, "dir": out, "objects": objects(out), "output": proc.stdout + proc.stderr}


def test_the_objects_and_the_plain_files_are_rendered(rendered):
    kinds = set(rendered["objects"])
    expected = {"ServiceMonitor", "PrometheusRule", "ConfigMap"} | ({"Secret"} if rendered["name"] == "auth" else set())
    assert kinds == expected
    assert (rendered["dir"] / "prometheus-scrape-job.yml").is_file()
    assert (rendered["dir"] / "prometheus-rules.yml").is_file()


def test_promtool_checks_the_rules_of_both_forms(rendered, tmp_path):
    rule = rendered["objects"]["PrometheusRule"]
    (tmp_path / "from-prometheusrule.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    for name in ("from-prometheusrule.yml", str(rendered["dir"] / "prometheus-rules.yml")):
        proc = promtool("check", "rules", name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS: 10 rules found" in proc.stdout
    plain = yaml.safe_load((rendered["dir"] / "prometheus-rules.yml").read_text())
    assert plain["groups"] == rule["spec"]["groups"], "the PrometheusRule and the plain rule file must be one source"


def test_promtool_unit_tests_pass_on_the_rendered_rules(rendered, tmp_path):
    shutil.copy(rendered["dir"] / "prometheus-rules.yml", tmp_path / "prometheus-rules.yml")
    shutil.copy(RULES_TEST, tmp_path / "rules-test.yml")
    proc = promtool("test", "rules", "rules-test.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_silent_case():
    rules = yaml.safe_load(Path(ROOT / "roles/monitoring/vars/main.yml").read_text())
    alerts = {r["alert"] for group in ("mlflow", "kube", "backup") for r in rules[f"__monitoring_alerts_{group}"]}
    cases = [case for group in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in group["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts == firing, f"alerts without a firing case: {alerts - firing}"
    assert alerts == silent, f"alerts without a silent case: {alerts - silent}"


def test_the_unit_tests_fail_when_the_thresholds_change(tmp_path):
    proc, out = render(
        tmp_path / "r",
        {**BASE, "monitoring_alert_error_ratio": 0.2, "monitoring_alert_target_down_for": "15m",
         "monitoring_alert_latency_p95_seconds": 10, "monitoring_alert_restarts": 10,
         "monitoring_alert_backup_deadline_seconds": 7200},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copy(out / "prometheus-rules.yml", tmp_path / "prometheus-rules.yml")
    shutil.copy(RULES_TEST, tmp_path / "rules-test.yml")
    result = promtool("test", "rules", "rules-test.yml", cwd=tmp_path)
    assert result.returncode != 0
    for alert in ("MLflowHighErrorRatio", "MLflowTargetDown", "MLflowHighLatency", "MLflowPodRestarting",
                  "MLflowBackupFailed", "MLflowBackupNotScheduled"):  # fmt: skip
        assert f"alertname: {alert}," in result.stdout + result.stderr, alert


def test_promtool_accepts_the_plain_scrape_configuration(rendered, tmp_path):
    job = yaml.safe_load((rendered["dir"] / "prometheus-scrape-job.yml").read_text())
    shutil.copy(rendered["dir"] / "prometheus-rules.yml", tmp_path / "prometheus-rules.yml")
    # Debian's Prometheus 2.42 is built without Kubernetes service discovery ("field kubernetes_sd_configs not
    # found"): promtool checks everything else of the job, with the discovery swapped for a static target.
    checked = [{**c, "static_configs": [{"targets": ["127.0.0.1:5000"]}]} for c in job["scrape_configs"]]
    for c in checked:
        del c["kubernetes_sd_configs"]
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump({"rule_files": ["prometheus-rules.yml"], "scrape_configs": checked})
    )
    proc = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (scrape,) = job["scrape_configs"]
    assert scrape["job_name"] == "mlflow"
    assert scrape["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["data-platform"]}}]
    kept = {tuple(r["source_labels"]): r["regex"] for r in scrape["relabel_configs"] if r.get("action") == "keep"}
    assert kept[("__meta_kubernetes_pod_label_app_kubernetes_io_instance",)] == "mlflow"
    if rendered["name"] == "auth":
        assert scrape["basic_auth"]["username"] == "prometheus"
        assert "password" not in scrape["basic_auth"] and scrape["basic_auth"]["password_file"]


def test_service_monitor_selects_the_mlflow_service(rendered):
    monitor = rendered["objects"]["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "mlflow",
        "app.kubernetes.io/instance": "mlflow",
        "app.kubernetes.io/component": "tracking-server",
    }
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == (
        "http", "/metrics", "30s", "10s",
    )  # fmt: skip
    if rendered["name"] == "auth":
        secret = rendered["objects"]["Secret"]
        assert endpoint["basicAuth"]["password"] == {"name": secret["metadata"]["name"], "key": "password"}
        assert base64.b64decode(secret["data"]["password"]).decode() == SCRAPE_PASSWORD
        assert base64.b64decode(secret["data"]["username"]).decode() == "prometheus"
    else:
        assert "basicAuth" not in endpoint


def test_the_scrape_password_is_only_in_the_secret(rendered):
    if rendered["name"] != "auth":
        pytest.skip("no password without auth")
    assert SCRAPE_PASSWORD not in rendered["output"]
    for path in rendered["dir"].iterdir():
        if path.name.startswith("0") and "-secret-" in path.name:
            assert (path.stat().st_mode & 0o077) == 0, "the Secret's file is readable by others"
            continue
        assert SCRAPE_PASSWORD not in path.read_text(), path.name


def test_dashboard_configmap_carries_the_generated_dashboard(rendered):
    configmap = rendered["objects"]["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    if rendered["name"] == "auth":
        assert configmap["metadata"]["annotations"] == {"grafana_folder": "MLflow"}
    board = json.loads(configmap["data"]["mlflow.json"])
    assert board == json.loads((ROOT / "roles/monitoring/files/mlflow-dashboard.json").read_text())
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "namespace", "job"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert {p["title"] for p in panels} >= {
        "Requests per second by status", "Error ratio (5xx)", "Latency p50 / p95 / p99", "Replicas ready / desired",
        "CPU per pod against its limit", "Memory per pod against its limit", "MLflow version",
    }  # fmt: skip
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        for target in p["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", p["title"]
            assert 'namespace="$namespace"' in target["expr"], (p["title"], target["expr"])


def test_every_alert_links_to_its_runbook_section(rendered):
    runbook = (ROOT / "docs/runbook.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", runbook, re.M)}
    for rule in rendered["objects"]["PrometheusRule"]["spec"]["groups"][0]["rules"]:
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://"), url
        assert url.split("#")[1] in anchors, f"docs/runbook.md has no section for {rule['alert']}"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_without_kube_state_metrics_only_mlflow_alerts(tmp_path):
    proc, out = render(
        tmp_path, {**BASE, "monitoring_kube_state_metrics": False, "monitoring_alert_labels": {"team": "ml"}}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (group,) = objects(out)["PrometheusRule"]["spec"]["groups"]
    assert [r["alert"] for r in group["rules"]] == [
        "MLflowDown", "MLflowTargetDown", "MLflowMetricsAbsent", "MLflowHighErrorRatio", "MLflowHighLatency",
    ]  # fmt: skip
    assert all(r["labels"] == {"severity": r["labels"]["severity"], "team": "ml"} for r in group["rules"])


def test_backup_alerts_follow_the_backup_switch(tmp_path):
    """On by default (the backup CronJob is), named after the CronJob; gone when mlflow_k8s makes no backups."""
    proc, out = render(tmp_path / "on", {**BASE, "mlflow_k8s_name": "tracking"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (group,) = objects(out)["PrometheusRule"]["spec"]["groups"]
    backup = [r for r in group["rules"] if r["alert"].startswith("MLflowBackup")]
    assert [r["alert"] for r in backup] == ["MLflowBackupFailed", "MLflowBackupNotScheduled"]
    assert all('cronjob="tracking-backup"' in r["expr"] for r in backup)
    proc, out = render(tmp_path / "off", {**BASE, "mlflow_k8s_backup_enabled": False})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (group,) = objects(out)["PrometheusRule"]["spec"]["groups"]
    assert not [r for r in group["rules"] if r["alert"].startswith("MLflowBackup")]


# Every input problem is reported at once (one render), before anything is written; a value outside the argument
# specs' choices is refused before that.
BAD_INPUT = {
    "monitoring_scrape_timeout": (
        "45s",
        "monitoring_scrape_timeout (45s) must not be longer than monitoring_scrape_interval",
    ),
    "monitoring_alert_latency_for": ("fifteen minutes", "monitoring_alert_latency_for is not a Prometheus duration"),
    "monitoring_alert_error_ratio": (5, "monitoring_alert_error_ratio must be a fraction between 0 and 1"),
    "monitoring_namespace": ("Data_Platform", 'monitoring_namespace "Data_Platform" is not a valid namespace name'),
    "monitoring_runbook_base_url": ("docs/runbook.md", "monitoring_runbook_base_url must be an http(s) URL"),
    "monitoring_alert_backup_for": ("daily", "monitoring_alert_backup_for is not a Prometheus duration"),
    "monitoring_alert_backup_deadline_seconds": (
        0,
        "monitoring_alert_backup_deadline_seconds must be a whole number of seconds, more than 0, got 0",
    ),
    "monitoring_backup_cronjob": ("Backup_Job", 'monitoring_backup_cronjob "Backup_Job" is not a valid CronJob name'),
}


def test_bad_input_names_every_variable_before_writing(tmp_path):
    proc, out = render(tmp_path, {**BASE, **{k: v for k, (v, _) in BAD_INPUT.items()}})
    assert proc.returncode != 0
    for name, (_, expected) in BAD_INPUT.items():
        assert expected in proc.stdout + proc.stderr, name
    assert not out.exists(), "nothing may be written before the inputs are checked"


def test_a_value_outside_the_choices_is_refused(tmp_path):
    proc, out = render(tmp_path, {**BASE, "monitoring_without_operator": "ignore"})
    assert proc.returncode != 0
    assert "monitoring_without_operator" in proc.stdout + proc.stderr
    assert not out.exists()
