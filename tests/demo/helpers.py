"""What the quickstart stage's tests share: the demo sandbox's settings, `make`, the printed lines, the stores."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import quote

from harness.ansible import BIN, ROOT
from harness.stores import admin_conn, s3_client

# Apart from the defaults (25432/25333/25443/25340, 10.213/16), tests/sandbox (263xx-264xx), bench/ (279xx) and
# molecule in make test (276xx); below Linux's ephemeral range (32768-60999), so no outgoing connection or
# port-forward listener of another sandbox running at the same time can hold one of them.
DEMO_SANDBOX = {
    "SANDBOX_PG_PORT": "27532",
    "SANDBOX_S3_PORT": "27533",
    "SANDBOX_K8S_PORT": "27543",
    "SANDBOX_WEED_PORT_BASE": "27550",
    "SANDBOX_POD_CIDR": "10.215.0.0/16",
}


def make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(["make", "--no-print-directory", target], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200, check=False)  # fmt: skip
    print(f"$ make {target}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


def printed(stdout: str, label: str) -> str | None:
    found = re.findall(rf"^{re.escape(label)}: (.+)$", stdout, flags=re.MULTILINE)
    return found[-1].strip() if found else None


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


SNIPPET_LABEL = "Use it from an MLflow client"
PROXY_VARIABLES = ("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD")


# The sandbox inventory's secrets (inventories/sandbox): the PostgreSQL admin's, MLflow's database login, the S3 secret
# key, the basic-auth admin's password and the session signing key.
SECRET_VARIABLES = ("postgres_init_login_password", "mlflow_db_password", "mlflow_s3_secret_key",
                    "mlflow_auth_admin_password", "mlflow_flask_secret_key")  # fmt: skip


def inventory_secrets(env: dict[str, str], dest: Path) -> dict[str, str]:
    """The values of SECRET_VARIABLES as a play resolves them, written by Ansible to `dest` (0600), never printed."""
    content = "{{ {" + ", ".join(f"'{name}': {name}" for name in SECRET_VARIABLES) + "} | to_json }}"
    args = json.dumps({"content": content, "dest": str(dest), "mode": "0600"})
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-i", "inventories/sandbox", "-m", "ansible.builtin.copy",
                           "-a", args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(dest.read_text())


def secret_hits(text: str, secrets: dict[str, str]) -> list[str]:
    """Names of the secrets whose value shows in `text`, as is or URL-encoded (as inside a database URI)."""
    return sorted(name for name, value in secrets.items() if value in text or quote(value, safe="") in text)
