"""Benchmark: memory of the Kubernetes sandbox with two MLflow pods running, and their start-up time.

Starts a sandbox of its own (private state directory and ports), deploys MLflow with the integration playbook
(migration Job, Service, 2 replicas behind readiness probes, via kubernetes.core `wait: true`), then reads the
RSS of the API server + kubelet process and of each pod's process tree. Writes a section to docs/benchmarks.md
with --write.

    .venv/bin/python bench/k8s_sandbox_memory.py [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import psycopg2  # noqa: E402

from bench.sandbox_startup import update_doc  # noqa: E402
from sandbox import Sandbox, SandboxConfig  # noqa: E402

PORTS = {"pg_port": 57532, "s3_port": 57633, "k8s_port": 57543, "weed_port_base": 57640}


def _status(proc: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)


def tree_rss_mib(pid: int) -> float:
    """RSS of `pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _status(entry)
            except OSError:
                continue
            children.setdefault(int(fields["PPid"]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack.extend(children.get(current, []))
    return total / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox(SandboxConfig(state_dir=Path(tmp) / "state", **PORTS))
        try:
            box.up()
            facts = box.facts()
            node = facts["kubernetes"]["node"]
            pg = facts["postgres"]
            conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"],
                                    password=pg["admin_password"], dbname="postgres")  # fmt: skip
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("create role bench login password 'bench-Password-1'")
                cur.execute("create database bench owner bench")
            s3 = facts["s3"]
            client = boto3.client("s3", endpoint_url=s3["endpoint_url"], aws_access_key_id=s3["access_key"],
                                  aws_secret_access_key=s3["secret_key"], region_name=s3["region"])  # fmt: skip
            client.create_bucket(Bucket="bench")
            db_uri = (
                f"postgresql+psycopg2://bench:bench-Password-1@{node['postgres_host']}:{node['postgres_port']}/bench"
            )
            extra = {"ns": "bench", "image": "ghcr.io/carbon254/mlflow:3.17.2", "bucket": "bench", "db_uri": db_uri,
                     "s3_endpoint": node["s3_endpoint_url"], "access_key": s3["access_key"],
                     "secret_key": s3["secret_key"]}  # fmt: skip
            env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
                   "K8S_AUTH_KUBECONFIG": facts["kubernetes"]["kubeconfig"]}  # fmt: skip
            start = time.monotonic()
            playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "-i",
                        str(ROOT / "tests/integration/inventory.yml"),
                        str(ROOT / "tests/integration/playbooks/k8s_mlflow.yml"), "-e", json.dumps(extra)]  # fmt: skip
            subprocess.run(playbook, env=env, check=True, capture_output=True, timeout=900)
            deploy_seconds = time.monotonic() - start
            time.sleep(5)
            apiserver = box.service("kubernetes").pid()
            api_rss = tree_rss_mib(apiserver) if apiserver else 0.0
            pods = sorted(p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_mlflow_server(p))
            pod_rss = [tree_rss_mib(int(p.name)) for p in pods]
            own_rss = int(_status(Path(f"/proc/{apiserver}"))["VmRSS"].split()[0]) / 1024 if apiserver else 0.0
        finally:
            box.down(purge=True)
    lines = [
        "## Kubernetes sandbox with two MLflow pods (bench/k8s_sandbox_memory.py)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')}: `tests/integration/playbooks/k8s_mlflow.yml` (migration Job, Service,",
        "2 replicas with `--workers=1`, job execution off) through kubernetes.core, then RSS from /proc.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| playbook wall time (migration, 2 replicas Available, broken-variant checks), s | {deploy_seconds:.0f} |",
        f"| API server + kubelet + controllers: the one process, MiB | {own_rss:.0f} |",
        f"| that process with every container process it started, MiB | {api_rss:.0f} |",
        f"| each MLflow pod's process tree, MiB | {', '.join(f'{r:.0f}' for r in pod_rss)} |",
        "",
    ]
    print("\n".join(lines))
    if args.write:
        update_doc(lines)
    return 0


def _is_mlflow_server(proc: Path) -> bool:
    """The first process of an MLflow server container (its parent is not an MLflow server too)."""
    try:
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        parent = int(_status(proc)["PPid"])
        parent_cmd = Path(f"/proc/{parent}/cmdline").read_bytes()
    except (OSError, KeyError, ValueError):
        return False
    is_server = any(part.endswith(b"bin/mlflow") for part in cmdline[:2]) and b"server" in cmdline
    return is_server and b"mlflow" not in parent_cmd


if __name__ == "__main__":
    sys.exit(main())
