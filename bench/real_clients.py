"""Benchmark: how long each real-client step takes against `make demo`'s deployment (harness/client_steps.py).

The MLflow Python client of the deployed release runs each step as the quickstart tests do, through the snippet
`make demo` prints (the client settings file of the sandbox named by SANDBOX_STATE_DIR, default .sandbox, which
must be up with the demo deployed). Every step is timed inside the client (interpreter start and imports excluded)
and also as the whole command; N rounds, medians reported.

    make demo && .venv/bin/python bench/real_clients.py [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sandbox_startup import update_doc  # noqa: E402
from harness.client import FOUR_MIB, Client, read_env_file  # noqa: E402

HEADING = "## Real MLflow client steps against make demo (bench/real_clients.py)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    state = Path(os.environ.get("SANDBOX_STATE_DIR", ROOT / ".sandbox"))
    env_file = state / "mlflow-client.env"
    if not env_file.exists():
        raise SystemExit(f"{env_file} missing: run `make demo` first")
    client = Client(snippet=f"set -a; . {env_file}; set +a", settings=read_env_file(env_file))
    inside: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}

    def timed(label: str, step: str, *step_args: str) -> dict:
        started = time.monotonic()
        result = client.step(step, *step_args, deadline=300)
        wall.setdefault(label, []).append(time.monotonic() - started)
        inside.setdefault(label, []).append(result["seconds"])
        return result

    for number in range(args.rounds):
        name = f"bench-{uuid.uuid4().hex[:8]}"
        logged = timed("log and register a pyfunc model", "log-model", name, name)
        timed("load it by models:/ URI and predict", "load-model", f"models:/{name}/1")
        moved = timed("log and download a 4 MiB artifact", "artifact", logged["run_id"], str(FOUR_MIB))
        inside.setdefault("  of which log_artifact", []).append(moved["log_seconds"])
        inside.setdefault("  of which download_artifacts", []).append(moved["download_seconds"])
        timed("set an alias, load by alias", "alias", name, "1", "champion")
        timed("search runs by metric", "search", logged["experiment_id"])
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
    lines = [
        HEADING,
        "",
        f"{time.strftime('%Y-%m-%d')}, this 2-core machine (shared): the MLflow 3.17.2 client (its own virtualenv, "
        "`pip install mlflow==3.17.2`) against the sandbox inventory's deployment (2 replicas of 1 worker, basic-auth "
        f"with the credential cache), through the Service's host address; medians of {args.rounds} rounds, seconds. "
        "'In the client' excludes starting Python and importing mlflow; 'command' is the whole client process.",
        "",
        "| step | in the client | command |",
        "|---|---|---|",
        *(
            f"| {label} | {statistics.median(values):.2f} | {statistics.median(wall[label]):.2f} |"
            if label in wall
            else f"| {label} | {statistics.median(values):.2f} | |"
            for label, values in inside.items()
        ),
        "",
    ]
    print(json.dumps({"inside": inside, "wall": wall}, indent=1))
    print("\n".join(lines), file=sys.stderr)
    if args.write:
        update_doc(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
