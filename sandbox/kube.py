"""The Kubernetes API server emulator as a sandbox service, with a generated kubeconfig."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import urllib.request

import yaml

from .config import REPO_ROOT, SandboxConfig
from .procs import SandboxError, is_ours, spawn, terminate, wait_until


class KubeApi:
    name = "kubernetes"

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.base = config.state_dir / "kubernetes"
        self.token_file = self.base / "token"
        self.pid_file = self.base / "apiserver.pid"
        self.log_file = self.base / "apiserver.log"
        self.kubeconfig = config.state_dir / "kubeconfig"

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

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        return is_ours(self.pid(), self.marker)

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
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = spawn(argv, self.log_file, env=env)
        self.pid_file.write_text(f"{proc.pid}\n")
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
        pid = self.pid()
        stopped = terminate(pid, self.marker) if pid else False
        self.pid_file.unlink(missing_ok=True)
        return stopped

    def purge(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)

    def facts(self) -> dict[str, object]:
        return {"url": self.url, "kubeconfig": str(self.kubeconfig), "token": self.token()}
