"""The sandbox API server driven by kubernetes.core, as the collection's roles will drive it."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest

from tests.helpers import BIN, INVENTORY, ROOT, ansible_env

pytestmark = pytest.mark.integration


def request_log(facts: dict, method: str = "GET") -> dict:
    kube = facts["kubernetes"]
    headers = {"Authorization": f"Bearer {kube['token']}"}
    req = urllib.request.Request(kube["url"] + "/sandbox/requests", method=method, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - loopback sandbox
        return json.loads(response.read())


WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def writes_since(facts: dict, start: float, ns: str | None = None) -> list[str]:
    """Writes the sandbox API server received since `start` (in namespace `ns` when given), server-side dry runs
    excluded, as "METHOD path"."""
    return [
        f"{entry['method']} {entry['path']}"
        for entry in request_log(facts)["entries"]
        if entry["time"] >= start
        and entry["method"] in WRITES
        and not entry.get("dry_run")
        and (ns is None or f"/namespaces/{ns}" in entry["path"])
    ]


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


def delete_namespace(facts: dict, ns: str) -> None:
    """Remove what a test left behind, whatever happened to it (the playbook deletes it on success)."""
    kube = facts["kubernetes"]
    headers = {"Authorization": f"Bearer {kube['token']}"}
    req = urllib.request.Request(f"{kube['url']}/api/v1/namespaces/{ns}", method="DELETE", headers=headers)  # noqa: S310
    try:
        urllib.request.urlopen(req, timeout=10).close()  # noqa: S310 - loopback sandbox
    except urllib.error.HTTPError as exc:
        assert exc.code == 404


def test_kubernetes_core_flow(sandbox_facts):
    ns = f"conf-{uuid.uuid4().hex[:8]}"
    try:
        result = playbook(sandbox_facts, "k8s_conformance.yml", ns=ns)
    finally:
        delete_namespace(sandbox_facts, ns)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_check_mode_uses_server_dry_run_and_writes_nothing(sandbox_facts):
    ns = f"dry-{uuid.uuid4().hex[:8]}"
    request_log(sandbox_facts, "DELETE")
    result = playbook(sandbox_facts, "k8s_conformance.yml", check=True, ns=ns)
    # In check mode the namespace is never created, so the deployment tasks fail on the missing namespace:
    # run only far enough to prove nothing was persisted.
    log = request_log(sandbox_facts)
    writes = [e for e in log["entries"] if e["method"] in ("POST", "PUT", "PATCH", "DELETE")]
    assert writes, result.stdout[-3000:]
    assert all(e["dry_run"] for e in writes), writes
    assert log["writes"] == 0
