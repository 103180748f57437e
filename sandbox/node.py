"""The sandbox node's isolation: a network namespace, a private mount namespace and a cgroup subtree of its own.

Everything of the sandbox's Kubernetes (etcd, the control plane, containerd, the kubelet, kube-proxy) runs inside
one network namespace `<name>-node` and one mount namespace, and in one cgroup subtree `/<name>` of every cgroup
hierarchy. So the CNI bridge, the pods' veths, kube-proxy's iptables rules, every mount of containerd and the
kubelet (overlay root filesystems, volumes, the pods' network namespace handles) and every cgroup stay there:
`down()` removes the namespaces and the subtree, and with them all of it. The host only sees the namespace handles.

- This kernel has no `dummy` links: the node address sits on a veth `node0` whose other end is a port of the
  fabric's bridge (`Fabric`, a namespace of its own): the nodes' wire, as a switch between machines.
- The mount namespace gets a fresh sysfs (the namespace's own devices) with the cgroup mounts kept, a private
  /run, bind mounts of the state directory over /var/log (the kubelet's hard-coded pod log paths) and /var/lib/cni
  (libcni's cache), and files carrying the values the kubelet wants bound over the six kernel settings it checks:
  without them it would rewrite host-wide sysctls (vm.overcommit_memory, kernel.panic, ...).
- br_netfilter's and ip_forward's sysctls are per network namespace: set inside only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .procs import SandboxError

NETNS_DIR = Path("/run/netns")
HANDLES = Path("/run/carbon254-sandbox")  # private bind mount holding each node's mount-namespace handle
CGROUP_ROOT = Path("/sys/fs/cgroup")
# What the kubelet checks and would otherwise set host-wide (pkg/kubelet/cm: setupKernelTunables).
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
CGROUP_SUBTREES = ("control-plane", "system")


def _run(argv: Sequence[str], check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SandboxError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers, name=systemd, the v2 one)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] in ("cgroup", "cgroup2"):
            found.append(Path(fields[1]))
    return found


def remove_cgroup_tree(relative: str | Path) -> list[Path]:
    """Remove the cgroup subtree `relative` (deepest first) in every hierarchy; the ones that remain (still busy)."""
    left = []
    for root in hierarchies():
        base = root / relative
        if base.is_dir():
            for path in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    path.rmdir()
            with contextlib.suppress(OSError):
                base.rmdir()
            if base.exists():
                left.append(base)
    return left


class Fabric:
    """The wire between the sandbox's nodes: a namespace `<name>-fabric` holding one bridge, each node's `node0`
    plugged into a port of it. Pods reach other nodes' pods by the static routes `route()` writes in every node
    (each node's pod /24 via that node's address, as kindnetd does). Unplugging a port is a machine lost."""

    BRIDGE = "fab0"

    def __init__(self, name: str) -> None:
        self.netns = f"{name}-fabric"
        self.path = NETNS_DIR / self.netns

    def up(self) -> None:
        if self.path.exists():
            return
        _run(["ip", "netns", "add", self.netns])
        try:
            batch = f"link set lo up\nlink add {self.BRIDGE} type bridge\nlink set {self.BRIDGE} up\n"
            _run(["ip", "-n", self.netns, "-batch", "-"], stdin=batch)
        except SandboxError:
            _run(["ip", "netns", "del", self.netns], check=False)
            raise

    def plug(self, port: str) -> None:
        _run(["ip", "-n", self.netns, "link", "set", port, "master", self.BRIDGE, "up"])

    def unplug(self, port: str) -> None:
        """Remove `port` if a former node's veth left it (deleting either end of a veth removes both)."""
        for _ in range(50):
            if _run(["ip", "-n", self.netns, "link", "del", port], check=False).returncode != 0:
                return  # no such port (any more)
            time.sleep(0.1)

    def set_port(self, port: str, up: bool) -> None:
        """Carry (up) or drop (down) everything a node sends and receives."""
        _run(["ip", "-n", self.netns, "link", "set", port, "up" if up else "down"])

    @staticmethod
    def route(netns: str, routes: dict[str, str]) -> None:
        """In node namespace `netns`: each destination network (key) via a neighbour node's address (value)."""
        batch = "".join(f"route replace {dst} via {via} dev node0\n" for dst, via in routes.items())
        if batch:
            _run(["ip", "-n", netns, "-batch", "-"], stdin=batch)

    def down(self) -> None:
        if self.path.exists():
            result = _run(["ip", "netns", "del", self.netns], check=False)
            if result.returncode != 0:
                raise SandboxError(f"ip netns del {self.netns}: {result.stderr.strip()}")


