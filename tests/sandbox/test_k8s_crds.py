"""The Prometheus Operator CRD bundle (`python -m sandbox crds …`) against an API server emulator of the test's own.

What is expected of the custom resources follows the bundle's schemas (Prometheus Operator v0.80.1, see
scripts/gen-prometheus-operator-crds.py) and how kube-apiserver treats custom resources: unknown fields pruned
with a warning (400 with fieldValidation=Strict), schema violations 422 with the field named, and kinds served
only while their CRD exists.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import config, dynamic

from sandbox import cli, crds
from sandbox.k8s.apiserver import ApiServer, kubeconfig
from sandbox.k8s.store import Store
from tests.helpers import BIN, ROOT, ansible_env

TOKEN = "crd-token"
BUNDLE = "prometheus-operator"
GV = "/apis/monitoring.coreos.com/v1"
SMON = f"{GV}/namespaces/default/servicemonitors"
RULES = f"{GV}/namespaces/default/prometheusrules"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
PLURALS = {"servicemonitors": "ServiceMonitor", "podmonitors": "PodMonitor", "prometheusrules": "PrometheusRule"}


@pytest.fixture
def api(tmp_path: Path):
    server = ApiServer(("127.0.0.1", 0), Store(), TOKEN)  # port 0: a free port of its own
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig(url, TOKEN)))
    facts = {"kubernetes": {"url": url, "token": TOKEN, "kubeconfig": str(path)}}
    yield {"url": url, "server": server, "facts": facts, "kubeconfig": path}
    server.shutdown()
    server.server_close()


@pytest.fixture
def installed(api):
    crds.install(api["facts"], BUNDLE)
    return api


def _headers(message: object) -> dict:
    """The response headers, every `Warning` header (one per warning) joined by newlines."""
    headers = dict(message)  # type: ignore[call-overload]
    warnings = message.get_all("Warning") or []  # type: ignore[attr-defined]
    if warnings:
        headers["Warning"] = "\n".join(warnings)
    return headers


def call(api: dict, method: str, path: str, body: object = None) -> tuple[int, dict, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    request = urllib.request.Request(api["url"] + path, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback test server
            return response.status, json.loads(response.read()), _headers(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), _headers(exc.headers)


def service_monitor(name: str = "mlflow", **spec: object) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "labels": {"release": "prometheus"}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
            **spec,
        },
    }


def rule(**changes: object) -> dict:
    return {
        "alert": "MlflowDown",
        "expr": 'up{job="mlflow"} == 0',
        "for": "5m",
        "labels": {"severity": "critical"},
        "annotations": {"summary": "MLflow is down"},
        **changes,
    }


def prometheus_rule(name: str = "mlflow", rules: list | None = None, **group: object) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name},
        "spec": {"groups": [{"name": "mlflow", "rules": rules if rules is not None else [rule()], **group}]},
    }


def causes(body: dict) -> list[str]:
    return [c["field"] for c in body["details"]["causes"]]


def test_bundle_files_are_complete_crds_with_provenance():
    assert BUNDLE in crds.bundles()
    loaded = crds.load(BUNDLE)
    assert sorted(c["spec"]["names"]["plural"] for c in loaded) == sorted(PLURALS)
    for crd in loaded:
        names = crd["spec"]["names"]
        assert crd["metadata"]["name"] == f"{names['plural']}.monitoring.coreos.com"
        assert names["kind"] == PLURALS[names["plural"]] and names["listKind"] == names["kind"] + "List"
        assert crd["metadata"]["annotations"]["operator.prometheus.io/version"] == "0.80.1"
        assert crd["metadata"]["annotations"]["sandbox.carbon254.io/source"].startswith(
            "cloudcoil-models-prometheus-operator=="
        )
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        assert version["schema"]["openAPIV3Schema"]["required"] == ["spec"]
    with pytest.raises(crds.SandboxError, match="no CRD bundle"):
        crds.load("no-such-operator")


def test_without_the_bundle_the_kinds_are_not_served(api):
    assert call(api, "POST", SMON, service_monitor())[0] == 404
    assert call(api, "POST", RULES, prometheus_rule())[0] == 404
    assert call(api, "GET", GV)[0] == 404
    _, groups, _ = call(api, "GET", "/apis")
    assert "monitoring.coreos.com" not in [g["name"] for g in groups["groups"]]
    assert set(crds.status(api["facts"])[BUNDLE].values()) == {"absent"}


def test_install_serves_the_kinds_and_a_second_install_changes_nothing(api):
    assert crds.install(api["facts"], BUNDLE) == dict.fromkeys(
        [f"{p}.monitoring.coreos.com" for p in ("servicemonitors", "podmonitors", "prometheusrules")], "created"
    )
    status, discovery, _ = call(api, "GET", GV)
    assert status == 200
    served = {r["name"]: r for r in discovery["resources"]}
    for plural, kind in PLURALS.items():
        assert served[plural]["kind"] == kind and served[plural]["namespaced"] is True
    # What kubernetes.core uses: the dynamic client finds the kinds through discovery.
    client = dynamic.DynamicClient(config.new_client_from_config(config_file=str(api["kubeconfig"])))
    assert client.resources.get(api_version="monitoring.coreos.com/v1", kind="ServiceMonitor").namespaced
    before = {c["metadata"]["name"]: c["metadata"]["resourceVersion"] for c in call(api, "GET", CRDS)[1]["items"]}
    api["server"].log.clear()
    assert set(crds.install(api["facts"], BUNDLE).values()) == {"unchanged"}
    after = {c["metadata"]["name"]: c["metadata"]["resourceVersion"] for c in call(api, "GET", CRDS)[1]["items"]}
    assert after == before
    assert call(api, "GET", "/sandbox/requests")[1]["writes"] == 0
    assert set(crds.status(api["facts"])[BUNDLE].values()) == {"installed"}


def test_valid_service_monitor_and_prometheus_rule_are_accepted(installed):
    status, body, headers = call(installed, "POST", SMON, service_monitor())
    assert status == 201, body
    assert body["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert "Warning" not in headers
    numeric = service_monitor("numeric", endpoints=[{"targetPort": 5000, "scheme": "http"}])
    assert call(installed, "POST", SMON, numeric)[0] == 201  # targetPort is int-or-string
    status, body, _ = call(installed, "POST", RULES, prometheus_rule(interval="1m"))
    assert status == 201, body
    assert body["spec"]["groups"][0]["rules"][0] == rule()
    recording = {"record": "job:up:sum", "expr": "sum by (job) (up)"}
    assert call(installed, "POST", RULES, prometheus_rule("recording", [recording]))[0] == 201
    status, listed, _ = call(installed, "GET", SMON)
    assert status == 200 and sorted(i["metadata"]["name"] for i in listed["items"]) == ["mlflow", "numeric"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (SMON, service_monitor(endpoints="http"), "spec.endpoints"),  # not a list
        (SMON, {**service_monitor(), "spec": {"endpoints": [{"port": "http"}]}}, "spec.selector"),  # required
        (SMON, service_monitor(endpoints=[{"port": "http", "scheme": "ftp"}]), "spec.endpoints[0].scheme"),
        (SMON, service_monitor(endpoints=[{"interval": "30 seconds"}]), "spec.endpoints[0].interval"),
        (
            SMON,
            service_monitor(endpoints=[{"relabelings": [{"action": "explode"}]}]),
            "spec.endpoints[0].relabelings[0].action",
        ),
        (RULES, prometheus_rule(rules=[{"alert": "NoExpr", "for": "5m"}]), "spec.groups[0].rules[0].expr"),
        (RULES, prometheus_rule(rules=[rule(**{"for": "five minutes"})]), "spec.groups[0].rules[0].for"),
        (RULES, {**prometheus_rule(), "spec": {"groups": [{"rules": [rule()]}]}}, "spec.groups[0].name"),
        (RULES, {**prometheus_rule(), "spec": {"groups": {"name": "not-a-list"}}}, "spec.groups"),
        (RULES, {k: v for k, v in prometheus_rule().items() if k != "spec"}, "spec"),
    ],
)
def test_invalid_custom_resources_are_rejected_naming_the_field(installed, path, body, field):
    status, answer, _ = call(installed, "POST", path, body)
    assert status == 422, answer
    assert answer["reason"] == "Invalid" and field in causes(answer)
    assert call(installed, "GET", f"{path}/{body['metadata']['name']}")[0] == 404


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(installed):
    body = service_monitor(endpoints=[{"port": "http", "colour": "red"}], scrapeEverything=True)
    status, created, headers = call(installed, "POST", SMON, body)
    assert status == 201
    assert created["spec"]["endpoints"] == [{"port": "http"}] and "scrapeEverything" not in created["spec"]
    assert "spec.endpoints[0].colour" in headers["Warning"] and "spec.scrapeEverything" in headers["Warning"]
    status, answer, _ = call(installed, "POST", SMON + "?fieldValidation=Strict", {**body, "metadata": {"name": "s"}})
    assert status == 400 and "strict decoding error" in answer["message"]
    assert 'unknown field "spec.endpoints[0].colour"' in answer["message"]


def test_remove_stops_serving_the_kinds_and_deletes_their_objects(installed):
    assert call(installed, "POST", SMON, service_monitor())[0] == 201
    assert set(crds.remove(installed["facts"], BUNDLE).values()) == {"deleted"}
    assert call(installed, "GET", GV)[0] == 404
    assert call(installed, "GET", f"{SMON}/mlflow")[0] == 404
    assert call(installed, "POST", SMON, service_monitor())[0] == 404
    assert set(crds.remove(installed["facts"], BUNDLE).values()) == {"absent"}
    # Installing again serves an empty kind: the old object did not survive its CRD.
    assert set(crds.install(installed["facts"], BUNDLE).values()) == {"created"}
    assert call(installed, "GET", SMON)[1]["items"] == []


def test_install_puts_back_a_crd_that_was_changed(installed):
    name = "prometheusrules.monitoring.coreos.com"
    _, current, _ = call(installed, "GET", f"{CRDS}/{name}")
    schema = current["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    current["metadata"]["annotations"]["operator.prometheus.io/version"] = "0.1.0"
    assert call(installed, "PUT", f"{CRDS}/{name}", current)[0] == 200
    assert crds.status(installed["facts"])[BUNDLE][name] == "different"
    assert call(installed, "POST", RULES, prometheus_rule(rules=[{"alert": "NoExpr"}]))[0] == 201  # loose schema
    results = crds.install(installed["facts"], BUNDLE)
    assert results[name] == "configured" and results["servicemonitors.monitoring.coreos.com"] == "unchanged"
    _, restored, _ = call(installed, "GET", f"{CRDS}/{name}")
    assert restored["metadata"]["annotations"]["operator.prometheus.io/version"] == "0.80.1"
    status, answer, _ = call(installed, "POST", RULES, prometheus_rule("again", rules=[{"alert": "NoExpr"}]))
    assert status == 422 and "spec.groups[0].rules[0].expr" in causes(answer)


def test_cli_installs_lists_and_removes(api, tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    (state / "facts.json").write_text(json.dumps(api["facts"]))
    base = ["--state-dir", str(state), "crds"]
    assert cli.main([*base, "install", BUNDLE]) == 0
    out = capsys.readouterr().out
    assert "customresourcedefinition.apiextensions.k8s.io/servicemonitors.monitoring.coreos.com created" in out
    assert cli.main([*base, "install", BUNDLE]) == 0
    assert capsys.readouterr().out.count(" unchanged") == 3
    assert cli.main([*base, "list"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("installed") == 3 and "prometheusrules.monitoring.coreos.com" in listing
    assert call(api, "GET", GV)[0] == 200
    assert cli.main([*base, "remove", BUNDLE]) == 0
    assert capsys.readouterr().out.count(" deleted") == 3
    assert call(api, "GET", GV)[0] == 404
    assert cli.main(["--state-dir", str(tmp_path / "nowhere"), "crds", "list"]) == 1  # no facts: not up


def test_kubernetes_core_k8s_with_and_without_the_operator(api, tmp_path):
    """The monitoring role's situation: a ServiceMonitor fails without the CRDs and applies once they exist."""
    playbook = tmp_path / "servicemonitor.yml"
    task = {"kubernetes.core.k8s": {"state": "present", "namespace": "default", "definition": service_monitor()}}
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))

    def run() -> subprocess.CompletedProcess:
        argv = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
        argv += ["-e", f"ansible_python_interpreter={sys.executable}"]  # the interpreter with kubernetes
        env = ansible_env(K8S_AUTH_KUBECONFIG=str(api["kubeconfig"]))
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)

    absent = run()
    assert absent.returncode != 0, absent.stdout[-2000:]
    assert "Failed to find exact match for monitoring.coreos.com/v1.ServiceMonitor" in absent.stdout, absent.stdout
    crds.install(api["facts"], BUNDLE)
    first = run()
    assert first.returncode == 0 and "changed=1" in first.stdout, first.stdout[-2000:] + first.stderr[-2000:]
    second = run()
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout[-2000:]
    assert call(api, "GET", f"{SMON}/mlflow")[1]["spec"]["endpoints"][0]["port"] == "http"
