"""carbon254.mlflow.mlflow_health against a local HTTP server that misbehaves on purpose."""

from __future__ import annotations

import base64

from ansible_collections.carbon254.mlflow.plugins.modules import mlflow_health

from harness.ansible import MLFLOW_VERSION

FAST = {"delay": 0.01, "retries": 0, "timeout": 5}


def test_healthy_server(server, run_module):
    result = run_module(mlflow_health, {"url": server.url, "expected_version": MLFLOW_VERSION,
                                        "expected_metrics": ["mlflow_exporter_info", "mlflow_http_request_total"]})  # fmt: skip
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["version"] == MLFLOW_VERSION
    assert result["attempts"] == 1
    assert set(result["endpoints"]) == {"health", "version", "metrics"}
    for name, entry in result["endpoints"].items():
        assert entry["ok"] is True and entry["status_code"] == 200, name
        assert entry["url"] == f"{server.url}/{name}"
        assert isinstance(entry["latency_ms"], int)
    assert result["metrics_found"] == [
        "mlflow_exporter_info",
        "mlflow_http_request_total",
        "mlflow_otlp_spans_per_request",
    ]
    assert server.app.routes() == ["/health", "/version", "/metrics"]


def test_check_mode_runs_the_checks(server, run_module):
    result = run_module(mlflow_health, {"url": server.url}, check_mode=True)
    assert not result.get("failed") and result["changed"] is False
    assert server.app.routes() == ["/health", "/version", "/metrics"]


def test_check_metrics_false_skips_metrics(server, run_module):
    result = run_module(mlflow_health, {"url": server.url, "check_metrics": False, "expected_metrics": ["nope"]})
    assert not result.get("failed"), result
    assert "metrics" not in result["endpoints"]
    assert "/metrics" not in server.app.routes()


def test_connection_refused_after_retries(closed_port, run_module):
    result = run_module(mlflow_health, {"url": f"http://127.0.0.1:{closed_port}", "retries": 2, "delay": 0.01})
    assert result["failed"]
    assert result["failure_kind"] == "connection_refused"
    assert result["attempts"] == 3
    assert "GET /health" in result["msg"] and "connection refused" in result["msg"]
    assert result["endpoints"]["health"]["ok"] is False and result["endpoints"]["health"]["status_code"] is None


def test_500_then_200_is_retried(server, run_module):
    server.app.statuses["/health"] = [500]
    result = run_module(mlflow_health, {"url": server.url, "retries": 3, "delay": 0.01})
    assert not result.get("failed"), result
    assert result["attempts"] == 2
    assert server.app.routes().count("/health") == 2


def test_500_until_the_retries_run_out(server, run_module):
    server.app.statuses["/version"] = [503, 503, 503]
    result = run_module(mlflow_health, {"url": server.url, "retries": 1, "delay": 0.01})
    assert result["failed"] and result["failure_kind"] == "http_status"
    assert result["attempts"] == 2
    assert "GET /version" in result["msg"] and "HTTP 503" in result["msg"]
    assert result["endpoints"]["version"]["status_code"] == 503


def test_overall_timeout_bounds_the_retries(closed_port, run_module):
    result = run_module(mlflow_health, {"url": f"http://127.0.0.1:{closed_port}", "retries": 10000, "delay": 0.05,
                                        "overall_timeout": 0.5})  # fmt: skip
    assert result["failed"] and result["failure_kind"] == "connection_refused"
    assert 1 < result["attempts"] < 10000
    assert "retries or overall_timeout exhausted" in result["msg"]


def test_host_check_403_is_classified_and_not_retried(server, run_module):
    server.app.allowed_hosts = {"mlflow.mlflow.svc.cluster.local:5000"}
    result = run_module(mlflow_health, {"url": server.url, "retries": 5, "delay": 0.01})
    assert result["failed"] and result["failure_kind"] == "host_check"
    assert result["failed_endpoint"] == "/metrics"
    assert result["attempts"] == 1  # a configuration error: no retries
    assert "--allowed-hosts" in result["msg"] and "Invalid Host header" in result["msg"]
    assert f"127.0.0.1:{server.port}" in result["msg"]  # the Host that was sent
    assert result["endpoints"]["metrics"]["status_code"] == 403

    server.app.requests.clear()
    result = run_module(mlflow_health, {"url": server.url, "host_header": "mlflow.mlflow.svc.cluster.local:5000"})
    assert not result.get("failed"), result
    assert {r.headers["Host"] for r in server.app.requests} == {"mlflow.mlflow.svc.cluster.local:5000"}


