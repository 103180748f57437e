"""Benchmark: authenticated MLflow calls with the basic-auth credential cache off and on, beside no auth at all.

Starts a sandbox of its own (private state directory and ports), then deploys MLflow three times side by side with
playbooks/site.yml and the sandbox inventory, each in a namespace of its own on the same database and bucket:

    auth-cache     basic-auth, mlflow_k8s_auth_cache_ttl=60 (the role's default)
    auth-nocache   basic-auth, mlflow_k8s_auth_cache_ttl=0  (MLflow's default: a password-hash check per request)
    noauth         no basic-auth

and drives each through its Service (the URL and credentials site.yml writes to that deployment's client settings
file) with the MLflow Python client of the deployed release (bench/client_load.py): sequential log_metric calls
(p50/p95), then a concurrent load (calls/s), and unauthenticated GET /health as the floor. The deployments are
measured in turns, round after round, so that the machine's noise falls on all three alike; the figures are
medians over the rounds. Everything is removed at the end (`sandbox down --purge`).

    .venv/bin/python bench/auth_cache.py [--rounds 3] [--calls 100] [--threads 8] [--seconds 20] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sandbox_startup import update_doc  # noqa: E402
from harness.ansible import BIN, ansible_env  # noqa: E402
from harness.client import MLFLOW_CLIENT_PYTHON, read_env_file  # noqa: E402

HEADING = "## Basic-auth credential cache: authenticated calls beside unauthenticated ones (bench/auth_cache.py)"
# Ports and pod network of this benchmark's own sandbox (the others: tests/demo/helpers.py DEMO_SANDBOX).
SANDBOX = {"SANDBOX_PG_PORT": "27732", "SANDBOX_S3_PORT": "27733", "SANDBOX_K8S_PORT": "27743",
           "SANDBOX_WEED_PORT_BASE": "27750", "SANDBOX_POD_CIDR": "10.217.0.0/16"}  # fmt: skip
DEPLOYMENTS = {
    "auth-cache": {"mlflow_k8s_auth_cache_ttl": 60},
    "auth-nocache": {"mlflow_k8s_auth_cache_ttl": 0},
    "noauth": {"mlflow_auth_enabled": False},
}
LOAD = ROOT / "bench" / "client_load.py"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def deploy(env: dict[str, str], name: str, extra: dict, client_file: Path) -> None:
    variables = {"mlflow_namespace": f"bench-{name}", "mlflow_client_env_file": str(client_file), **extra}
    start = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "playbooks/site.yml", "-i", "inventories/sandbox", "-e",
                           json.dumps(variables)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"site.yml for {name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    print(f"deployed {name} in {time.monotonic() - start:.0f} s", file=sys.stderr)


def client(settings: dict[str, str], *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))} | settings
    proc = subprocess.run([str(MLFLOW_CLIENT_PYTHON), str(LOAD), *args], env=env, capture_output=True, text=True,
                          timeout=900, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"client_load.py {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        state = Path(tmp) / "sandbox"
        env = ansible_env(**SANDBOX, SANDBOX_STATE_DIR=str(state))
        env.pop("SANDBOX_KEEP", None)
        sandbox = [str(BIN / "python"), "-m", "sandbox"]
        subprocess.run([*sandbox, "up"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        try:
            files = {name: Path(tmp) / f"{name}.env" for name in DEPLOYMENTS}
            for name, extra in DEPLOYMENTS.items():
                deploy(env, name, extra, files[name])
            settings = {name: read_env_file(path) for name, path in files.items()}
            seq: dict[str, list[tuple[float, float]]] = {name: [] for name in DEPLOYMENTS}
            rps: dict[str, list[float]] = {name: [] for name in DEPLOYMENTS}
            errors: dict[str, int] = dict.fromkeys(DEPLOYMENTS, 0)
            floor: list[float] = []
            for number in range(args.rounds):
                for name in DEPLOYMENTS:
                    ms = client(settings[name], "sequential", str(args.calls))["ms"]
                    seq[name].append((statistics.median(ms), percentile(ms, 0.95)))
                floor.append(statistics.median(client(settings["auth-cache"], "health", str(args.calls))["ms"]))
                for name in DEPLOYMENTS:
                    load = client(settings[name], "concurrent", str(args.threads), str(args.seconds))
                    rps[name].append(load["per_second"])
                    errors[name] += load["errors"]
                print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run([*sandbox, "down", "--purge"], cwd=ROOT, env=env, check=False, capture_output=True)
    p50 = {name: statistics.median(p for p, _ in values) for name, values in seq.items()}
    p95 = {name: statistics.median(p for _, p in values) for name, values in seq.items()}
    load = {name: statistics.median(values) for name, values in rps.items()}
    health = statistics.median(floor)
    summary = {"p50_ms": p50, "p95_ms": p95, "calls_per_s": load, "errors": errors, "health_p50_ms": health}
    print(json.dumps(summary, indent=2))
    lines = [
        HEADING,
        "",
        f"{time.strftime('%Y-%m-%d')}, this 2-core machine (shared, noisy). Three MLflow 3.17.2 deployments side by "
        "side in one sandbox, each made by `site.yml` with the sandbox inventory (2 replicas of 1 worker, on one "
        "PostgreSQL and one bucket), measured in turns for "
        f"{args.rounds} rounds through their Services with the MLflow Python client: {args.calls} sequential "
        f"`log_metric` calls (p50/p95 per round), then {args.threads} threads calling `log_metric` for "
        f"{args.seconds} s. Figures are medians over the rounds.",
        "",
        "| deployment | log_metric p50 ms | p95 ms | p50 / unauthenticated | calls/s, "
        f"{args.threads} threads | errors |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {p50[name]:.0f} | {p95[name]:.0f} | {p50[name] / p50['noauth']:.2f} | "
            f"{load[name]:.0f} | {errors[name]} |"
            for name in DEPLOYMENTS
        ),
        "",
        f"The cache makes an authenticated call {p50['auth-nocache'] / p50['auth-cache']:.1f}x faster at the median "
        f"and raises the throughput {load['auth-cache'] / load['auth-nocache']:.1f}x; with it an authenticated "
        f"`log_metric` takes {p50['auth-cache'] / p50['noauth']:.2f}x the time of the same call without "
        f"authentication (aim: within 2x). Floor: an unauthenticated `GET /health` has p50 {health:.1f} ms.",
        "",
    ]
    print("\n".join(lines), file=sys.stderr)
    if args.write:
        update_doc(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
