"""Benchmark: how long carbon254.mlflow.mlflow_health and mlflow_roundtrip take against a real MLflow (the pinned one).

Starts the sandbox (settings from the SANDBOX_* variables, as `python -m sandbox up`; stopped again only if this
script started it) and one MLflow server of that release on it, as tests/integration/test_mlflow_modules.py does
(harness/modules.py: PostgreSQL backend store, S3 artifact destination, --expose-prometheus, one worker). Then runs
tests/integration/playbooks/mlflow_modules.yml N times each way: an empty play (both tasks skipped: what
ansible-playbook itself costs), health only, round trip only (with the module's S3 checks). It reports the
wall time of ansible-playbook and what the modules measure themselves (`elapsed_ms`, `timings`).
Writes a section to docs/benchmarks.md when run with --write.

    .venv/bin/python bench/verify_modules.py [--runs 7] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sandbox_startup import update_doc  # noqa: E402
from harness.ansible import MLFLOW_VERSION  # noqa: E402
from harness.modules import HEALTH, ROUNDTRIP, mlflow_server, play, s3_vars, task  # noqa: E402
from sandbox import Sandbox  # noqa: E402

STEPS = ["create_experiment", "create_run", "log_batch", "server_info", "upload_artifact", "presigned_upload",
         "download_artifact", "presigned_download", "s3_head_object", "get_run", "delete_presigned_artifact",
         "delete_artifact", "s3_head_deleted", "delete_run", "delete_experiment"]  # fmt: skip


def row(label: str, values: list[float], fmt: str = ".0f") -> str:
    """median, min, max and the interquartile range (spread) of `values`."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    cells = [format(v, fmt) for v in (statistics.median(values), min(values), max(values), q[2] - q[0])]
    return f"| {label} | {' | '.join(cells)} |"


def timed_play(server: dict, **variables) -> tuple[float, object]:
    start = time.monotonic()
    result = play(server, **variables)
    wall = (time.monotonic() - start) * 1000
    if result.rc != 0:
        raise SystemExit(f"play failed ({variables}):\n{result.output[-4000:]}")
    return wall, result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    box = Sandbox()
    started = box.up().started
    walls: dict[str, list[float]] = {"empty": [], "health": [], "roundtrip": []}
    elapsed: list[float] = []
    attempts: list[int] = []
    timings: dict[str, list[float]] = {step: [] for step in [*STEPS, "total"]}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp, mlflow_server(box.facts(), Path(tmp)) as srv:
            timed_play(srv, run_health=False, run_roundtrip=False)  # warm-up: caches, first API request
            timed_play(srv, **s3_vars(srv))
            for _ in range(args.runs):
                wall, _ = timed_play(srv, run_health=False, run_roundtrip=False)
                walls["empty"].append(wall)
                wall, result = timed_play(srv, run_roundtrip=False, expected_version=MLFLOW_VERSION)
                walls["health"].append(wall)
                health = task(result, HEALTH)
                elapsed.append(health["elapsed_ms"])
                attempts.append(health["attempts"])
                wall, result = timed_play(srv, run_health=False, **s3_vars(srv))
                walls["roundtrip"].append(wall)
                for step, values in timings.items():
                    values.append(task(result, ROUNDTRIP)["timings"][step])
    finally:
        if started:
            box.down()
    lines = [
        "## Verification modules against a real MLflow (bench/verify_modules.py)",
        "",
        f"{args.runs} runs of each on this machine ({time.strftime('%Y-%m-%d')}, 2 cores shared with other jobs): "
        "MLflow 3.17.2 (`--workers 1`) on the sandbox PostgreSQL and S3, on 127.0.0.1; modules run through "
        "`ansible-playbook` (tests/integration/playbooks/mlflow_modules.yml, json callback). Round trip with the "
        "S3 checks, a 2048-byte artifact and the presigned transfers (the server's S3 endpoint is this host's). "
        "Times in ms; spread = interquartile range.",
        "",
        "| measure | median | min | max | spread |",
        "|---|---|---|---|---|",
        row("`ansible-playbook`, both tasks skipped (fixed cost)", walls["empty"]),
        row("`ansible-playbook`, mlflow_health only", walls["health"]),
        row("`ansible-playbook`, mlflow_roundtrip only", walls["roundtrip"]),
        row("mlflow_health `elapsed_ms` (/health, /version, /metrics)", elapsed),
        row("mlflow_roundtrip `timings.total`", timings["total"]),
        *(row(f"mlflow_roundtrip `timings.{step}`", timings[step]) for step in STEPS),
        "",
        f"Health needed {'/'.join(str(n) for n in sorted(set(attempts)))} attempt(s) per run. Most of a task's wall "
        "time is ansible-playbook itself (the empty play) and starting the module; the requests take "
        f"{statistics.median(elapsed):.0f} ms (health) and {statistics.median(timings['total']):.0f} ms (round trip).",
        "",
    ]
    print("\n".join(lines))
    if args.write:
        update_doc(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
