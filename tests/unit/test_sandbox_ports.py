"""Every sandbox's loopback ports: outside Linux's ephemeral range, and apart for the sandboxes `make test` runs at once.

A port in the ephemeral range can be held for a moment by any outgoing connection on the machine; a service the
tests stop and start again then cannot bind it (SeaweedFS's filer in a CI run: "port 58344 ... is not available").
SandboxConfig refuses such a port; here, that it does, and that every sandbox the project starts passes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sandbox import config as sandbox_config
from sandbox.config import WEED_PORT_NAMES, SandboxConfig

ROOT = Path(__file__).resolve().parents[2]
# Where a sandbox other than the default one is given its ports: SANDBOX_* variables or SandboxConfig keywords.
SOURCES = ["scripts/run_stages.py", "tests/demo/helpers.py", "tests/sandbox/test_cluster.py",
           "tests/sandbox/test_nodes.py", "tests/sandbox/test_sandbox.py", "bench/sandbox_startup.py",
           "bench/rerun.py", "bench/cluster.py", "bench/day2.py", "bench/auth_cache.py",
           "scripts/dashboard-picture.sh"]  # fmt: skip
PORT = re.compile(r"""["']?(?:SANDBOX_)?(PG_PORT|S3_PORT|K8S_PORT|WEED_PORT_BASE)["']?\s*[:=]\s*["']?(\d{4,5})""",
                  re.IGNORECASE)  # fmt: skip
# The sandboxes of one `make test` that may run at the same time (scripts/run_stages.py's two lanes).
TOGETHER = ["default", "scripts/run_stages.py", "tests/demo/helpers.py", "tests/sandbox/test_cluster.py",
            "tests/sandbox/test_nodes.py", "tests/sandbox/test_sandbox.py"]  # fmt: skip


@pytest.fixture(autouse=True)
def no_port_variables(monkeypatch):
    for name in ("SANDBOX_PG_PORT", "SANDBOX_S3_PORT", "SANDBOX_K8S_PORT", "SANDBOX_WEED_PORT_BASE"):
        monkeypatch.delenv(name, raising=False)


def configs() -> dict[str, SandboxConfig]:
    """Each sandbox's SandboxConfig, built as its code builds it (so SandboxConfig's own checks apply)."""
    found = {"default": SandboxConfig()}
    for source in SOURCES:
        matches = PORT.findall((ROOT / source).read_text())
        assert matches, f"{source} gives no sandbox port any more: update SOURCES"
        found[source] = SandboxConfig(**{name.lower(): int(port) for name, port in matches})
    return found


def ports(config: SandboxConfig) -> set[int]:
    weed = range(config.weed_port_base, config.weed_port_base + len(WEED_PORT_NAMES))
    return {config.pg_port, config.s3_port, config.k8s_port, *weed}


@pytest.mark.parametrize(
    ("given", "named"),
    [({"pg_port": 55432}, "pg_port=55432 (SANDBOX_PG_PORT): port 55432"),
     ({"weed_port_base": 32760}, "weed_port_base=32760 (SANDBOX_WEED_PORT_BASE): ports 32760-32768")],
)  # fmt: skip
def test_a_port_in_the_ephemeral_range_is_refused_naming_the_variable(monkeypatch, tmp_path, given, named):
    monkeypatch.setattr(sandbox_config, "EPHEMERAL_RANGE", tmp_path / "range")
    (tmp_path / "range").write_text("32768\t60999\n")
    with pytest.raises(ValueError, match=re.escape(named) + ".* ephemeral port range 32768-60999"):
        SandboxConfig(state_dir=tmp_path, **given)
    SandboxConfig(state_dir=tmp_path, pg_port=61000, weed_port_base=32759)  # just outside, on either side


def test_every_sandbox_the_project_starts_is_accepted_here():
    assert len(configs()) == len(SOURCES) + 1


@pytest.mark.parametrize("pair", [(a, b) for i, a in enumerate(TOGETHER) for b in TOGETHER[i + 1 :]])
def test_sandboxes_that_run_at_once_share_no_port(pair):
    found = configs()
    assert not ports(found[pair[0]]) & ports(found[pair[1]]), pair
