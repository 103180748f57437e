"""Benchmark: site.yml cold, re-run and --check on the sandbox, side by side, with where a re-run spends its time.

On a sandbox of its own (private state directory and ports), `--cycles` times: teardown.yml with its data (so the
next run is cold: no database, no bucket, no namespace), site.yml (cold), site.yml again twice (the re-runs) and
site.yml --check --diff. Each run's wall time; the re-runs' time per role from ansible.posix.profile_tasks, their
task counts and their Kubernetes API requests by verb from the API server's audit log (writes must be 0).

    .venv/bin/python bench/rerun.py [--cycles 2] [--write]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
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
from sandbox import audit  # noqa: E402

HEADING = "## site.yml cold, re-run and --check (bench/rerun.py)"
SANDBOX = {"SANDBOX_PG_PORT": "27832", "SANDBOX_S3_PORT": "27833", "SANDBOX_K8S_PORT": "27843",
           "SANDBOX_WEED_PORT_BASE": "27850", "SANDBOX_POD_CIDR": "10.221.0.0/16"}  # fmt: skip
SITE = [str(BIN / "ansible-playbook"), "playbooks/site.yml", "-i", "inventories/sandbox"]
TEARDOWN = [str(BIN / "ansible-playbook"), "playbooks/teardown.yml", "-i", "inventories/sandbox",
            "-e", "mlflow_teardown_delete_data=true"]  # fmt: skip
PROFILE = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "500"}


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc.stdout


def recap(stdout: str) -> dict[str, int]:
    found = re.search(r"localhost\s+: ok=(\d+)\s+changed=(\d+).*?skipped=(\d+)", stdout)
    assert found, stdout[-2000:]
    return {"ok": int(found.group(1)), "changed": int(found.group(2)), "skipped": int(found.group(3))}


def per_role(stdout: str) -> dict[str, float]:
    """Seconds per role (the verify play and site's own tasks as `site/verify`) from profile_tasks' recap."""
    seconds: dict[str, float] = collections.defaultdict(float)
    for line in stdout.split("TASKS RECAP", 1)[-1].splitlines():
        found = re.search(r"^(.*?) -+ ([\d.]+)s$", line)
        if found:
            name = found.group(1)
            role = name.split(" : ")[0].removeprefix("carbon254.mlflow.") if " : " in name else "site/verify"
            seconds[role] += float(found.group(2))
    return dict(seconds)


def cycle(env: dict[str, str], log: Path) -> dict:
    timed(TEARDOWN, env)
    cold, out = timed(SITE, env)
    assert recap(out)["changed"] > 0, "the cold run changed nothing: teardown left the deployment"
    reruns, roles, verbs, writes = [], [], [], []
    for _ in range(2):
        start = time.time()
        seconds, out = timed(SITE, {**env, **PROFILE})
        counts = recap(out)
        assert counts["changed"] == 0, out[-3000:]
        reruns.append(seconds)
        roles.append(per_role(out))
        entries = audit.entries(log, start)
        verbs.append(dict(collections.Counter(entry["verb"] for entry in entries)))
        writes.extend(audit.writes(log, start))
    check, out = timed([*SITE, "--check", "--diff"], env)
    assert recap(out)["changed"] == 0, out[-3000:]
    return {"cold": cold, "reruns": reruns, "check": check, "roles": roles, "verbs": verbs, "writes": writes,
            "tasks": counts}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    py = str(BIN / "python")
    with tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp:
        env = {**ansible_env(**SANDBOX), "SANDBOX_STATE_DIR": str(Path(tmp) / "state")}
        env.pop("SANDBOX_KEEP", None)
        try:
            timed([py, "-m", "sandbox", "up"], env)
            log = Path(tmp) / "state" / "kubernetes" / "audit.log"
            cycles = [cycle(env, log) for _ in range(args.cycles)]
        finally:
            subprocess.run([py, "-m", "sandbox", "down", "--purge"], cwd=ROOT, env=env, capture_output=True,
                           check=False)  # fmt: skip
    cold = statistics.median(c["cold"] for c in cycles)
    rerun = statistics.median(s for c in cycles for s in c["reruns"])
    check = statistics.median(c["check"] for c in cycles)
    roles = sorted({role for c in cycles for r in c["roles"] for role in r})
    role_s = {role: statistics.median(r.get(role, 0.0) for c in cycles for r in c["roles"]) for role in roles}
    verbs = cycles[-1]["verbs"][-1]
    writes = sum(len(c["writes"]) for c in cycles)
    print(json.dumps({"cold": cold, "rerun": rerun, "check": check, "roles": role_s, "cycles": cycles}, indent=1))
    lines = [
        HEADING,
        "",
        f"{time.strftime('%Y-%m-%d')}, this 2-core machine (shared); the sandbox inventory (2 replicas, basic-auth, "
        f"monitoring, the verify play included); medians of {args.cycles} cycles (teardown with data, cold run, two "
        "re-runs, one --check --diff).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| cold site.yml (empty PostgreSQL, bucket and namespace) | {cold:.1f} s |",
        f"| re-run on the converged deployment (changed=0) | {rerun:.1f} s ({rerun / cold:.3f} of cold) |",
        f"| site.yml --check --diff on it | {check:.1f} s ({check / cold:.2f} of cold) |",
        f"| re-run's tasks: ok / skipped | {cycles[-1]['tasks']['ok']} / {cycles[-1]['tasks']['skipped']} |",
        *(f"| &nbsp; re-run time in {role} | {seconds:.1f} s |" for role, seconds in role_s.items()),
        f"| re-run's Kubernetes API requests | {sum(verbs.values())}: "
        + ", ".join(f"{n} {verb}" for verb, n in sorted(verbs.items()))
        + f"; writes in all re-runs: {writes} |",
        "",
        "A role's time includes its part of the preflight play. A re-run waits for nothing (no rollout, no Job):",
        "what is left is Ansible's cost per task and per module start, so the next cut is fewer tasks per role.",
        "",
    ]
    if args.write:
        update_doc(lines)
    print("\n".join(lines))
    return 0 if writes == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
