"""Benchmark: the sandbox's real Kubernetes - building it, `up` to Ready, its memory, and what a re-run asks of it.

In one run, on a sandbox of its own (private state directory and ports):
- `python -m sandbox build` with everything built (the warm case every CI run on a machine that built once pays);
  with --cold also a cold build into a temporary SANDBOX_OPT_PREFIX and GOCACHE (Go's module cache stays warm:
  downloading modules is the proxy's speed, not ours), which takes a quarter of an hour;
- `sandbox up` from an empty state directory (certificates made, images imported) and again on the kept state, to
  every service answering and every node Ready, N cycles each, with the default two workers and with none (side
  by side, so the workers' cost is a ratio on the same machine at the same time);
- RSS and PSS of every process of the control plane and each node once up and idle;
- site.yml on it, then a second site.yml: its API requests by verb from the API server's audit log (0 writes).

    .venv/bin/python bench/cluster.py [--cycles 3] [--cold] [--write]
"""

from __future__ import annotations

import argparse
import collections
import json
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

HEADING = "## The sandbox's Kubernetes: build, up, memory, a re-run's requests (bench/cluster.py)"
SANDBOX = {"SANDBOX_PG_PORT": "27932", "SANDBOX_S3_PORT": "27933", "SANDBOX_K8S_PORT": "27943",
           "SANDBOX_WEED_PORT_BASE": "27950", "SANDBOX_POD_CIDR": "10.220.0.0/16"}  # fmt: skip


