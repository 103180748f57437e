"""The sandbox as a whole: start every service, wait until each really answers, write the facts, stop."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .config import SandboxConfig
from .kubecluster import KubeCluster
from .postgres import Postgres
from .procs import SandboxError, port_in_use
from .s3 import SeaweedS3


class Service(Protocol):
    name: str

    def is_running(self) -> bool: ...
    def pid(self) -> int | None: ...
    def ports(self) -> list[int]: ...
    def start(self) -> None: ...
    def wait_ready(self) -> None: ...
    def probe(self) -> bool: ...
    def stop(self) -> bool: ...
    def purge(self) -> None: ...
    def facts(self) -> dict[str, object]: ...


def _write_private(path: Path, data: dict) -> None:
    """Write JSON readable by the owner only: it holds passwords."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    tmp.replace(path)


@dataclass
class UpResult:
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)  # parts of a running service that had died, started again


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        fresh = not self._credentials_file.exists()
        self.credentials = self._credentials()
        self.services: list[Service] = [
            Postgres(self.config, self.credentials["postgres_admin_password"]),
            SeaweedS3(self.config, self.credentials["s3_access_key"], self.credentials["s3_secret_key"]),
            KubeCluster(self.config),
        ]
        if fresh:
            # New credentials: data left by an earlier sandbox at the same place (e.g. PostgreSQL's /var/tmp
            # fallback for a checkout recloned to the same path) was made with other passwords; drop it.
            for svc in self.services:
                svc.purge()

    @property
    def _credentials_file(self) -> Path:
        return self.config.state_dir / "credentials.json"

    def _credentials(self) -> dict[str, str]:
        """Random credentials made on first use and kept, so data survives a down/up cycle."""
        try:
            return json.loads(self._credentials_file.read_text())
        except FileNotFoundError:
            pass
        creds = {
            "postgres_admin_password": secrets.token_urlsafe(18),
            "s3_access_key": "SBX" + secrets.token_hex(8).upper(),
            "s3_secret_key": secrets.token_urlsafe(30),
        }
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.state_dir.chmod(0o755)
        _write_private(self._credentials_file, creds)
        return creds

    def service(self, name: str) -> Service:
        return next(svc for svc in self.services if svc.name == name)

    # -- up ----------------------------------------------------------------------------------------
    def up(self) -> UpResult:
        """Start what is not running and wait until every service answers; idempotent.

        If anything fails, whatever this call started is stopped again before the error is raised.
        """
        result = UpResult()
        try:
            for svc in self.services:
                if svc.is_running():
                    result.already_running.append(svc.name)
                    result.revived += [f"{svc.name} {part}" for part in getattr(svc, "revive", list)()]
                else:
                    busy = [port for port in svc.ports() if port_in_use(self.config.host, port)]
                    if busy:
                        raise SandboxError(
                            f"cannot start {svc.name}: port(s) {busy} on {self.config.host} are already in use by "
                            "another process; choose others with SANDBOX_PG_PORT / SANDBOX_S3_PORT / "
                            "SANDBOX_K8S_PORT / SANDBOX_WEED_PORT_BASE"
                        )
                    svc.start()
                    result.started.append(svc.name)
                    self._record()
                svc.wait_ready()
        except BaseException:
            for name in reversed(result.started):
                self.service(name).stop()
            self._record()
            raise
        self._record()
        _write_private(self.config.facts_file, self.facts())
        return result

    def _record(self) -> None:
        running = {svc.name: {"pid": svc.pid()} for svc in self.services if svc.is_running()}
        _write_private(self.config.state_file, {"state_dir": str(self.config.state_dir), "services": running})

    def facts(self) -> dict[str, object]:
        return {
            "state_dir": str(self.config.state_dir),
            "facts_file": str(self.config.facts_file),
            **{svc.name: svc.facts() for svc in self.services},
        }

    # -- down / status -----------------------------------------------------------------------------
    def down(self, purge: bool = False) -> list[str]:
        """Stop the services this sandbox started (recognised by PID and state directory); nothing else."""
        stopped = [svc.name for svc in reversed(self.services) if svc.stop()]
        self.config.state_file.unlink(missing_ok=True)
        self.config.facts_file.unlink(missing_ok=True)
        if purge:
            for svc in self.services:
                svc.purge()
            shutil.rmtree(self.config.state_dir, ignore_errors=True)
        return stopped

    def status(self) -> dict[str, dict[str, object]]:
        report: dict[str, dict[str, object]] = {}
        for svc in self.services:
            running = svc.is_running()
            entry: dict[str, object] = {"running": running, "pid": svc.pid() if running else None}
            if running:
                try:
                    entry["answering"] = bool(svc.probe())
                except Exception as exc:
                    entry["answering"] = False
                    entry["error"] = str(exc)
            report[svc.name] = entry
        return report


def load_facts(state_dir: Path | None = None) -> dict:
    """The facts written by `up`, for tests and tools; a clear error when the sandbox is not up."""
    config = SandboxConfig(state_dir=state_dir) if state_dir else SandboxConfig()
    try:
        return json.loads(config.facts_file.read_text())
    except FileNotFoundError as exc:
        raise SandboxError(f"{config.facts_file} not found: start the sandbox with `python -m sandbox up`") from exc
