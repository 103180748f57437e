"""module_utils/mlflow_client.py: the SigV4 signer against AWS's published vectors, failure classification,
the Prometheus text parser and the artifact path helpers."""

from __future__ import annotations

import hashlib

import pytest
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import (
    EMPTY_SHA256,
    MlflowClient,
    MlflowError,
    missing_metrics,
    parse_metric_names,
    s3_key,
    s3_object_url,
    sigv4_headers,
    sigv4_signing_key,
)
from ansible_collections.carbon254.mlflow.plugins.modules.mlflow_roundtrip import proxied_artifact_root

# AWS SigV4 test suite ("get-vanilla", "get-vanilla-query-order-key-case"): example credentials, service "service".
SUITE = dict(region="us-east-1", service="service", access_key="AKIDEXAMPLE",
             secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", amz_date="20150830T123600Z")  # fmt: skip


def test_sigv4_get_vanilla():
    headers = sigv4_headers("GET", "https://example.amazonaws.com/", **SUITE)
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Host"] == "example.amazonaws.com"


def test_sigv4_sorts_the_query():
    headers = sigv4_headers("GET", "https://example.amazonaws.com/?Param2=value2&Param1=value1", **SUITE)
    assert headers["Authorization"].endswith("b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")


def test_sigv4_s3_get_object_example():
    """The S3 API reference's "GET Object" example (sig-v4-header-based-auth): Range and content hash signed."""
    headers = sigv4_headers(
        "GET", "https://examplebucket.s3.amazonaws.com/test.txt", region="us-east-1", service="s3",
        access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        headers={"Range": "bytes=0-9", "x-amz-content-sha256": EMPTY_SHA256}, amz_date="20130524T000000Z",
    )  # fmt: skip
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["Range"] == "bytes=0-9"


def test_sigv4_a_different_secret_changes_the_signature():
    good = sigv4_headers("GET", "https://example.amazonaws.com/", **SUITE)["Authorization"]
    bad = sigv4_headers("GET", "https://example.amazonaws.com/", **{**SUITE, "secret_key": "x"})["Authorization"]
    assert good.split("Signature=")[1] != bad.split("Signature=")[1]
    assert len(sigv4_signing_key("k", "20150830", "us-east-1", "s3")) == 32


def test_sigv4_signs_the_port_as_sent():
    headers = sigv4_headers("HEAD", "http://127.0.0.1:9000/b/k", **SUITE)
    assert headers["Host"] == "127.0.0.1:9000"


def test_s3_paths():
    assert s3_key("prod/", "1/abc/artifacts/f.bin") == "prod/1/abc/artifacts/f.bin"
    assert s3_key("", "1/abc/artifacts/f.bin") == "1/abc/artifacts/f.bin"
    assert s3_key("/a/b/", "x") == "a/b/x"
    assert s3_object_url("http://s3:9000/", "bkt", "p/a b.txt") == "http://s3:9000/bkt/p/a%20b.txt"


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


def test_empty_payload_hash():
    assert hashlib.sha256(b"").hexdigest() == EMPTY_SHA256
