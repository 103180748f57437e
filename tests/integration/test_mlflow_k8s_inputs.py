"""Role mlflow_k8s refuses bad input before it touches the cluster, naming the variable.

Run against the sandbox's Kubernetes, whose audit log proves that not even a read was sent.
"""

from __future__ import annotations

import time

import pytest

from harness.ansible import run_role
from harness.evidence import record
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
    # The dangerous ones: store URIs or protections overridden behind the role's back, moving tags, names Kubernetes
    # would refuse half-way through a run.
    "extra argument that moves the tracking store": (
        {"mlflow_k8s_extra_args": ["--backend-store-uri=sqlite:////tmp/mlflow.db"]},
        "mlflow_k8s_extra_args must not set --backend-store-uri",
    ),
    "extra argument that moves the artifacts": (
        {"mlflow_k8s_extra_args": ["--artifacts-destination", "file:///tmp"]},
        "mlflow_k8s_extra_args must not set --artifacts-destination",
    ),
    "extra argument that starts the debug server": (
        {"mlflow_k8s_extra_args": ["--dev"]},
        "mlflow_k8s_extra_args must not set --dev",
    ),
    "extra argument that moves the port": (
        {"mlflow_k8s_extra_args": ["-p5001"]},
        "mlflow_k8s_extra_args must not set -p",
    ),
    "extra environment variable that replaces the store": (
        {"mlflow_k8s_extra_env": {"MLFLOW_BACKEND_STORE_URI": "sqlite:////tmp/mlflow.db"}},
        "mlflow_k8s_extra_env must not set MLFLOW_BACKEND_STORE_URI",
    ),
    "extra environment variable that switches the security middleware off": (
        {"mlflow_k8s_extra_env": {"MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE": "true"}},
        "mlflow_k8s_extra_env must not set MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE",
    ),
    "extra environment variable that moves the artifacts": (
        {"mlflow_k8s_extra_env": {"MLFLOW_ARTIFACTS_DESTINATION": "file:///tmp"}},
        "mlflow_k8s_extra_env must not set MLFLOW_ARTIFACTS_DESTINATION",
    ),
    "extra environment variable that opens the allowed hosts": (
        {"mlflow_k8s_extra_env": {"MLFLOW_SERVER_ALLOWED_HOSTS": "*"}},
        "mlflow_k8s_extra_env must not set MLFLOW_SERVER_ALLOWED_HOSTS",
    ),
    "extra argument that lets any site frame the UI": (
        {"mlflow_k8s_extra_args": ["--x-frame-options", "NONE"]},
        "must not set X-Frame-Options to NONE",
    ),
    "extra environment variable that lets any site frame the UI": (
        {"mlflow_k8s_extra_env": {"MLFLOW_SERVER_X_FRAME_OPTIONS": "none"}},
        "must not set X-Frame-Options to NONE",
    ),
    "extra environment variable with an invalid name": (
        {"mlflow_k8s_extra_env": {"1-A": "x"}},
        'mlflow_k8s_extra_env key(s) "1-A" are not valid environment variable names',
    ),
    "moving version tag": ({"mlflow_k8s_version": "latest"}, 'mlflow_k8s_version "latest" is not an MLflow release'),
    "untagged image": ({"mlflow_k8s_image": "ghcr.io/carbon254/mlflow"}, "mlflow_k8s_image"),
    "S3 endpoint without a scheme": ({"mlflow_k8s_s3_endpoint_url": "minio:9000"}, "mlflow_k8s_s3_endpoint_url"),
    "port out of range": ({"mlflow_k8s_port": 70000}, "mlflow_k8s_port must be a TCP port"),
    "invalid namespace": ({"mlflow_k8s_namespace": "Data_Platform"}, "mlflow_k8s_namespace"),
    "name too long for its Jobs": ({"mlflow_k8s_name": "m" * 41}, "mlflow_k8s_name"),
    "disruption budget that blocks every drain": (
        {"mlflow_k8s_pdb_enabled": True, "mlflow_k8s_replicas": 2, "mlflow_k8s_pdb_min_available": 2},
        "mlflow_k8s_pdb_min_available 2 must be below mlflow_k8s_replicas 2",
    ),
    "autoscaler maximum below the replicas": (
        {"mlflow_k8s_hpa_enabled": True, "mlflow_k8s_replicas": 3, "mlflow_k8s_hpa_max_replicas": 2},
        "mlflow_k8s_hpa_max_replicas must be at least mlflow_k8s_replicas",
    ),
    "too little memory for the workers": ({"mlflow_k8s_workers": 8}, "is too small for 8 workers"),
    "short session signing key": (
        {
            "mlflow_k8s_auth_enabled": True,
            "mlflow_k8s_auth_admin_password": "a-long-admin-password",
            "mlflow_k8s_flask_secret_key": "short",
        },
        "mlflow_k8s_flask_secret_key must have at least 16 characters",
    ),
    "missing S3 secret key": ({"mlflow_k8s_s3_secret_key": ""}, "mlflow_k8s_s3_secret_key is empty"),
    "pull policy that is not one": ({"mlflow_k8s_image_pull_policy": "Sometimes"}, "mlflow_k8s_image_pull_policy"),
    "anti-affinity that is not a choice": ({"mlflow_k8s_pod_anti_affinity": "strict"}, "mlflow_k8s_pod_anti_affinity"),
    "negative eviction time for a lost node": (
        {"mlflow_k8s_node_lost_eviction_seconds": -5},
        "mlflow_k8s_node_lost_eviction_seconds must be a whole number of seconds, 0 or more",
    ),
    "backup schedule in words": (
        {"mlflow_k8s_backup_schedule": "daily at 2"},
        'mlflow_k8s_backup_schedule "daily at 2" is not a cron schedule',
    ),
    "backup time zone that does not exist": (
        {"mlflow_k8s_backup_time_zone": "Mars/Olympus"},
        'mlflow_k8s_backup_time_zone "Mars/Olympus" is not a time zone',
    ),
    "no backup kept": ({"mlflow_k8s_backup_keep": 0}, "mlflow_k8s_backup_keep must be between 1 and 1000, got 0"),
    "backup deadline too short": ({"mlflow_k8s_backup_timeout": 30}, "mlflow_k8s_backup_timeout must be at least 60"),
    "backups among the artifacts": (
        {"mlflow_k8s_artifacts_prefix": "mlflow", "mlflow_k8s_backup_prefix": "mlflow/backups"},
        'mlflow_k8s_backup_prefix "mlflow/backups" must be a key prefix outside the artifacts\'',
    ),
}


def own_requests(facts: dict, start: float) -> list[dict]:
    """What the admin asked since `start`, but in other tests' namespaces (a role run that an earlier test's timeout
    left polling its own Job is not this role's request)."""
    return [
        entry for entry in requests_since(facts, start) if entry["namespace"] in (None, GOOD["mlflow_k8s_namespace"])
    ]


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
    assert own_requests(sandbox_facts, start) == []
    record("input", role="mlflow_k8s", case=case, given=overrides, refused_with=expected,
           proof="no request in the API server's audit log")  # fmt: skip


def test_all_errors_are_reported_at_once(sandbox_facts):
    result = run_role(
        "mlflow_k8s",
        {**GOOD, "mlflow_k8s_kubeconfig": sandbox_facts["kubernetes"]["kubeconfig"], "mlflow_k8s_replicas": 0,
         "mlflow_k8s_db_password": "", "mlflow_k8s_cpu_request": "2", "mlflow_k8s_cpu_limit": "1"},
    )  # fmt: skip
    messages = " ".join(result.failure_messages())
    for variable in ("mlflow_k8s_replicas", "mlflow_k8s_db_password", "mlflow_k8s_cpu_request"):
        assert variable in messages
