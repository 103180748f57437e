"""The Kubernetes API server emulator as a sandbox service, with a generated kubeconfig."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import urllib.request

import yaml

from .config import REPO_ROOT, SandboxConfig
from .procs import PidFileService, SandboxError, wait_until


class KubeApi(PidFileService):
    name = "kubernetes"

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.base = config.state_dir / "kubernetes"
        self.token_file = self.base / "token"
        self.pid_file = self.base / "apiserver.pid"
        self.log_file = self.base / "apiserver.log"
        self.kubeconfig = config.state_dir / "kubeconfig"

    @property
    def node_name(self) -> str:
        """Short prefix of this sandbox's network namespaces (interface names allow 15 characters)."""
        return "sb" + hashlib.sha256(str(self.config.state_dir).encode()).hexdigest()[:5]

    @property
    def gateway(self) -> str:
        return self.config.pod_gateway

    @staticmethod
    def node_supported() -> bool:
        """The kubelet needs root (network and mount namespaces) and iproute2."""
        return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("unshare") is not None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.k8s_port}"

    @property
    def marker(self) -> str:
        return str(self.base)

    def token(self) -> str:
        if not self.token_file.exists():
            self.base.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(24))
        return self.token_file.read_text().strip()

    def ports(self) -> list[int]:
        return [self.config.k8s_port]

    def start(self) -> None:
        from .k8s.apiserver import kubeconfig  # noqa: PLC0415 - keeps `sandbox status` light

        token = self.token()
        argv = [
            sys.executable,
            "-m",
            "sandbox.k8s.apiserver",
            "--state-dir",
            str(self.base),
            "--host",
            self.config.host,
            "--port",
            str(self.config.k8s_port),
            "--token-file",
            str(self.token_file),
        ]
        if self.node_supported():
            argv += ["--node", self.node_name, "--pod-cidr", self.config.pod_cidr]
            argv += ["--forward", str(self.config.pg_port), "--forward", str(self.config.s3_port)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.launch(argv, self.log_file, env=env)
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(kubeconfig(self.url, token), handle, sort_keys=False)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.is_running():
                tail = self.log_file.read_text(errors="replace")[-500:] if self.log_file.exists() else ""
                raise SandboxError(f"the API server exited: {tail}")
            return self.probe()

        wait_until(ready, self.config.ready_timeout, f"Kubernetes API emulator on {self.url}")

    def probe(self) -> bool:
        """An authenticated discovery request, as every client makes first."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        request = urllib.request.Request(f"{self.url}/api/v1", headers=headers)  # noqa: S310 - loopback URL
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310 - loopback URL we built
            return json.loads(response.read())["kind"] == "APIResourceList"

    def stop(self) -> bool:
        stopped = self.stop_process(timeout=30)
        if self.node_supported():
            # The API server removes its node network on SIGTERM; this catches a server that died hard.
            from .k8s.runtime import NodeNetwork  # noqa: PLC0415

            NodeNetwork(self.node_name, self.config.pod_cidr).down()
        return stopped

    def purge(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)

    def facts(self) -> dict[str, object]:
        facts: dict[str, object] = {"url": self.url, "kubeconfig": str(self.kubeconfig), "token": self.token()}
        if self.node_supported():
            # What pods see: the host's PostgreSQL and S3 are forwarded to the node gateway.
            facts["node"] = {
                "name": self.node_name,
                "pod_cidr": self.config.pod_cidr,
                "gateway": self.gateway,
                "postgres_host": self.gateway,
                "postgres_port": self.config.pg_port,
                "s3_endpoint_url": f"http://{self.gateway}:{self.config.s3_port}",
            }
        return facts
