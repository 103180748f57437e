"""The way to the sandbox's Kubernetes: its API as the admin (x509), its audit log, its Services' URLs."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from harness.ansible import BIN, ROOT
from sandbox import audit


def _context(facts: dict) -> ssl.SSLContext:
    kube = facts["kubernetes"]
    context = ssl.create_default_context(cafile=kube["ca_file"])
    context.load_cert_chain(kube["client_cert"], kube["client_key"])
    return context


def api(facts: dict, path: str, method: str = "GET", body: dict | None = None) -> dict:
    """One request to the sandbox's API server as kubernetes-admin; the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(facts["kubernetes"]["url"] + path, data=data, method=method,  # noqa: S310
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, context=_context(facts), timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def delete_namespace(facts: dict, ns: str) -> None:
    """Remove what a test left behind, whatever happened to it (a missing namespace is fine)."""
    try:
        api(facts, f"/api/v1/namespaces/{ns}", method="DELETE")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404


def requests_since(facts: dict, start: float) -> list[dict]:
    """Everything the admin (the collection's identity) asked the API server since `start`, from its audit log."""
    return audit.entries(facts["kubernetes"]["audit_log"], start)


def writes_since(facts: dict, start: float, ns: str | None = None, user: str | None = "kubernetes-admin") -> list[str]:
    """Writes `user` (None: anyone) sent the API server since `start` (in namespace `ns` if given), dry runs
    excluded."""
    return audit.writes(facts["kubernetes"]["audit_log"], start, ns, user)


def service_base(facts: dict, ns: str, name: str = "mlflow") -> str:
    """The host URL the sandbox forwards to a Service (`python -m sandbox service-url`)."""
    env = {**os.environ, "SANDBOX_STATE_DIR": facts["state_dir"]}
    proc = subprocess.run([str(BIN / "python"), "-m", "sandbox", "service-url", ns, name], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return proc.stdout.strip()


def kubectl(facts: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The kubectl the sandbox built, with the sandbox's admin kubeconfig."""
    env = {**os.environ, "SANDBOX_STATE_DIR": facts["state_dir"]}
    return subprocess.run([str(BIN / "python"), "-m", "sandbox", "kubectl", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def _kubernetes(facts: dict):
    """The sandbox's Kubernetes service object, for what only the node can do (its containerd's images)."""
    from sandbox import Sandbox, SandboxConfig  # noqa: PLC0415

    return Sandbox(SandboxConfig(state_dir=Path(facts["state_dir"]))).service("kubernetes")


def tag_image(facts: dict, source: str, target: str) -> None:
    """A rebuilt image under a new tag in the sandbox node, as a registry would get it pushed."""
    _kubernetes(facts).tag_image(source, target)


def import_images(facts: dict, names: list[str]) -> None:
    """Images the sandbox's `up` leaves out (sandbox.pins.ON_DEMAND), into its node."""
    _kubernetes(facts).import_images(names)


def kubeconfig(facts: dict) -> Path:
    return Path(facts["kubernetes"]["kubeconfig"])
