"""Benchmark: how long the sandbox takes to become ready, and what it costs in memory.

Runs cold `up` (fresh state directory: initdb included) and warm `up` (data kept) cycles on private ports,
measures wall time until every service answers, and the RSS of the sandbox's processes once up.
Writes a section to docs/benchmarks.md when run with --write.

    .venv/bin/python bench/sandbox_startup.py [--cycles 3] [--write]
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

from sandbox import Sandbox, SandboxConfig  # noqa: E402

PORTS = {"pg_port": 24432, "s3_port": 24333, "k8s_port": 24443, "weed_port_base": 24340}


def rss_mib(marker: str) -> float:
    """Total RSS of the processes whose command line mentions `marker` (the state directory) and their children.

    PostgreSQL's backends (checkpointer, walwriter, ...) rename themselves, so they are found through their parent.
    """
    procs: dict[int, tuple[int, str, int]] = {}  # pid -> (ppid, cmdline, rss KiB)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        rss = int(fields.get("VmRSS", "0 kB").split()[0])
        procs[int(entry.name)] = (int(fields["PPid"]), cmdline, rss)
    ours = {pid for pid, (_, cmdline, _) in procs.items() if marker in cmdline}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in procs.items() if ppid in ours} - ours
        grew = bool(children)
        ours |= children
    return sum(procs[pid][2] for pid in ours) / 1024


def update_doc(lines: list[str]) -> None:
    """Replace (or add) the section headed by lines[0] in docs/benchmarks.md."""
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nFigures measured by the scripts in `bench/`.\n\n"
    head = lines[0]
    if head in text:
        before, _, after = text.partition(head)
        rest = after.split("\n## ", 1)
        text = before + "\n".join(lines) + ("\n## " + rest[1] if len(rest) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    doc.write_text(text)


def row(label: str, values: list[float], fmt: str) -> str:
    cells = [format(v, fmt) for v in (statistics.median(values), min(values), max(values))]
    return f"| {label} | {' | '.join(cells)} |"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    cold, warm, rss = [], [], []
    for _ in range(args.cycles):
        with tempfile.TemporaryDirectory() as tmp:
            config = SandboxConfig(state_dir=Path(tmp) / "state", k8s_images=["localhost/carbon254/pause:1"], **PORTS)
            box = Sandbox(config)
            try:
                start = time.monotonic()
                box.up()
                cold.append(time.monotonic() - start)
                time.sleep(2)  # let the servers settle before reading memory
                rss.append(rss_mib(str(box.config.state_dir)))
                box.down()
                start = time.monotonic()
                box.up()
                warm.append(time.monotonic() - start)
            finally:
                box.down(purge=True)
    lines = [
        "## Sandbox start-up (bench/sandbox_startup.py)",
        "",
        f"{args.cycles} cycles on this machine ({time.strftime('%Y-%m-%d')}): PostgreSQL 15, SeaweedFS `weed mini`, "
        "the real single-node Kubernetes (no image import: SANDBOX_K8S_IMAGES=pause only).",
        "",
        "| measure | median | min | max |",
        "|---|---|---|---|",
        row("cold `up` (initdb + start + ready), s", cold, ".2f"),
        row("warm `up` (data kept), s", warm, ".2f"),
        row("RSS of all sandbox processes, MiB", rss, ".0f"),
        "",
    ]
    print("\n".join(lines))
    if args.write:
        update_doc(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