class NodeNamespaces:
    def __init__(self, name: str, state_dir: Path, node_ip: str, fabric: Fabric, port: str) -> None:
        self.name = name  # unique per sandbox (a hash of its state directory)
        self.state_dir = state_dir
        self.node_ip = str(ipaddress.IPv4Address(node_ip))
        self.fabric = fabric
        self.port = port  # node0's other end, in the fabric
        self.netns = f"{name}-node"
        self.netns_path = NETNS_DIR / self.netns
        self.mntns_path = HANDLES / name / "mnt"
        self.cgroup = f"carbon254-{name}"

    # -- up -------------------------------------------------------------------------------------------------

    def up(self) -> None:
        """Create what is missing; idempotent."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.fabric.up()
        self._up_netns()
        self._up_mntns()
        self._up_cgroups()

    def _up_netns(self) -> None:
        if self.netns_path.exists():
            return
        # A node namespace just deleted is torn down by the kernel a moment later, its veth (and our port) with it.
        self.fabric.unplug(self.port)
        _run(["ip", "netns", "add", self.netns])
        try:
            # node0 holds the node address, its peer is the node's port on the fabric; a default route through
            # node0 gives every component a "primary" interface.
            batch = "\n".join([
                "link set lo up",
                f"link add node0 type veth peer name {self.port} netns {self.fabric.netns}",
                f"addr add {self.node_ip}/24 dev node0",
                "link set node0 up",
                "route add default dev node0",
            ])  # fmt: skip
            _run(["ip", "-n", self.netns, "-batch", "-"], stdin=batch + "\n")
            self.fabric.plug(self.port)
            _run(["ip", "netns", "exec", self.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                  "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1"])  # fmt: skip
        except SandboxError:
            _run(["ip", "netns", "del", self.netns], check=False)
            raise

    def _mntns_script(self) -> str:
        state = shlex.quote(str(self.state_dir))
        lines = [
            "set -eu",
            f"mkdir -p {state}/.cgmove {state}/var-log {state}/var-lib-cni {state}/fake-sysctl",
            f"mount --rbind /sys/fs/cgroup {state}/.cgmove",
            "mount -t sysfs sysfs /sys",
            f"mount --move {state}/.cgmove /sys/fs/cgroup",
            "mount -t tmpfs -o mode=755 tmpfs /run",
            "mkdir -p /run/netns",
            f"mount --bind {state}/var-log /var/log",
            f"mount --bind {state}/var-lib-cni /var/lib/cni",
        ]
        for key, value in KUBELET_SYSCTLS.items():
            fake = f"{state}/fake-sysctl/{key.replace('/', '.')}"
            lines += [f"echo {value} > {fake}", f"mount --bind {fake} /proc/sys/{key}"]
        lines.append("mount --make-rshared /")  # new peer groups inside the namespace only
        return "\n".join(lines)

    def _up_mntns(self) -> None:
        if self.mntns_path.exists() and _run(["mountpoint", "-q", str(self.mntns_path)], check=False).returncode == 0:
            return
        if _run(["mountpoint", "-q", str(HANDLES)], check=False).returncode != 0:
            HANDLES.mkdir(parents=True, exist_ok=True)
            _run(["mount", "--bind", str(HANDLES), str(HANDLES)])
            _run(["mount", "--make-private", str(HANDLES)])
        self.mntns_path.parent.mkdir(parents=True, exist_ok=True)
        self.mntns_path.touch()
        cni = Path("/var/lib/cni")  # a mount point on the host: only an empty directory, removed by the last down()
        if not cni.exists():
            cni.mkdir(parents=True)
            (HANDLES / ".created-var-lib-cni").touch()
        _run(["nsenter", f"--net={self.netns_path}", "--", "unshare", f"--mount={self.mntns_path}",
              "--propagation", "private", "sh", "-c", self._mntns_script()])  # fmt: skip

    def _up_cgroups(self) -> None:
        for root in hierarchies():
            for sub in ("", *CGROUP_SUBTREES):
                path = root / self.cgroup / sub
                path.mkdir(parents=True, exist_ok=True)
                cpus = path / "cpuset.cpus"
                if cpus.exists() and not cpus.read_text().strip():
                    # A v1 cpuset takes no process until its cpus and mems are set: those of the root.
                    cpus.write_text((root / "cpuset.cpus").read_text())
                    (path / "cpuset.mems").write_text((root / "cpuset.mems").read_text())

    # -- running things in the node ---------------------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the node's network and mount namespaces."""
        return ["nsenter", f"--net={self.netns_path}", f"--mount={self.mntns_path}", "--", *argv]

    def joiner(self, sub: str) -> Callable[[], None]:
        """A preexec_fn that moves the new process into the node's cgroup subtree `sub` of every hierarchy."""
        targets = [root / self.cgroup / sub / "cgroup.procs" for root in hierarchies()]

        def join() -> None:
            pid = str(os.getpid())
            for target in targets:
                with contextlib.suppress(OSError):  # a hierarchy without this controller's files
                    target.write_text(pid)

        return join

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a short command inside the node and return what it printed."""
        return subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout, check=False)

    # -- down -------------------------------------------------------------------------------------------------

    def pids(self) -> set[int]:
        """Every process in the node's cgroup subtree."""
        found: set[int] = set()
        for root in hierarchies():
            base = root / self.cgroup
            if base.is_dir():
                for procs in base.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError, ValueError):
                        found |= {int(line) for line in procs.read_text().split()}
        return found

    def down(self) -> None:
        """Remove the subtree (killing what is still in it), the mount namespace and the network namespace."""
        errors = []
        for _ in range(3):
            left = self.pids()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        errors += [f"cgroup {base} could not be removed" for base in remove_cgroup_tree(self.cgroup)]
        if self.mntns_path.exists():
            _run(["umount", str(self.mntns_path)], check=False)
            shutil.rmtree(self.mntns_path.parent, ignore_errors=True)
        if HANDLES.exists() and not any(p for p in HANDLES.iterdir() if p.is_dir()):
            # The last node on this machine: /var/lib/cni (if a node made it) and the handles' mount go.
            marker = HANDLES / ".created-var-lib-cni"
            if marker.exists():
                with contextlib.suppress(OSError):
                    Path("/var/lib/cni").rmdir()
                marker.unlink()
            _run(["umount", str(HANDLES)], check=False)
            with contextlib.suppress(OSError):
                HANDLES.rmdir()
        if self.netns_path.exists():
            result = _run(["ip", "netns", "del", self.netns], check=False)
            if result.returncode != 0:
                errors.append(f"ip netns del {self.netns}: {result.stderr.strip()}")
        if errors:
            raise SandboxError("; ".join(errors))

    def exists(self) -> bool:
        return (
            self.netns_path.exists()
            or self.mntns_path.exists()
            or any((root / self.cgroup).exists() for root in hierarchies())
        )
