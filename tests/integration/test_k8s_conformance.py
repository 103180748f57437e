"""The sandbox's Kubernetes driven by kubernetes.core, as the collection's roles drive it."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from harness.ansible import BIN, INVENTORY, ROOT, ansible_env
from harness.kube import delete_namespace, requests_since, writes_since

pytestmark = pytest.mark.integration


def playbook(facts: dict, name: str, check: bool = False, **extra: str) -> subprocess.CompletedProcess:
    argv = [
        str(BIN / "ansible-playbook"),
        "-i",
        str(INVENTORY),
        str(ROOT / "tests" / "integration" / "playbooks" / name),
        "-e",
        json.dumps(extra),
    ]
    if check:
        argv.append("--check")
    env = ansible_env(K8S_AUTH_KUBECONFIG=facts["kubernetes"]["kubeconfig"])
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_kubernetes_core_flow(sandbox_facts):
    ns = f"conf-{uuid.uuid4().hex[:8]}"
    try:
        result = playbook(sandbox_facts, "k8s_conformance.yml", ns=ns)
    finally:
        delete_namespace(sandbox_facts, ns)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_check_mode_uses_server_dry_run_and_writes_nothing(sandbox_facts):
    ns = f"dry-{uuid.uuid4().hex[:8]}"
    start = time.time()
    result = playbook(sandbox_facts, "k8s_conformance.yml", check=True, ns=ns)
    # In check mode the namespace is never created, so the deployment tasks fail on the missing namespace:
    # run only far enough to prove nothing was persisted.
    writes = [e for e in requests_since(sandbox_facts, start) if e["method"] in ("POST", "PUT", "PATCH", "DELETE")]
    assert writes, result.stdout[-3000:]
    assert all(e["dry_run"] for e in writes), writes
    assert writes_since(sandbox_facts, start) == []
