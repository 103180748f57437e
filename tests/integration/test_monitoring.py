"""Role monitoring against the sandbox's Kubernetes: first without the Prometheus Operator (the documented paths:
fail, or the plain scrape job and rules), then with the operator's own CRDs of the pinned release installed from its
Go module, so that the API server validates the ServiceMonitor and PrometheusRule against the real schemas.

The tests run in file order, as an operator's successive runs would: no operator, then the CRDs appear; check mode,
converge, an unchanged re-run with zero writes, alerts switched off, teardown. The CRDs are removed at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import uuid
from pathlib import Path

import pytest
import yaml

from harness.ansible import PlayResult, promtool, run_role
from harness.kube import api, delete_namespace, kubectl, writes_since
from sandbox.build import prometheus_operator_crds

pytestmark = pytest.mark.integration
CRDS = ("servicemonitors", "prometheusrules")
PASSWORD = "scrape-password-integration-1"


@pytest.fixture(scope="module")
def ns(sandbox_facts):
    name = f"mon-{uuid.uuid4().hex[:6]}"
    api(sandbox_facts, "/api/v1/namespaces", method="POST", body={"metadata": {"name": name}})
    yield name
    delete_namespace(sandbox_facts, name)


def crd_present(facts: dict, plural: str) -> bool:
    try:
        api(facts, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.monitoring.coreos.com")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return False
    return True


@pytest.fixture(scope="module")
def operator_crds(sandbox_facts):
    """Installs the two CRDs on first use; removes them when the module's tests are done."""
    installed: list[str] = []

    def install() -> None:
        for plural in CRDS:
            path = prometheus_operator_crds() / f"monitoring.coreos.com_{plural}.yaml"
            proc = kubectl(sandbox_facts, "apply", "--server-side", "-f", str(path))
            assert proc.returncode == 0, proc.stderr
            installed.append(plural)
        for plural in CRDS:
            proc = kubectl(sandbox_facts, "wait", "--for=condition=Established", "--timeout=60s",
                           f"crd/{plural}.monitoring.coreos.com")  # fmt: skip
            assert proc.returncode == 0, proc.stderr

    yield install
    for plural in installed:
        kubectl(sandbox_facts, "delete", "crd", f"{plural}.monitoring.coreos.com", "--wait=true")


def role_vars(facts: dict, ns: str, tmp: str, **overrides: object) -> dict:
    return {
        "monitoring_namespace": ns,
        "monitoring_kubeconfig": facts["kubernetes"]["kubeconfig"],
        "monitoring_scrape_config_dir": tmp,
        "monitoring_auth_enabled": True,
        "monitoring_scrape_username": "prometheus",
        "monitoring_scrape_password": PASSWORD,
        **overrides,
    }


def converge(facts: dict, ns: str, tmp: str, check: bool = False, **overrides: object) -> tuple[PlayResult, float]:
    start = time.time()
    result = run_role("monitoring", role_vars(facts, ns, tmp, **overrides), check=check, diff=check)
    return result, start


def get(facts: dict, path: str) -> dict | None:
    try:
        return api(facts, path)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return None


@pytest.fixture(scope="module")
def scrape_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("scrape"))


# -- without the operator ---------------------------------------------------------------------------------------
def test_without_the_operator_fail_stops_before_any_write(sandbox_facts, ns, scrape_dir):
    assert not any(crd_present(sandbox_facts, plural) for plural in CRDS), "another test left the CRDs behind"
    result, start = converge(sandbox_facts, ns, scrape_dir, monitoring_without_operator="fail")
    assert result.failed
    message = " ".join(result.failure_messages())
    assert "no Prometheus Operator" in message and "monitoring_without_operator=scrape_config" in message
    assert writes_since(sandbox_facts, start, ns) == []


