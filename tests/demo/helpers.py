"""What the quickstart stage's tests share: the demo sandbox's settings, `make`, the printed lines, the stores."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import BIN, ROOT
from tests.stores import admin_conn, s3_client

# Apart from the defaults (55432/58333/58443/58340, 10.213/16), tests/sandbox (263xx-264xx), bench/ (574xx) and
# molecule in make test (276xx); below Linux's ephemeral range (32768-60999), so no outgoing connection or
# port-forward listener of another sandbox running at the same time can hold one of them.
DEMO_SANDBOX = {
    "SANDBOX_PG_PORT": "27532",
    "SANDBOX_S3_PORT": "27533",
    "SANDBOX_K8S_PORT": "27543",
    "SANDBOX_WEED_PORT_BASE": "27550",
    "SANDBOX_POD_CIDR": "10.215.0.0/16",
}
# The MLflow Python client of the deployed release as a user installs it (`pip install mlflow==<version>`, no S3
# libraries): `make setup` puts it there (scripts/install-opt-venv.sh mlflow-client).
MLFLOW_CLIENT_PYTHON = Path(
    os.environ.get("SANDBOX_MLFLOW_CLIENT_PYTHON", "/opt/carbon254-sandbox/mlflow-client/bin/python")
)


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200, check=False)  # fmt: skip
    print(f"$ make {target}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


def printed(stdout: str, label: str) -> str | None:
    found = re.findall(rf"^{re.escape(label)}: (.+)$", stdout, flags=re.MULTILINE)
    return found[-1].strip() if found else None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as a shell reads them (values are shell-quoted by playbooks/verify.yml)."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


def site(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-playbook"), "playbooks/site.yml", "-i", "inventories/sandbox", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)  # fmt: skip


def recap_changed(proc: subprocess.CompletedProcess) -> int | None:
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", proc.stdout)
    return int(recap.group(1)) if recap else None


def what_exists(facts: dict) -> dict:
    """The MLflow databases and login role in PostgreSQL (over verified TLS) and the buckets in S3."""
    conn = admin_conn(facts, verify=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'mlflow%' ORDER BY 1")
            databases = [row[0] for row in cur.fetchall()]
            cur.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'mlflow%' ORDER BY 1")
            roles = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    buckets = [bucket["Name"] for bucket in s3_client(facts).list_buckets().get("Buckets", [])]
    return {"databases": databases, "roles": roles, "buckets": buckets}


CLIENT_STEPS = Path(__file__).with_name("client_steps.py")
SNIPPET_LABEL = "Use it from an MLflow client"
PROXY_VARIABLES = ("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD")
FOUR_MIB = 4 * 1024 * 1024


class StepFailed(AssertionError):
    pass


@dataclass
class Client:
    """The MLflow client as `make demo` tells users to set it up: its printed snippet, then python."""

    snippet: str
    settings: dict[str, str]

    def env(self) -> dict[str, str]:
        return {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_"))}

    def run(self, step: str, *args: str, deadline: float, before: str = "", extra: dict | None = None,
            expect_ok: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
        """`bash -c '<snippet>; <before>; exec python client_steps.py STEP ARGS'`, killed at the deadline."""
        script = f'{self.snippet}\n{before}\nexec "$@"'
        argv = ["bash", "-c", script, "bash", str(MLFLOW_CLIENT_PYTHON), str(CLIENT_STEPS), step, *args]
        try:
            proc = subprocess.run(argv, env={**self.env(), **(extra or {})}, capture_output=True, text=True,
                                  timeout=deadline, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            tail = (exc.stderr or b"")[-4000:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            raise StepFailed(
                f"client step {step} {args} did not finish within {deadline:.0f} s (a hang):\n{tail}"
            ) from None
        if expect_ok and proc.returncode != 0:
            raise StepFailed(f"client step {step} {args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc

    def step(self, step: str, *args: str, deadline: float) -> dict:
        proc = self.run(step, *args, deadline=deadline)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        TIMINGS.setdefault(step, []).append(result["seconds"])
        return result


TIMINGS: dict[str, list[float]] = {}
