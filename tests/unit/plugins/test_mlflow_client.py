"""module_utils: mlflow_client (failure classification), mlflow_s3 (S3 HEAD through botocore), mlflow_presigned,
the Prometheus text parser and the artifact path helpers."""

from __future__ import annotations

import pytest
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import MlflowClient, MlflowError
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_presigned import presigned_request, url_origin
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_roundtrip import proxied_artifact_root
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_s3 import s3_head, s3_key
from ansible_collections.carbon254.mlflow.plugins.module_utils.prometheus_text import (
    missing_metrics,
    parse_metric_names,
)


def test_s3_paths():
    assert s3_key("prod/", "1/abc/artifacts/f.bin") == "prod/1/abc/artifacts/f.bin"
    assert s3_key("", "1/abc/artifacts/f.bin") == "1/abc/artifacts/f.bin"
    assert s3_key("/a/b/", "x") == "a/b/x"


def test_url_origin_drops_path_query_and_userinfo():
    signed = "https://u:p@minio.example:9000/bkt/a/b.bin?X-Amz-Signature=abc&X-Amz-Credential=AK"
    assert url_origin(signed) == "https://minio.example:9000"


def test_presigned_request_errors_never_show_the_signature(closed_port):
    url = f"http://127.0.0.1:{closed_port}/bkt/k.bin?X-Amz-Signature=s3cr3t-signature&X-Amz-Credential=AKIDX"
    with pytest.raises(MlflowError) as info:
        presigned_request("GET", url, timeout=2)
    assert info.value.kind == "connection_refused"
    assert f"http://127.0.0.1:{closed_port}/bkt/k.bin" in info.value.message
    assert "s3cr3t-signature" not in info.value.message and "AKIDX" not in info.value.message


def test_s3_head_through_botocore_signs_and_classifies(server):
    server.app.s3_objects["p/k.bin"] = 7
    args = dict(access_key="AKIDTEST", secret_key="very-secret-key-123", timeout=5)
    head = s3_head(server.url, "bucket", "p/k.bin", **args)
    assert head["status"] == 200 and head["size"] == 7
    assert s3_head(server.url, "bucket", "p/missing.bin", **args)["status"] == 404
    request = next(r for r in server.app.requests if r.method == "HEAD")
    assert request.route == "/bucket/p/k.bin"
    assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    server.app.fail["/bucket/p/denied.bin"] = (403, b"")
    with pytest.raises(MlflowError) as info:
        s3_head(server.url, "bucket", "p/denied.bin", **args)
    assert info.value.kind == "http_status" and info.value.status_code == 403


def test_s3_head_connection_refused_is_classified(closed_port):
    with pytest.raises(MlflowError) as info:
        s3_head(f"http://127.0.0.1:{closed_port}", "bucket", None, access_key="a", secret_key="b", timeout=2)
    assert info.value.kind == "connection_refused"


@pytest.mark.parametrize(
    ("uri", "root"),
    [
        ("mlflow-artifacts:/2/abc/artifacts", "2/abc/artifacts"),
        ("mlflow-artifacts://mlflow:5000/2/abc/artifacts", "2/abc/artifacts"),
        ("s3://bucket/2/abc/artifacts", None),
        ("", None),
        (None, None),
    ],
)
def test_proxied_artifact_root(uri, root):
    assert proxied_artifact_root(uri) == root


def test_prometheus_parser_sees_families_and_samples():
    text = (
        '# HELP a_total x\n# TYPE a_total counter\na_total{m="GET"} 1.0\n'
        '# TYPE h_seconds histogram\nh_seconds_bucket{le="+Inf"} 0.0\nh_seconds_count 0.0\n'
        "untyped_metric 3\n"
    )
    families, samples = parse_metric_names(text)
    assert families == {"a_total", "h_seconds"}
    assert {"a_total", "h_seconds_bucket", "h_seconds_count", "untyped_metric"} <= samples
    assert missing_metrics(text, ["a_total", "h_seconds", "untyped_metric", "nope"]) == ["nope"]
    assert missing_metrics("", ["a"]) == ["a"]


def test_connection_refused_is_classified(closed_port):
    client = MlflowClient(f"http://127.0.0.1:{closed_port}", timeout=2)
    with pytest.raises(MlflowError) as info:
        client.request("GET", "/health")
    assert info.value.kind == "connection_refused"
    assert info.value.retryable
    assert "/health" in str(info.value) and "connection refused" in str(info.value)


def test_dns_failure_is_classified():
    client = MlflowClient("http://mlflow.does-not-exist.invalid:5000", timeout=5)
    with pytest.raises(MlflowError) as info:
        client.request("GET", "/health")
    assert info.value.kind == "dns", str(info.value)
    assert "DNS lookup failed" in str(info.value)


def test_a_json_api_call_and_its_errors(server):
    client = MlflowClient(server.url)
    assert client.api("POST", "experiments/search", {"max_results": 1})["experiments"][0]["name"] == "Default"
    server.app.fail["/api/2.0/mlflow/experiments/search"] = (
        400,
        b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}',
    )
    with pytest.raises(MlflowError) as info:
        client.api("POST", "experiments/search", {"max_results": 1})
    assert info.value.kind == "http_status" and info.value.status_code == 400
    assert "INVALID_PARAMETER_VALUE: bad" in str(info.value)
    assert not info.value.retryable
    server.app.fail["/api/2.0/mlflow/experiments/search"] = (200, b"<html>not json</html>")
    with pytest.raises(MlflowError) as info:
        client.api("POST", "experiments/search", {})
    assert info.value.kind == "invalid_response"