def test_without_the_operator_writes_the_plain_scrape_job_and_rules(sandbox_facts, ns, scrape_dir, tmp_path):
    result, _ = converge(sandbox_facts, ns, scrape_dir)
    assert not result.failed, result.output[-4000:]
    assert "no ServiceMonitor or PrometheusRule" in result.output
    job = yaml.safe_load(Path(scrape_dir, "prometheus-scrape-job.yml").read_text())
    assert job["scrape_configs"][0]["kubernetes_sd_configs"][0]["namespaces"]["names"] == [ns]
    shutil.copy(f"{scrape_dir}/prometheus-rules.yml", tmp_path / "rules.yml")
    check = subprocess.run([promtool(), "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    # Only the dashboard went to the cluster; no scrape Secret for an operator that is not there.
    assert get(sandbox_facts, f"/api/v1/namespaces/{ns}/configmaps/mlflow-grafana-dashboard")
    assert get(sandbox_facts, f"/api/v1/namespaces/{ns}/secrets/mlflow-metrics-scrape") is None
    assert PASSWORD not in result.output
    for name in ("prometheus-scrape-job.yml", "prometheus-rules.yml"):
        assert PASSWORD not in Path(scrape_dir, name).read_text()

    again, start = converge(sandbox_facts, ns, scrape_dir)
    assert not again.failed and again.changed == 0, again.changed_tasks()
    assert writes_since(sandbox_facts, start) == []

    # A re-run writes the files only when the one read of them (checksums, modes) differs: an edited rule file and a
    # directory made private are both put back.
    rules = Path(scrape_dir, "prometheus-rules.yml")
    wanted = rules.read_text()
    rules.write_text(wanted + "# edited by hand\n")
    Path(scrape_dir).chmod(0o700)
    fixed, _ = converge(sandbox_facts, ns, scrape_dir)
    assert not fixed.failed and fixed.changed == 2, fixed.changed_tasks()  # the directory and the files
    assert rules.read_text() == wanted
    assert Path(scrape_dir).stat().st_mode & 0o777 == 0o755
    assert converge(sandbox_facts, ns, scrape_dir)[0].changed == 0


# -- with the operator's CRDs -------------------------------------------------------------------------------------
def test_check_mode_validates_against_the_crds_and_writes_nothing(sandbox_facts, ns, scrape_dir, operator_crds):
    operator_crds()
    result, start = converge(sandbox_facts, ns, scrape_dir, check=True)
    assert not result.failed, result.output[-4000:]
    assert result.changed > 0
    assert writes_since(sandbox_facts, start) == []
    assert get(sandbox_facts, f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/mlflow") is None


def test_the_crd_schema_is_enforced(sandbox_facts, ns, tmp_path):
    """What the role's objects are validated against is the real schema: a malformed ServiceMonitor is refused."""
    bad = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
           "metadata": {"name": "broken", "namespace": ns},
           "spec": {"selector": {}, "endpoints": [{"port": "http", "interval": "thirty seconds"}]}}  # fmt: skip
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = kubectl(sandbox_facts, "apply", "--dry-run=server", "-f", str(tmp_path / "bad.json"))
    assert proc.returncode != 0
    assert "spec.endpoints[0].interval" in proc.stderr, proc.stderr


def test_converge_applies_the_service_monitor_and_the_rules(sandbox_facts, ns, scrape_dir):
    result, _ = converge(sandbox_facts, ns, scrape_dir)
    assert not result.failed, result.output[-4000:]
    assert PASSWORD not in result.output
    monitor = get(sandbox_facts, f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/mlflow")
    assert monitor["spec"]["endpoints"][0]["basicAuth"]["password"] == {
        "name": "mlflow-metrics-scrape",
        "key": "password",
    }
    rule = get(sandbox_facts, f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules/mlflow")
    assert len(rule["spec"]["groups"][0]["rules"]) == 10
    secret = get(sandbox_facts, f"/api/v1/namespaces/{ns}/secrets/mlflow-metrics-scrape")
    assert secret["type"] == "kubernetes.io/basic-auth"


def test_a_second_run_changes_nothing_and_writes_nothing(sandbox_facts, ns, scrape_dir):
    result, start = converge(sandbox_facts, ns, scrape_dir)
    assert not result.failed and result.changed == 0, result.changed_tasks()
    assert writes_since(sandbox_facts, start) == []


def test_alerts_switched_off_remove_the_rule(sandbox_facts, ns, scrape_dir):
    result, _ = converge(sandbox_facts, ns, scrape_dir, monitoring_alerts_enabled=False)
    assert not result.failed, result.output[-4000:]
    assert get(sandbox_facts, f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules/mlflow") is None
    assert get(sandbox_facts, f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/mlflow")


def test_absent_removes_every_object(sandbox_facts, ns, scrape_dir):
    result, _ = converge(sandbox_facts, ns, scrape_dir, monitoring_state="absent")
    assert not result.failed, result.output[-4000:]
    for path in (f"/apis/monitoring.coreos.com/v1/namespaces/{ns}/servicemonitors/mlflow",
                 f"/api/v1/namespaces/{ns}/secrets/mlflow-metrics-scrape",
                 f"/api/v1/namespaces/{ns}/configmaps/mlflow-grafana-dashboard"):  # fmt: skip
        assert get(sandbox_facts, path) is None, path
    again, start = converge(sandbox_facts, ns, scrape_dir, monitoring_state="absent")
    assert not again.failed and again.changed == 0, again.changed_tasks()
    assert writes_since(sandbox_facts, start) == []
