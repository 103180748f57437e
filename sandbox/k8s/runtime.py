"""Container runtime of the process kubelet: pod network namespaces on a private bridge, containers as processes.

A test double, not a container runtime: no images, no cgroups, no user or PID namespaces. A container is a local
program started in its pod's network namespace and in a mount namespace of its own (see `podinit`).

Network (everything private lives inside namespaces created here, never in the host namespace)::

    host netns (untouched: no address, link or route is ever added to it)
      <name>-node netns: lo, br0 = gateway/prefix (+ Service ClusterIPs via add_address), veth<N> ...
        <name>-pod-<id> netns: lo, eth0 = pod IP/prefix, default route via the gateway

The host process reaches into the node namespace with `NodeNetwork.listen` / `NodeNetwork.connect`: the socket is
created by the *calling thread* after it switched into the node namespace with setns(2) (through ctypes: Python 3.11
has no `os.setns`); the thread switches back to its original namespace (an fd to `/proc/thread-self/ns/net` is kept
for that) before anything else happens. A socket keeps the namespace it was created in for its whole life, so the
caller uses it from any thread like any other socket. Switching happens under a module-wide lock and only around
`socket.socket()`; the network namespace is a per-thread attribute, so no other thread is ever affected.

Cleanup: `down()` stops every process in our pod namespaces and the node namespace, closes the sockets handed out
by `listen`/`connect` that are still open (an open socket would keep its namespace, bridge and veths alive), deletes
the namespaces (which removes the veths and the bridge with them) and the state directory (spec and hosts files).
Processes are found by the inode of their network namespace (every thread is looked at), like `ip netns pids`.
Killed containers are not reaped here: their exit status belongs to the Popen `run_container` returned.

Beyond the kubelet's interface: `ContainerSpec.hostname`, `NodeNetwork.remove_address`, `pod_ip`, `node_netns`,
`state_dir`, and the helpers `in_netns`, `netns_pids`, `kill_netns_processes`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..procs import SandboxError

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
POD_IFACE = "eth0"
IP_TIMEOUT = 30.0
KILL_TIMEOUT = 10.0
PODINIT = Path(__file__).resolve().with_name("podinit.py")

_SETNS_LOCK = threading.Lock()
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Mount:
    """A volume of a container: a host directory bind-mounted at `path`, or an empty tmpfs (emptyDir)."""

    path: str  # mount path inside the container (absolute)
    source: str | None = None  # host directory to bind-mount; None with tmpfs=True means an empty tmpfs (emptyDir)
    read_only: bool = False
    tmpfs: bool = False


@dataclass
class ContainerSpec:
    """What to run and how: the resolved argv, the exact environment, identity, filesystem view and extra hosts."""

    argv: list[str]  # program + args, already resolved to local executables
    env: dict[str, str]
    workdir: str | None = None
    run_as_user: int | None = None  # setuid/setgid before exec (None = stay root)
    run_as_group: int | None = None
    read_only_root: bool = False  # the root filesystem is read-only for the process (mounts stay writable unless ro)
    mounts: list[Mount] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)  # extra /etc/hosts entries name -> IP (service DNS names)
    hostname: str | None = None  # the container's hostname (UTS namespace); None: derived from the pod id


@dataclass
class _Pod:
    netns: str
    ip: str
    veth: str


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace `fd` refers to."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(path: str | Path) -> Iterator[None]:
    """Run the body with the *calling thread* inside the network namespace at `path`, then switch it back.

    Only the calling thread moves (network namespaces are per thread); the lock keeps it to one switched thread
    at a time. Keep the body short: sockets created inside keep the namespace, nothing else should need it.
    """
    with _SETNS_LOCK:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                try:
                    _setns(own)
                except OSError as exc:  # pragma: no cover - the thread would stay in the wrong namespace
                    raise SandboxError(f"could not switch this thread back to its network namespace: {exc}") from exc
        finally:
            os.close(own)


def _ip(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS`; raise SandboxError with its stderr when it fails (unless check=False)."""
    result = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise SandboxError(f"ip {' '.join(args)} failed ({result.returncode}): {detail}")
    return result