def kib(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def run(argv: list[str], env: dict[str, str], timeout: float = 3600) -> float:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - started


def memory(state: Path) -> dict[str, tuple[float, float]]:
    """component -> (RSS MiB, PSS MiB) of the sandbox's Kubernetes processes."""
    pids = json.loads((state / "kubernetes" / "pids.json").read_text())
    found = {}
    for name, pid in pids.items():
        proc = Path(f"/proc/{pid}")
        found[name] = (kib(proc / "status", "VmRSS") / 1024, kib(proc / "smaps_rollup", "Pss") / 1024)
    return found


Ups = tuple[list[float], list[float], list[dict]]


def measure_up(py: str, base_env: dict[str, str], cycles: int, nodes: int) -> Ups:
    """`up` from an empty state, memory once idle, `down`, `up` on the kept state; `cycles` times."""
    cold_up, warm_up, mem = [], [], []
    sandbox = [py, "-m", "sandbox"]
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        for number in range(cycles):
            state = Path(tmp) / f"state-{number}"
            env = {**base_env, "SANDBOX_STATE_DIR": str(state), "SANDBOX_NODES": str(nodes)}
            try:
                cold_up.append(run([*sandbox, "up"], env))
                time.sleep(20)  # idle
                mem.append(memory(state))
                run([*sandbox, "down"], env)
                warm_up.append(run([*sandbox, "up"], env))
            finally:
                run([*sandbox, "down", "--purge"], env)
    return cold_up, warm_up, mem


def measure_rerun(py: str, base_env: dict[str, str]) -> dict:
    """site.yml twice; the second run's requests, from the audit log."""
    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        state = Path(tmp) / "state"
        env = {**base_env, "SANDBOX_STATE_DIR": str(state)}
        try:
            run([py, "-m", "sandbox", "up"], env)
            site = [str(BIN / "ansible-playbook"), "playbooks/site.yml", "-i", "inventories/sandbox"]
            first = run(site, env)
            start = time.time()
            second = run(site, env)
            log = state / "kubernetes" / "audit.log"
            entries = audit.entries(log, start)
            return {"first_s": first, "second_s": second, "writes": audit.writes(log, start),
                    "verbs": dict(collections.Counter(e["verb"] for e in entries))}  # fmt: skip
        finally:
            run([py, "-m", "sandbox", "down", "--purge"], env)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also a cold build (about 15 minutes)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    py = str(BIN / "python")
    results: dict[str, object] = {}
    base_env = ansible_env(**SANDBOX)
    base_env.pop("SANDBOX_KEEP", None)
    results["warm_build"] = statistics.median(run([py, "-m", "sandbox", "build"], base_env) for _ in range(3))
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
            cold_env = {**base_env, "SANDBOX_OPT_PREFIX": tmp, "GOCACHE": f"{tmp}/gocache"}
            proc = subprocess.run([py, "-m", "sandbox", "build"], cwd=ROOT, env=cold_env, capture_output=True,
                                  text=True, timeout=7200, check=False)  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-3000:])
            results["cold_build_lines"] = proc.stdout.strip().splitlines()
    single = {}
    cold_up, warm_up, mem = [], [], []
    for _ in range(args.cycles):  # alternating, so both see the same machine
        for nodes, into in ((0, single), (2, None)):
            cold, warm, used = measure_up(py, base_env, 1, nodes)
            if into is None:
                cold_up += cold
                warm_up += warm
                mem += used
            else:
                for key, value in (("cold", cold), ("warm", warm), ("mem", used)):
                    into.setdefault(key, []).extend(value)
    results["site"] = measure_rerun(py, base_env)
    components = list(mem[0])
    rss = {c: statistics.median(m[c][0] for m in mem) for c in components}
    pss = {c: statistics.median(m[c][1] for m in mem) for c in components}
    results |= {"cold_up": cold_up, "warm_up": warm_up, "rss": rss, "pss": pss}
    single_pss = statistics.median(sum(v[1] for v in m.values()) for m in single["mem"])
    worker_pss = {
        name: sum(pss[c] for c in components if c.startswith(name + "/"))
        for name in sorted({c.split("/")[0] for c in components if "/" in c})
    }  # fmt: skip
    results |= {"single_cold_up": single["cold"], "single_warm_up": single["warm"], "single_pss": single_pss,
                "worker_pss": worker_pss}  # fmt: skip
    print(json.dumps(results, indent=1))
    site = results["site"]
    lines = [
        HEADING,
        "",
        f"{time.strftime('%Y-%m-%d')}, this 2-core machine (shared). Kubernetes v1.37.2 built from its modules, "
        f"containerd 2.4.2, runc 1.1.5; medians of {args.cycles} cycles.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| `python -m sandbox build`, everything built already | {results['warm_build']:.1f} s |",
        *(f"| cold build: {line} |  |" for line in results.get("cold_build_lines", [])),
        f"| `sandbox up` from an empty state (certificates, etcd, images imported), to node Ready | "
        f"{statistics.median(cold_up):.1f} s |",
        f"| `sandbox up` on the kept state | {statistics.median(warm_up):.1f} s |",
        f"| the same without workers (`SANDBOX_NODES=0`, measured alternately): cold / kept `up` | "
        f"{statistics.median(single['cold']):.1f} s / {statistics.median(single['warm']):.1f} s |",
        f"| RSS of the control plane and its two workers, idle, all processes | {sum(rss.values()):.0f} MiB "
        f"(PSS {sum(pss.values()):.0f} MiB; without workers PSS {single_pss:.0f} MiB) |",
        *(
            f"| &nbsp; worker `{name}`: containerd + kubelet + kube-proxy | PSS {value:.0f} MiB |"
            for name, value in worker_pss.items()
        ),
        *(f"| &nbsp; {c} | RSS {rss[c]:.0f} MiB, PSS {pss[c]:.0f} MiB |" for c in components),
        f"| site.yml on it, first run / second run | {site['first_s']:.0f} s / {site['second_s']:.0f} s |",
        f"| the second run's API requests (audit log) | {sum(site['verbs'].values())}: "
        f"{', '.join(f'{v} {k}' for k, v in sorted(site['verbs'].items()))}; writes: {len(site['writes'])} |",
        "",
        "Beside the API emulator it replaced (measured 2026-11-25): 64 MiB RSS and 4.6 s to a cold `up`. RSS counts "
        "the shared 152 MiB binary once per process; PSS shares it out.",
        "",
    ]
    print("\n".join(lines), file=sys.stderr)
    if args.write:
        update_doc(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
