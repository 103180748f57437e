"""Every sandbox's loopback ports: below Linux's ephemeral range, and apart for the sandboxes `make test` runs at once.

A port in the ephemeral range can be held for a moment by any outgoing connection on the machine; a service the
tests stop and start again then cannot bind it (SeaweedFS's filer in a CI run: "port 58344 ... is not available")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandbox.config import SandboxConfig

ROOT = Path(__file__).resolve().parents[2]
WEED_PORTS = 11  # weed_port_base .. +10 (sandbox/config.py's weed_ports)
# Where a sandbox other than the default one is given its ports: SANDBOX_* variables or SandboxConfig keywords.
SOURCES = ["scripts/run_stages.py", "tests/demo/helpers.py", "tests/sandbox/test_cluster.py",
           "tests/sandbox/test_nodes.py", "tests/sandbox/test_sandbox.py", "bench/sandbox_startup.py",
           "bench/rerun.py", "bench/cluster.py", "bench/day2.py", "bench/auth_cache.py",
           "scripts/dashboard-picture.sh"]  # fmt: skip
PORT = re.compile(r"""["']?(SANDBOX_PG_PORT|SANDBOX_S3_PORT|SANDBOX_K8S_PORT|SANDBOX_WEED_PORT_BASE|pg_port|s3_port|"""
                  r"""k8s_port|weed_port_base)["']?\s*[:=]\s*["']?(\d{4,5})""")  # fmt: skip
# The sandboxes of one `make test` that may run at the same time (scripts/run_stages.py's two lanes).
TOGETHER = ["default", "scripts/run_stages.py", "tests/demo/helpers.py", "tests/sandbox/test_cluster.py",
            "tests/sandbox/test_nodes.py", "tests/sandbox/test_sandbox.py"]  # fmt: skip


def ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def ports(found: dict[str, int]) -> set[int]:
    taken = set()
    for name, port in found.items():
        taken |= set(range(port, port + WEED_PORTS)) if "weed" in name.lower() else {port}
    return taken


def sandboxes(monkeypatch) -> dict[str, set[int]]:
    for name in ("SANDBOX_PG_PORT", "SANDBOX_S3_PORT", "SANDBOX_K8S_PORT", "SANDBOX_WEED_PORT_BASE"):
        monkeypatch.delenv(name, raising=False)
    default = SandboxConfig()
    found = {"default": ports({"pg": default.pg_port, "s3": default.s3_port, "k8s": default.k8s_port,
                               "weed": default.weed_port_base})}  # fmt: skip
    for source in SOURCES:
        matches = PORT.findall((ROOT / source).read_text())
        assert matches, f"{source} gives no sandbox port any more: update SOURCES"
        found[source] = ports({name: int(port) for name, port in matches})
    return found


def test_every_sandbox_port_is_below_the_ephemeral_range(monkeypatch):
    floor = ephemeral_floor()
    inside = {source: sorted(p for p in taken if p >= floor) for source, taken in sandboxes(monkeypatch).items()}
    assert not {source: taken for source, taken in inside.items() if taken}, f"ephemeral range starts at {floor}"


@pytest.mark.parametrize("pair", [(a, b) for i, a in enumerate(TOGETHER) for b in TOGETHER[i + 1 :]])
def test_sandboxes_that_run_at_once_share_no_port(monkeypatch, pair):
    found = sandboxes(monkeypatch)
    assert not found[pair[0]] & found[pair[1]], pair