def _netns_ino(name: str) -> int | None:
    """Inode of the named network namespace, or None when it does not exist."""
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def netns_pids(name: str) -> list[int]:
    """PIDs of the processes (any thread) living in the named network namespace (like `ip netns pids`)."""
    ino = _netns_ino(name)
    if ino is None:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            tasks = os.listdir(f"/proc/{entry}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                if os.stat(f"/proc/{entry}/task/{task}/ns/net").st_ino == ino:
                    pids.append(int(entry))
                    break
            except OSError:  # gone, or a zombie (no namespaces any more)
                continue
    return [pid for pid in pids if pid != os.getpid()]


def kill_netns_processes(name: str, grace: float = 0.0, timeout: float = KILL_TIMEOUT) -> None:
    """Stop every process in the named network namespace: SIGTERM, `grace` seconds, then SIGKILL until none is left.

    Killed processes are not reaped here: a container's exit status belongs to the Popen of whoever started it
    (reaping it here would make that Popen report 0). A zombie holds no namespace, so it does not count.
    """
    if grace > 0:
        for pid in netns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while netns_pids(name) and time.monotonic() < deadline:
            time.sleep(0.05)
    deadline = time.monotonic() + timeout
    while pids := netns_pids(name):
        if time.monotonic() > deadline:
            raise SandboxError(f"processes {pids} in network namespace {name} survived SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _slug(text: str, limit: int) -> str:
    """`text` reduced to [a-z0-9-], at most `limit` characters, plus a short hash when that changed anything."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if slug == text and len(slug) <= limit:
        return slug
    digest = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{slug[: limit - 9].rstrip('-')}-{digest}".lstrip("-")


class NodeNetwork:
    """A network namespace "the node" with a Linux bridge; each pod gets its own netns + veth + IP on it.

    `name` (at most 8 characters of [A-Za-z0-9_-], unique per user of this class) prefixes every namespace:
    `<name>-node` and `<name>-pod-<pod id>`. `down()` also removes `<name>-pod-*` namespaces left by an earlier
    process that died with the same name. Pod IPs come from `cidr` in order (network address, gateway and
    broadcast excluded, addresses given to `add_address` skipped) and are reused only after wrapping around.
    """

    def __init__(self, name: str, cidr: str = "10.213.0.0/16") -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,8}", name):
            raise ValueError(f"network name must be 1-8 characters of [A-Za-z0-9_-], not {name!r}")
        self.name = name
        self.cidr = ipaddress.IPv4Network(cidr)
        if self.cidr.num_addresses < 8:
            raise ValueError(f"{cidr} is too small for a pod network")
        self.gateway = str(self.cidr.network_address + 1)
        self.node_netns = f"{name}-node"
        self.state_dir: Path | None = None  # spec and hosts files of the containers; made by up()
        self._pods: dict[str, _Pod] = {}
        self._addresses: set[str] = set()
        self._veth_counter = 0
        self._next_host = 2  # offset of the next pod IP from the network address
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._lock = threading.RLock()

    # --- node -------------------------------------------------------------------------------------------------

    def up(self) -> None:
        """Create the node namespace (lo up) with the bridge holding the gateway address; idempotent."""
        with self._lock:
            if _netns_ino(self.node_netns) is None:
                _ip("netns", "add", self.node_netns)
            try:
                if _ip("-n", self.node_netns, "link", "show", BRIDGE, check=False).returncode != 0:
                    _ip("-n", self.node_netns, "link", "add", BRIDGE, "type", "bridge")
                addrs = _ip("-n", self.node_netns, "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
                gateway = f"{self.gateway}/{self.cidr.prefixlen}"
                commands = ["link set lo up", f"link set {BRIDGE} up"]
                if f" {gateway} " not in addrs:
                    commands.insert(0, f"addr add {gateway} dev {BRIDGE}")
                _ip("-n", self.node_netns, "-batch", "-", stdin="\n".join(commands) + "\n")
            except Exception:
                if not self._pods:
                    _ip("netns", "del", self.node_netns, check=False)
                raise
            if self.state_dir is None or not self.state_dir.is_dir():
                self.state_dir = Path(tempfile.mkdtemp(prefix=f"k8s-runtime-{self.name}-"))

    def down(self) -> None:
        """Stop everything in our namespaces, close our sockets, delete pod and node namespaces; idempotent."""
        with self._lock:
            errors: list[str] = []
            stale = [
                entry.name
                for entry in (NETNS_DIR.iterdir() if NETNS_DIR.is_dir() else [])
                if entry.name.startswith(f"{self.name}-pod-")
            ]
            for netns in dict.fromkeys([*(pod.netns for pod in self._pods.values()), *stale]):
                try:
                    self._delete_netns(netns)
                except SandboxError as exc:
                    errors.append(str(exc))
            self._pods.clear()
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()/recv() on it
                sock.close()
            self._sockets = weakref.WeakSet()
            try:
                self._delete_netns(self.node_netns)
            except SandboxError as exc:
                errors.append(str(exc))
            self._addresses.clear()
            if self.state_dir is not None:
                shutil.rmtree(self.state_dir, ignore_errors=True)
                self.state_dir = None
            if errors:
                raise SandboxError("; ".join(errors))

    def _delete_netns(self, netns: str) -> None:
        if _netns_ino(netns) is None:
            return
        kill_netns_processes(netns)
        result = _ip("netns", "del", netns, check=False)
        if result.returncode != 0 and _netns_ino(netns) is not None:
            raise SandboxError(f"ip netns del {netns} failed: {result.stderr.strip()}")

    def _require_up(self) -> None:
        if _netns_ino(self.node_netns) is None:
            raise SandboxError(f"node network {self.name} is not up (call up() first)")

    def add_address(self, ip: str) -> None:
        """Add `ip` (/32) to the bridge in the node namespace, e.g. a Service ClusterIP; idempotent.

        Pods reach it through the bridge (inside the CIDR: ARP on the bridge; outside: via the default route).
        """
        address = str(ipaddress.IPv4Address(ip))
        with self._lock:
            self._require_up()
            if address == self.gateway or address in (pod.ip for pod in self._pods.values()):
                raise SandboxError(f"{address} is already used by the gateway or a pod of network {self.name}")
            present = _ip("-n", self.node_netns, "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
            if f" {address}/32 " not in present:
                _ip("-n", self.node_netns, "addr", "add", f"{address}/32", "dev", BRIDGE)
            self._addresses.add(address)

    def remove_address(self, ip: str) -> None:
        """Remove an address added by `add_address` (a deleted Service); idempotent."""
        address = str(ipaddress.IPv4Address(ip))
        with self._lock:
            self._addresses.discard(address)
            if _netns_ino(self.node_netns) is not None:
                _ip("-n", self.node_netns, "addr", "del", f"{address}/32", "dev", BRIDGE, check=False)

    # --- pods -------------------------------------------------------------------------------------------------

    def pod_netns(self, pod_id: str) -> str:
        """The network namespace name of a pod (deterministic: valid before add_pod and after remove_pod)."""
        return f"{self.name}-pod-{_slug(pod_id, 40)}"

    def pod_ip(self, pod_id: str) -> str:
        """The IP given to a pod by add_pod (KeyError when it has none)."""
        return self._pods[pod_id].ip

    def _allocate_ip(self) -> str:
        used = {pod.ip for pod in self._pods.values()} | self._addresses | {self.gateway}
        size = self.cidr.num_addresses
        for step in range(size):
            offset = 2 + (self._next_host - 2 + step) % (size - 3)  # skip network, gateway and broadcast
            candidate = str(self.cidr.network_address + offset)
            if candidate not in used:
                self._next_host = offset + 1
                return candidate
        raise SandboxError(f"no free pod IP left in {self.cidr}")

    def add_pod(self, pod_id: str) -> str:
        """Give the pod a netns with lo up and eth0 (a veth to the bridge) holding the next free IP; returns it.

        Idempotent per pod_id: a pod that has its namespace gets its IP back. In the pod namespace unprivileged
        processes may bind any port (`ip_unprivileged_port_start=0`, as containerd sets it for pods).
        """
        with self._lock:
            self._require_up()
            netns = self.pod_netns(pod_id)
            pod = self._pods.get(pod_id)
            if pod is not None and _netns_ino(netns) is not None:
                return pod.ip
            self._pods.pop(pod_id, None)
            self._delete_netns(netns)  # a leftover of the same name (an earlier process, a half-made pod)
            ip = self._allocate_ip()
            self._veth_counter += 1
            veth = f"veth{self._veth_counter}"
            _ip("netns", "add", netns)
            try:
                node_cmds = [
                    f"link add {veth} type veth peer name {POD_IFACE} netns {netns}",
                    f"link set {veth} master {BRIDGE} up",
                ]
                _ip("-n", self.node_netns, "-batch", "-", stdin="\n".join(node_cmds) + "\n")
                pod_cmds = [
                    "link set lo up",
                    f"addr add {ip}/{self.cidr.prefixlen} dev {POD_IFACE}",
                    f"link set {POD_IFACE} up",
                    f"route add default via {self.gateway}",
                ]
                _ip("-n", netns, "-batch", "-", stdin="\n".join(pod_cmds) + "\n")
                with in_netns(NETNS_DIR / netns):
                    Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").write_text("0\n")
            except BaseException:
                _ip("netns", "del", netns, check=False)
                _ip("-n", self.node_netns, "link", "del", veth, check=False)
                raise
            self._pods[pod_id] = _Pod(netns=netns, ip=ip, veth=veth)
            return ip

    def remove_pod(self, pod_id: str) -> None:
        """Kill whatever still runs in the pod's namespace and delete it (its veth goes with it); idempotent."""
        with self._lock:
            self._pods.pop(pod_id, None)
            self._delete_netns(self.pod_netns(pod_id))
            if self.state_dir is not None:
                shutil.rmtree(self.state_dir / _slug(pod_id, 40), ignore_errors=True)

    # --- sockets in the node namespace ------------------------------------------------------------------------

    def _node_socket(self) -> socket.socket:
        self._require_up()
        with in_netns(NETNS_DIR / self.node_netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets.add(sock)
        return sock

    def listen(self, ip: str, port: int) -> socket.socket:
        """A TCP socket listening on ip:port *inside the node namespace* (reachable by pods; port 0 = any).

        The socket is created in the node namespace (setns of this thread, see the module docstring); binding,
        accepting and closing happen normally from any thread. down() closes it if the caller has not.
        """
        sock = self._node_socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self, ip: str, port: int, timeout: float) -> socket.socket:
        """A TCP socket connected to ip:port from *inside the node namespace* (probes, Service proxies to pods).

        `timeout` bounds the connect and stays set on the returned socket. Raises OSError (e.g.
        ConnectionRefusedError, TimeoutError) like `socket.create_connection`.
        """
        sock = self._node_socket()
        try:
            sock.settimeout(timeout)
            sock.connect((ip, port))
        except BaseException:
            sock.close()
            raise
        return sock


# --- containers -----------------------------------------------------------------------------------------------


def _validate(spec: ContainerSpec) -> None:
    if not spec.argv or not spec.argv[0]:
        raise ValueError("ContainerSpec.argv must name a program")
    for mount in spec.mounts:
        if not os.path.isabs(mount.path):
            raise ValueError(f"mount path must be absolute: {mount.path!r}")
        if mount.tmpfs == (mount.source is not None):
            raise ValueError(f"mount {mount.path}: give either source (bind) or tmpfs=True (emptyDir)")
    for name, ip in spec.hosts.items():
        ipaddress.ip_address(ip)
        if not name or any(ch.isspace() for ch in name) or "#" in name:
            raise ValueError(f"invalid hosts entry name {name!r}")
    if spec.workdir is not None and not os.path.isabs(spec.workdir):
        raise ValueError(f"workdir must be absolute: {spec.workdir!r}")


RESOLV = """\
# The sandbox has no cluster DNS: Service names resolve through /etc/hosts (ContainerSpec.hosts).
# A nameserver on the pod's own loopback makes other lookups fail at once instead of timing out.
nameserver 127.0.0.1
options timeout:1 attempts:1
"""


def _hosts_file(pod_ip: str, hostname: str, extra: dict[str, str]) -> str:
    """The container's /etc/hosts: the machine's, then the pod's own name, then the extra (Service) names."""
    try:
        base = Path("/etc/hosts").read_text()
    except OSError:
        base = "127.0.0.1\tlocalhost\n"
    lines = [base.rstrip("\n"), "", "# Added by the sandbox kubelet (sandbox/k8s/runtime.py)", f"{pod_ip}\t{hostname}"]
    lines += [f"{ip}\t{name}" for name, ip in extra.items()]
    return "\n".join(lines) + "\n"


def run_container(network: NodeNetwork, pod_id: str, spec: ContainerSpec, log_path: Path) -> subprocess.Popen:
    """Start the container's process in the pod's netns and its own mount namespace; stdout+stderr appended to log_path.

    The Popen is the process-group leader (start_new_session) so the caller can kill the group. Its PID is the
    container's main process: `ip netns exec` and `unshare` exec (no fork), then `podinit` sets up mounts,
    /etc/hosts (the machine's + `<pod IP> <hostname>` + spec.hosts), /etc/resolv.conf (no DNS server: nameserver
    127.0.0.1 in the pod, so unknown names fail fast and no query leaves for the host's resolver), the hostname
    (spec.hostname, else derived from pod_id) and the identity, and execs `spec.argv`. Setup failures end the
    process with a one-line reason in the log (exit 127: program not found, 126: not executable, 125: setup failed).
    The pod must have been added with `network.add_pod(pod_id)`. Raises ValueError for an invalid spec.
    """
    _validate(spec)
    if pod_id not in network._pods or network.state_dir is None:
        raise SandboxError(f"pod {pod_id!r} has no network (call network.add_pod first)")
    pod = network._pods[pod_id]
    hostname = spec.hostname or _slug(pod_id, 63)
    pod_dir = network.state_dir / _slug(pod_id, 40)
    pod_dir.mkdir(exist_ok=True)
    etc_files = {}
    for target, content in (("/etc/hosts", _hosts_file(pod.ip, hostname, spec.hosts)), ("/etc/resolv.conf", RESOLV)):
        fd, name = tempfile.mkstemp(dir=pod_dir, prefix=f"{Path(target).name}-")
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.chmod(name, 0o644)
        etc_files[target] = name
    payload = {
        **asdict(spec),
        "hostname": hostname,
        "etc_files": etc_files,
        "parent_mnt_ns": os.stat("/proc/self/ns/mnt").st_ino,
        "parent_uts_ns": os.stat("/proc/self/ns/uts").st_ino,
    }
    fd, spec_name = tempfile.mkstemp(dir=pod_dir, prefix="container-", suffix=".json")
    with os.fdopen(fd, "w") as out:
        json.dump(payload, out)
    argv = [
        "ip", "netns", "exec", pod.netns,
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        sys.executable, "-I", "-S", str(PODINIT), spec_name,
    ]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C.UTF-8"},
        )


__all__ = [
    "ContainerSpec",
    "Mount",
    "NodeNetwork",
    "in_netns",
    "kill_netns_processes",
    "netns_pids",
    "run_container",
]
