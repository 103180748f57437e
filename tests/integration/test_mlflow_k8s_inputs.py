"""Role mlflow_k8s refuses bad input before it touches the cluster, naming the variable.

Run against the sandbox's Kubernetes, whose audit log proves that not even a read was sent.
"""

from __future__ import annotations

import time

import pytest

from harness.ansible import run_role
from harness.kube import requests_since

pytestmark = pytest.mark.integration

GOOD = {
    "mlflow_k8s_namespace": "inputs-never-created",
    "mlflow_k8s_db_host": "postgres.example.svc.cluster.local",
    "mlflow_k8s_db_password": "a-password",
    "mlflow_k8s_s3_endpoint_url": "https://minio.minio.svc.cluster.local:9000",
    "mlflow_k8s_s3_access_key": "access",
    "mlflow_k8s_s3_secret_key": "secret-key-value",
}
PEM = "-----BEGIN CERTIFICATE-----\nMIIBinputs\n-----END CERTIFICATE-----\n"
CASES = {
    "replicas zero": ({"mlflow_k8s_replicas": 0}, "mlflow_k8s_replicas must be at least 1"),
    "replicas not an integer": ({"mlflow_k8s_replicas": "two"}, "mlflow_k8s_replicas"),
    "invalid hostname": (
        {
            "mlflow_k8s_ingress_enabled": True,
            "mlflow_k8s_ingress_host": "MLflow_254carbon.com",
            "mlflow_k8s_allowed_hosts": ["MLflow_254carbon.com"],
        },
        "mlflow_k8s_ingress_host",
    ),
    "memory request above limit": (
        {"mlflow_k8s_memory_request": "3Gi", "mlflow_k8s_memory_limit": "2Gi"},
        "mlflow_k8s_memory_request 3Gi is above mlflow_k8s_memory_limit 2Gi",
    ),
    "missing bucket": ({"mlflow_k8s_artifacts_bucket": ""}, "mlflow_k8s_artifacts_bucket"),
    "missing database password": ({"mlflow_k8s_db_password": ""}, "mlflow_k8s_db_password is empty"),
    "allowed hosts empty with an ingress": (
        {"mlflow_k8s_ingress_enabled": True, "mlflow_k8s_allowed_hosts": []},
        "mlflow_k8s_allowed_hosts is empty",
    ),
    "allowed hosts without the ingress host": (
        {"mlflow_k8s_ingress_enabled": True, "mlflow_k8s_allowed_hosts": ["mlflow:5000"]},
        "mlflow_k8s_allowed_hosts does not contain the ingress host",
    ),
    "sslmode verify-full without a CA": (
        {"mlflow_k8s_db_sslmode": "verify-full"},
        "mlflow_k8s_db_sslmode=verify-full needs mlflow_k8s_db_ca_bundle",
    ),
    "database CA with an sslmode that does not verify": (
        {"mlflow_k8s_db_sslmode": "require", "mlflow_k8s_db_ca_bundle": PEM},
        "mlflow_k8s_db_ca_bundle is set but mlflow_k8s_db_sslmode=require does not verify",
    ),
    "database CA given as a path": (
        {"mlflow_k8s_db_ca_bundle": "/etc/pki/ca.pem"},
        "mlflow_k8s_db_ca_bundle is not PEM",
    ),
    "short basic-auth password": (
        {
            "mlflow_k8s_auth_enabled": True,
            "mlflow_k8s_auth_admin_password": "short",
            "mlflow_k8s_flask_secret_key": "0123456789abcdef0123",
        },
        "mlflow_k8s_auth_admin_password must have at least 12 characters",
    ),
    "negative credential cache lifetime": (
        {"mlflow_k8s_auth_cache_ttl": -5},
        "mlflow_k8s_auth_cache_ttl must be a whole number of seconds, 0 or more",
    ),
    "negative preStop sleep": (
        {"mlflow_k8s_prestop_sleep": -1},
        "mlflow_k8s_prestop_sleep must be a whole number of seconds, 0 or more",
    ),
    "running as root": ({"mlflow_k8s_run_as_user": 0}, "mlflow_k8s_run_as_user 0 would run MLflow as root"),
    "memory limit that is not a quantity": (
        {"mlflow_k8s_memory_limit": "lots"},
        "mlflow_k8s_memory_limit is not a Kubernetes quantity",
    ),
    "cpu request that is not a quantity": (
        {"mlflow_k8s_cpu_request": "half a core"},
        "mlflow_k8s_cpu_request is not a Kubernetes quantity",
    ),
    "credential cache of no entries": (
        {"mlflow_k8s_auth_cache_max_size": 0},
        "mlflow_k8s_auth_cache_max_size must be at least 1",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_fails_before_any_request(sandbox_facts, case):
    overrides, expected = CASES[case]
    start = time.time()
    result = run_role(
        "mlflow_k8s", {**GOOD, "mlflow_k8s_kubeconfig": sandbox_facts["kubernetes"]["kubeconfig"], **overrides}
    )
    assert result.failed
    messages = " ".join(result.failure_messages())
    assert expected in messages, messages
    assert requests_since(sandbox_facts, start) == []


def test_all_errors_are_reported_at_once(sandbox_facts):
    result = run_role(
        "mlflow_k8s",
        {**GOOD, "mlflow_k8s_kubeconfig": sandbox_facts["kubernetes"]["kubeconfig"], "mlflow_k8s_replicas": 0,
         "mlflow_k8s_db_password": "", "mlflow_k8s_cpu_request": "2", "mlflow_k8s_cpu_limit": "1"},
    )  # fmt: skip
    messages = " ".join(result.failure_messages())
    for variable in ("mlflow_k8s_replicas", "mlflow_k8s_db_password", "mlflow_k8s_cpu_request"):
        assert variable in messages