def test_401_without_and_with_wrong_credentials(server, run_module):
    server.app.auth = ("admin", "s3cret-Passw0rd")
    result = run_module(mlflow_health, {"url": server.url, **FAST, "retries": 3})
    assert result["failed"] and result["failure_kind"] == "auth" and result["attempts"] == 1
    assert "401" in result["msg"] and "requires authentication" in result["msg"]

    result = run_module(mlflow_health, {"url": server.url, "username": "admin", "password": "wrong-password", **FAST})
    assert result["failed"] and result["failure_kind"] == "auth"
    assert "rejected the credentials of user 'admin'" in result["msg"]
    assert "wrong-password" not in str(result)

    server.app.requests.clear()
    result = run_module(mlflow_health, {"url": server.url, "username": "admin", "password": "s3cret-Passw0rd"})
    assert not result.get("failed"), result
    expected = "Basic " + base64.b64encode(b"admin:s3cret-Passw0rd").decode()
    assert server.app.requests[-1].headers["Authorization"] == expected
    assert result["invocation"]["module_args"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    assert "s3cret-Passw0rd" not in str(result)


def test_slow_response_times_out(server, run_module):
    server.app.slow["/health"] = 3
    result = run_module(mlflow_health, {"url": server.url, "timeout": 0.3, "retries": 0})
    assert result["failed"] and result["failure_kind"] == "timeout"
    # The module's smallest request timeout is 0.5 s (MIN_REQUEST_TIMEOUT); the message names the one it used.
    assert "GET /health" in result["msg"] and "timed out: no answer within 0.5 s (request timeout)" in result["msg"]


def test_slow_response_within_the_timeout_passes(server, run_module):
    server.app.slow["/health"] = 0.2
    result = run_module(mlflow_health, {"url": server.url, "timeout": 10, "retries": 0})
    assert not result.get("failed"), result


def test_wrong_version(server, run_module):
    server.app.version = "3.16.0"
    result = run_module(mlflow_health, {"url": server.url, "expected_version": MLFLOW_VERSION, **FAST})
    assert result["failed"] and result["failure_kind"] == "version_mismatch"
    assert result["version"] == "3.16.0"
    assert "'3.16.0'" in result["msg"] and f"'{MLFLOW_VERSION}'" in result["msg"]
    assert result["endpoints"]["version"]["ok"] is False
    assert "/metrics" not in server.app.routes()


def test_missing_metric_family(server, run_module):
    result = run_module(
        mlflow_health,
        {
            "url": server.url,
            "expected_metrics": ["mlflow_exporter_info", "mlflow_http_request_duration_seconds"],
            **FAST,
        },
    )
    assert result["failed"] and result["failure_kind"] == "missing_metrics"
    assert result["metrics_missing"] == ["mlflow_http_request_duration_seconds"]
    assert "mlflow_http_request_duration_seconds not exposed" in result["msg"]


def test_metrics_404_is_not_retried(server, run_module):
    server.app.fail["/metrics"] = (404, b"Not Found")
    result = run_module(mlflow_health, {"url": server.url, "retries": 5, "delay": 0.01})
    assert result["failed"] and result["failure_kind"] == "http_status" and result["attempts"] == 1


def test_dns_failure(run_module):
    result = run_module(mlflow_health, {"url": "http://mlflow.does-not-exist.invalid:5000", **FAST})
    assert result["failed"] and result["failure_kind"] == "dns"
    assert "DNS lookup failed" in result["msg"]


def test_tls_untrusted_self_signed_fails(tls_server, run_module):
    srv, _ = tls_server
    result = run_module(mlflow_health, {"url": srv.url, **FAST, "retries": 3})
    assert result["failed"] and result["failure_kind"] == "tls"
    assert result["attempts"] == 1
    assert "TLS certificate verification failed" in result["msg"]
    assert "certificate" in result["msg"].split("TLS certificate verification failed", 1)[1]


def test_tls_with_ca_path_succeeds(tls_server, run_module):
    srv, ca_file = tls_server
    result = run_module(mlflow_health, {"url": srv.url, "ca_path": ca_file})
    assert not result.get("failed"), result
    assert result["endpoints"]["health"]["url"].startswith("https://")


def test_tls_validate_certs_false_succeeds(tls_server, run_module):
    srv, _ = tls_server
    result = run_module(mlflow_health, {"url": srv.url, "validate_certs": False})
    assert not result.get("failed"), result
