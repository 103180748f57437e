"""PostgreSQL 15 from Debian's binaries: initdb + pg_ctl as the postgres user, scram-sha-256 on 127.0.0.1.

TLS is on, with a certificate from a CA of the sandbox's own (trustme) for 127.0.0.1, localhost and the pod
network's gateway (where pods reach PostgreSQL through the node's forward), so clients can use
sslmode=verify-full with the CA in facts (`postgres.ca_file`). Plain connections stay allowed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from .config import SandboxConfig
from .procs import SandboxError, is_ours, terminate, wait_until

ADMIN_USER = "postgres"

PG_HBA = """\
# Written by the carbon254.mlflow sandbox: password (SCRAM) authentication only, loopback only.
local   all all                scram-sha-256
host    all all 127.0.0.1/32   scram-sha-256
"""

# Appended to postgresql.conf once, at initdb time. Ports and addresses are passed at start instead,
# so that `up` with other ports reuses the same cluster.
PG_CONF = """
# --- carbon254.mlflow sandbox ---
password_encryption = 'scram-sha-256'
# Test data only: trade durability for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
log_connections = off
"""


class Postgres:
    name = "postgres"

    def __init__(self, config: SandboxConfig, admin_password: str) -> None:
        self.config = config
        self.admin_password = admin_password
        self.base = self._base_dir()
        self.data_dir = self.base / "data"
        self.run_dir = self.base / "run"
        self.log_file = self.base / "postgres.log"

    # -- where the cluster lives -------------------------------------------------------------------
    def _base_dir(self) -> Path:
        """`<state>/postgres`, or a private directory under /var/tmp linked from there.

        As root the server runs as the `postgres` user, which must be able to reach its data directory.
        A checkout under a private home (mode 0700) is out of its reach; then the data goes to /var/tmp and
        `<state>/postgres` is a symlink to it, so the state directory still holds (or points at) everything.
        """
        wanted = self.config.state_dir / "postgres"
        if wanted.is_symlink():
            return wanted.resolve()
        if not self._as_root() or self._postgres_can_reach(self.config.state_dir):
            return wanted
        digest = hashlib.sha256(str(self.config.state_dir).encode()).hexdigest()[:12]
        return Path("/var/tmp") / f"carbon254-sandbox-{digest}" / "postgres"  # noqa: S108 - private, 0700

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _postgres_can_reach(self, path: Path) -> bool:
        probe = path
        while not probe.exists():
            probe = probe.parent
        return (
            subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(probe)], check=False).returncode == 0
        )

    def _run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        """Run a PostgreSQL tool, as the postgres user when we are root (initdb refuses root)."""
        if self._as_root():
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]

    def _bin(self, tool: str) -> str:
        path = self.config.pg_bin_dir / tool
        if not path.exists():
            raise SandboxError(
                f"{path} not found: install PostgreSQL 15 (`make setup` runs apt-get install postgresql) "
                "or point SANDBOX_PG_BIN at its bin directory"
            )
        return str(path)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def marker(self) -> str:
        return str(self.data_dir)

    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        return is_ours(self.pid(), self.marker)

    def ports(self) -> list[int]:
        return [self.config.pg_port]

    def init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        link = self.config.state_dir / "postgres"
        if self.base != link and not link.exists():
            link.symlink_to(self.base, target_is_directory=True)
        self.run_dir.mkdir(exist_ok=True)
        if self._as_root():
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.run_dir, "postgres", "postgres")
            self.base.chmod(0o700)
        with tempfile.NamedTemporaryFile("w", dir=self.base, prefix="pw", delete=False) as pwfile:
            pwfile.write(self.admin_password + "\n")
        pw_path = Path(pwfile.name)
        try:
            if self._as_root():
                shutil.chown(pw_path, "postgres", "postgres")
            result = self._run([
                self._bin("initdb"), "-D", str(self.data_dir), "-U", ADMIN_USER, f"--pwfile={pw_path}",
                "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8", "--no-locale",
            ])  # fmt: skip
        finally:
            pw_path.unlink(missing_ok=True)
        if result.returncode != 0:
            raise SandboxError(f"initdb failed for {self.data_dir}: {result.stderr.strip() or result.stdout.strip()}")
        (self.data_dir / "pg_hba.conf").write_text(PG_HBA)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(PG_CONF)

    # -- TLS ---------------------------------------------------------------------------------------
    @property
    def tls_dir(self) -> Path:
        return self.base / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    def tls_names(self) -> list[str]:
        """What the server certificate is valid for: loopback, and the gateway pods connect to."""
        return [self.config.host, "localhost", self.config.pod_gateway]

    def ensure_tls(self) -> None:
        """A CA and a server certificate for tls_names(); issued again (with a new CA) when the names change."""
        import trustme  # noqa: PLC0415 - only the sandbox's virtualenv has it

        names_file = self.tls_dir / "names"
        names = "\n".join(self.tls_names())
        key = self.tls_dir / "server.key"
        if names_file.exists() and names_file.read_text() == names and key.exists() and self.ca_file.exists():
            return
        self.tls_dir.mkdir(mode=0o700, exist_ok=True)
        ca = trustme.CA(organization_name="carbon254.mlflow sandbox")
        cert = ca.issue_cert(*self.tls_names())
        cert.cert_chain_pems[0].write_to_path(str(self.tls_dir / "server.crt"))
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(cert.private_key_pem.bytes())
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.ca_file.chmod(0o644)
        names_file.write_text(names)
        if self._as_root():
            for path in (self.tls_dir, *self.tls_dir.iterdir()):
                shutil.chown(path, "postgres", "postgres")

    def start(self) -> None:
        self.init()
        self.ensure_tls()
        options = shlex.join([
            "-h", self.config.host, "-p", str(self.config.pg_port), "-k", str(self.run_dir), "-c", "ssl=on",
            "-c", f"ssl_cert_file={self.tls_dir / 'server.crt'}", "-c", f"ssl_key_file={self.tls_dir / 'server.key'}",
        ])  # fmt: skip
        result = self._run([
            self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t",
            str(int(self.config.ready_timeout)), "-o", options,
        ])  # fmt: skip
        if result.returncode != 0:
            tail = self._log_tail()
            raise SandboxError(f"PostgreSQL did not start on {self.config.host}:{self.config.pg_port}: {tail}")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self) -> None:
        wait_until(self.probe, self.config.ready_timeout, f"PostgreSQL on {self.config.host}:{self.config.pg_port}")

    def probe(self) -> bool:
        """`select 1` as the admin over TCP with the password: proves the port, auth and the server."""
        import psycopg2  # noqa: PLC0415 - only the sandbox's virtualenv has it

        conn = psycopg2.connect(
            host=self.config.host, port=self.config.pg_port, user=ADMIN_USER, password=self.admin_password,
            dbname="postgres", connect_timeout=3,
        )  # fmt: skip
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()

    def stop(self) -> bool:
        if not self.is_running():
            return False
        pid = self.pid()
        self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30"])
        if self.is_running():
            terminate(pid or 0, self.marker)
        return True

    def purge(self) -> None:
        """Delete the cluster's data (wherever it lives) and the link to it."""
        link = self.config.state_dir / "postgres"
        shutil.rmtree(self.base.parent if self.base != link else self.base, ignore_errors=True)
        if link.is_symlink():
            link.unlink()

    def facts(self) -> dict[str, object]:
        return {
            "host": self.config.host,
            "port": self.config.pg_port,
            "admin_user": ADMIN_USER,
            "admin_password": self.admin_password,
            "admin_db": "postgres",
            "version": self._server_version(),
            # The CA of the server certificate (valid for tls_names()): sslmode=verify-full works.
            "ca_file": str(self.ca_file),
            "tls_names": self.tls_names(),
        }

    def _server_version(self) -> str:
        try:
            return (self.data_dir / "PG_VERSION").read_text().strip()
        except OSError:
            return ""
