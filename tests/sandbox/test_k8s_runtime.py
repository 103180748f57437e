"""The sandbox container runtime (sandbox/k8s/runtime.py, podinit.py): real namespaces, bridges and processes.

Needs root, `ip netns`, `unshare`. Every private address lives in namespaces these tests create (the node and
its pods); the host namespace gets none. Each network fixture checks on teardown, whatever the test did, that
nothing is left: no namespace, no process in one of ours (any thread), no fd or mount holding one, no process
with our state directory in its command line, no change to the host's links and addresses.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.k8s.runtime import ContainerSpec, Mount, NodeNetwork, in_netns, netns_pids, run_container
from sandbox.procs import SandboxError


def _runtime_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    if not Path("/proc/thread-self/ns/net").exists():
        return "/proc/thread-self/ns/net is missing"
    return None


pytestmark = pytest.mark.skipif(_runtime_unavailable() is not None, reason=str(_runtime_unavailable()))

SESSION = secrets.token_hex(2)  # network names: kt<4 hex><2 digits>, unique per test session
_COUNTER = itertools.count()
INNER_ENV = "K8S_RUNTIME_INNER_REPORT"
SO_NETNS_COOKIE = 71  # linux/socket.h, Linux >= 5.14
PY = sys.executable
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HTTP = [PY, "-m", "http.server", "8080", "--bind", "0.0.0.0"]  # noqa: S104 - inside the pod's namespace


# --- observing the machine ---------------------------------------------------------------------------------------


def netns_names() -> list[str]:
    """Names listed by `ip netns list`."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_cookie(path: str) -> int | None:
    """The cookie of the network namespace at `path` (None when it is gone).

    Namespace inode numbers are reused as soon as a namespace is freed (by anyone creating namespaces on this
    machine), so "a process in inode N" after down() proves nothing by itself; the cookie is never reused.
    """
    try:
        with in_netns(path):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    with sock:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder)


def our_netns(name: str) -> dict[str, tuple[int, int]]:
    """Our namespaces while they exist: name -> (inode, cookie)."""
    found = {}
    for ns in netns_names():
        cookie = netns_cookie(f"/run/netns/{ns}") if ns.startswith(f"{name}-") else None
        if cookie is not None:
            found[ns] = (os.stat(f"/run/netns/{ns}").st_ino, cookie)
    return found


def host_network() -> tuple[str, str]:
    """The host namespace's link names and IPv4 addresses, to prove we never touch them."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    addrs = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
    names = sorted(line.split(":")[1].strip() for line in links.splitlines())
    return " ".join(names), " ".join(sorted(line.split()[3] for line in addrs.splitlines()))


def leftovers(name: str, namespaces: list[tuple[int, int]], markers: list[str]) -> list[str]:
    """Everything of network `name` still there: namespaces, processes/threads or fds in them, mounts, commands.

    `namespaces` are the (inode, cookie) pairs of our namespaces, taken before down().
    """
    problems = [f"netns {ns} still listed" for ns in netns_names() if ns.startswith(f"{name}-")]
    by_inode = dict(namespaces)
    cookies = set(by_inode.values())

    def ours(ns_path: str, ino: int) -> bool:
        return ino in by_inode and netns_cookie(ns_path) in cookies

    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                ns_path = f"/proc/{pid}/task/{task}/ns/net"
                if ours(ns_path, os.stat(ns_path).st_ino):
                    problems.append(f"task {pid}/{task} still in one of our namespaces")
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("net:[") and ours(f"/proc/{pid}/fd/{fd}", int(target[5:-1])):
                    problems.append(f"process {pid} holds fd {fd} on one of our namespaces")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or a zombie
            continue
        problems += [f"process {pid} ({cmdline[:100]}) has {marker}" for marker in markers if marker in cmdline]
    mounts = Path("/proc/self/mountinfo").read_text()
    problems += [f"mount left: {line}" for line in mounts.splitlines() if f"/run/netns/{name}-" in line]
    return problems


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie or a vanished process is not alive)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `check` (exceptions count as not yet) until truthy; fail the test naming `what`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as exc:
            last = exc
        else:
            if result:
                return result
            last = result
        time.sleep(0.01)
    raise AssertionError(f"{what} not within {timeout}s (last: {last!r})")


def http_get(net: NodeNetwork, ip: str, port: int, timeout: float = 2.0) -> str:
    """GET / from inside the node namespace; the status line."""
    with net.connect(ip, port, timeout) as sock:
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0].decode()


# --- fixtures ----------------------------------------------------------------------------------------------------


class Node:
    """A NodeNetwork plus the containers a test started on it (so teardown can reap and check them)."""

    def __init__(self, net: NodeNetwork, log_dir: Path) -> None:
        self.net = net
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self._logs = itertools.count()

    def start(self, pod_id: str, spec: ContainerSpec, log: Path | None = None) -> tuple[subprocess.Popen, Path]:
        log = log or self.log_dir / f"container-{next(self._logs)}.log"
        proc = run_container(self.net, pod_id, spec, log)
        self.procs.append(proc)
        return proc, log

    def run(self, pod_id: str, spec: ContainerSpec, timeout: float = 30) -> tuple[int, str]:
        """Run a container to its end: (exit code, log)."""
        proc, log = self.start(pod_id, spec)
        return proc.wait(timeout=timeout), log.read_text()


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Factory of up networks with unique names; teardown: down(), reap, and prove nothing is left."""
    made: list[tuple[Node, tuple[str, str]]] = []

    def make(cidr: str = "10.213.0.0/16") -> Node:
        host_before = host_network()
        net = NodeNetwork(f"kt{SESSION}{next(_COUNTER) % 100:02d}", cidr)
        node = Node(net, tmp_path / f"logs-{net.name}")
        made.append((node, host_before))
        net.up()
        return node

    yield make
    problems: list[str] = []
    for node, host_before in made:
        net = node.net
        namespaces = list(our_netns(net.name).values())
        markers = [str(net.state_dir)] if net.state_dir else []
        try:
            net.down()
        except Exception as exc:
            problems.append(f"down() of {net.name} failed: {exc!r}")
        for proc in node.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                problems.append(f"container {proc.pid} ({proc.args[-1]}) survived down()")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        problems += leftovers(net.name, namespaces, markers)
        if markers and Path(markers[0]).exists():
            problems.append(f"state directory {markers[0]} left")
        if host_network() != host_before:
            problems.append(f"host network changed: {host_before} -> {host_network()}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def node(make_node: Callable[..., Node]) -> Node:
    """One node network on 10.213.0.0/16."""
    return make_node()


def start_http(node: Node, pod_id: str) -> tuple[str, subprocess.Popen]:
    """A pod running `python -m http.server 8080`, answering; (pod IP, process)."""
    ip = node.net.add_pod(pod_id)
    proc, log = node.start(pod_id, ContainerSpec(argv=HTTP, env={}, workdir="/usr/share"))
    wait_for(lambda: http_get(node.net, ip, 8080).endswith("200 OK") or proc.poll(), 20, f"http.server in {pod_id}")
    assert proc.poll() is None, log.read_text()
    return ip, proc


def py(code: str, **kwargs: object) -> ContainerSpec:
    """A container running a Python snippet with an empty environment."""
    return ContainerSpec(argv=[PY, "-c", code], env={}, **kwargs)


# --- network -----------------------------------------------------------------------------------------------------


def test_two_pods_same_port_reachable_from_node(node: Node, record_property: Callable[[str, object], None]) -> None:
    started = time.monotonic()
    ip_a, proc_a = start_http(node, "default/web-a")
    record_property("pod_start_seconds", round(time.monotonic() - started, 3))
    ip_b, proc_b = start_http(node, "default/web-b")

    assert ip_a != ip_b
    assert {ip_a, ip_b} <= {f"10.213.0.{i}" for i in range(2, 255)}
    assert node.net.gateway == "10.213.0.1" not in (ip_a, ip_b)
    assert http_get(node.net, ip_a, 8080) == "HTTP/1.0 200 OK"
    assert http_get(node.net, ip_b, 8080) == "HTTP/1.0 200 OK"
    # Each server is its own process in its own namespace (same port, no conflict), leading its process group.
    assert netns_pids(node.net.pod_netns("default/web-a")) == [proc_a.pid]
    assert netns_pids(node.net.pod_netns("default/web-b")) == [proc_b.pid]
    assert os.getpgid(proc_a.pid) == proc_a.pid
    # Pod to pod over the bridge.
    code = f"import urllib.request; print(urllib.request.urlopen('http://{ip_b}:8080/', timeout=5).status)"
    assert node.run("default/web-a", py(code)) == (0, "200\n")


def test_pod_reaches_node_listener_and_cluster_ips(node: Node) -> None:
    net = node.net
    pod_ip = net.add_pod("client")
    net.add_address("10.213.255.10")  # a ClusterIP inside the pod CIDR (ARP on the bridge)
    net.add_address("10.96.0.10")  # and one outside it (through the pod's default route to the gateway)
    received: dict[str, object] = {}

    def serve(server: socket.socket, key: str) -> None:
        conn, peer = server.accept()
        with conn:
            received[key] = (conn.recv(100), peer[0])
            conn.sendall(b"hello pod " + key.encode())

    servers = {
        "gateway": net.listen(net.gateway, 0),
        "clusterip": net.listen("10.213.255.10", 80),
        "outside": net.listen("10.96.0.10", 443),
    }
    threads = [threading.Thread(target=serve, args=(s, key), daemon=True) for key, s in servers.items()]
    for thread in threads:
        thread.start()
    port = servers["gateway"].getsockname()[1]
    targets = [(net.gateway, port), ("my-svc.default.svc.cluster.local", 80), ("10.96.0.10", 443)]
    code = (
        "import socket\n"
        f"for host, port in {targets!r}:\n"
        "    s = socket.create_connection((host, port), 5); s.sendall(b'hi'); print(s.recv(100).decode()); s.close()\n"
    )
    spec = py(code, hosts={"my-svc.default.svc.cluster.local": "10.213.255.10"})
    assert node.run("client", spec) == (0, "hello pod gateway\nhello pod clusterip\nhello pod outside\n")
    for thread in threads:
        thread.join(5)
    # The node sees the pod's own IP as the source: Service proxies can tell pods apart.
    assert received == {key: (b"hi", pod_ip) for key in servers}
    for server in servers.values():
        server.close()
    net.remove_address("10.96.0.10")
    code = "import socket\ntry:\n    socket.create_connection(('10.96.0.10', 443), 1)\nexcept OSError:\n    print('gone')\n"
    assert node.run("client", py(code)) == (0, "gone\n")


def test_pod_loopback_is_its_own(node: Node) -> None:
    node.net.add_pod("lonely")
    with socket.create_server(("127.0.0.1", 0)) as host_server:
        host_server.setblocking(False)
        port = host_server.getsockname()[1]
        code = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), 3)\n"
            "    print('reached the host')\n"
            "except ConnectionRefusedError:\n"
            "    print('refused')\n"
            "own = socket.create_server(('127.0.0.1', 0))\n"
            "socket.create_connection(own.getsockname(), 3)\n"
            "print('own loopback ok')\n"
        )
        assert node.run("lonely", py(code)) == (0, "refused\nown loopback ok\n")
        with pytest.raises(BlockingIOError):
            host_server.accept()  # nothing ever arrived at the host's 127.0.0.1


def test_connect_errors_and_thread_namespace_restored(node: Node) -> None:
    net = node.net
    ip = net.add_pod("quiet")
    own = os.stat("/proc/thread-self/ns/net").st_ino
    with pytest.raises(ConnectionRefusedError):
        net.connect(ip, 9, 2.0)
    started = time.monotonic()
    with pytest.raises(OSError):  # nobody has this address on the bridge: timeout (or host unreachable)
        net.connect("10.213.0.250", 80, 0.5)
    assert time.monotonic() - started < 3.5
    assert os.stat("/proc/thread-self/ns/net").st_ino == own

    # Many threads switching at once: each gets a node-namespace socket and comes back home.
    server = net.listen(net.gateway, 0)
    port = server.getsockname()[1]
    results: list[bool] = []

    def worker() -> None:
        before = os.stat("/proc/thread-self/ns/net").st_ino
        with net.connect(net.gateway, port, 5.0):
            results.append(os.stat("/proc/thread-self/ns/net").st_ino == before)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [True] * 16
    assert os.stat("/proc/thread-self/ns/net").st_ino == own
    # The host namespace cannot bind the gateway address: the listener really is in the node namespace.
    with pytest.raises(OSError) as exc_info, socket.socket() as host_sock:
        host_sock.bind((net.gateway, 0))
    assert exc_info.value.errno == errno.EADDRNOTAVAIL
    server.close()


def test_ip_allocation_idempotency_and_addresses(make_node: Callable[..., Node]) -> None:
    node = make_node("10.214.0.0/29")  # hosts .1 (gateway) to .6
    net = node.net
    net.up()  # idempotent
    net.add_address("10.214.0.3")
    net.add_address("10.214.0.3")
    ips = [net.add_pod(f"p{i}") for i in range(4)]
    assert ips == ["10.214.0.2", "10.214.0.4", "10.214.0.5", "10.214.0.6"]
    assert net.add_pod("p1") == "10.214.0.4"
    assert net.pod_netns("p1") == net.pod_netns("p1") != net.pod_netns("p2")
    assert net.pod_netns("ns/Pod_1").startswith(f"{net.name}-pod-")
    assert "/" not in net.pod_netns("ns/Pod_1")
    with pytest.raises(SandboxError, match="no free pod IP"):
        net.add_pod("one-too-many")
    with pytest.raises(SandboxError, match="already used"):
        net.add_address("10.214.0.2")
    net.remove_pod("p0")
    net.remove_pod("p0")
    assert net.pod_netns("p0") not in netns_names()
    assert net.add_pod("p0") == "10.214.0.2"
    with pytest.raises(SandboxError, match="add_pod"):
        run_container(net, "never-added", py("pass"), node.log_dir / "x.log")
    with pytest.raises(ValueError, match="absolute"):
        run_container(net, "p0", py("pass", mounts=[Mount("relative", tmpfs=True)]), node.log_dir / "x.log")
    with pytest.raises(ValueError, match="either source"):
        run_container(net, "p0", py("pass", mounts=[Mount("/x")]), node.log_dir / "x.log")
    with pytest.raises(ValueError, match="1-8 characters"):
        NodeNetwork("much-too-long")


def test_remove_pod_kills_its_processes_only(node: Node) -> None:
    ip_a, proc_a = start_http(node, "a")
    ip_b, _ = start_http(node, "b")
    child_proc, _ = node.start("a", ContainerSpec(argv=["/bin/sh", "-c", "sleep 300 & exec sleep 301"], env={}))
    wait_for(lambda: len(netns_pids(node.net.pod_netns("a"))) == 3, 10, "three processes in pod a")
    pids = netns_pids(node.net.pod_netns("a"))
    node.net.remove_pod("a")
    assert node.net.pod_netns("a") not in netns_names()
    assert proc_a.wait(5) == -signal.SIGKILL
    assert child_proc.wait(5) == -signal.SIGKILL
    for pid in pids:  # the backgrounded grandchild too
        wait_for(lambda pid=pid: not alive(pid), 5, f"process {pid} gone")
    assert http_get(node.net, ip_b, 8080) == "HTTP/1.0 200 OK"
    assert node.net.add_pod("a") != ip_a  # not reused at once


def test_killpg_stops_the_container_group(node: Node) -> None:
    node.net.add_pod("grp")
    proc, _ = node.start("grp", ContainerSpec(argv=["/bin/sh", "-c", "sleep 300 & sleep 300 & wait"], env={}))
    wait_for(lambda: len(netns_pids(node.net.pod_netns("grp"))) == 3, 10, "three processes")
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(5) == -signal.SIGKILL
    wait_for(lambda: netns_pids(node.net.pod_netns("grp")) == [], 5, "an empty pod namespace")


def test_down_leaves_nothing_and_is_idempotent(node: Node) -> None:
    net = node.net
    start_http(node, "web")
    net.add_pod("bg")
    node.start("bg", ContainerSpec(argv=["/bin/sh", "-c", "sleep 300 & exec sleep 301"], env={}))
    wait_for(lambda: len(netns_pids(net.pod_netns("bg"))) == 2, 10, "two processes")
    listener = net.listen(net.gateway, 0)
    client = net.connect(net.gateway, listener.getsockname()[1], 2.0)
    names = our_netns(net.name)
    assert set(names) == {net.node_netns, net.pod_netns("web"), net.pod_netns("bg")}
    pids = [pid for ns in names for pid in netns_pids(ns)]
    state_dir = net.state_dir
    assert state_dir is not None
    assert state_dir.is_dir()

    net.down()

    assert leftovers(net.name, list(names.values()), [str(state_dir)]) == []
    assert not state_dir.exists()
    assert (listener.fileno(), client.fileno()) == (-1, -1)  # open sockets would keep the node alive
    for proc in node.procs:
        assert proc.wait(5) == -signal.SIGKILL
    for pid in pids:
        wait_for(lambda pid=pid: not alive(pid), 5, f"process {pid} gone")
    net.down()
    # Usable again after down().
    net.up()
    ip = net.add_pod("again")
    assert node.run("again", ContainerSpec(argv=["/bin/true"], env={})) == (0, "")
    assert ip.startswith("10.213.0.")


def test_down_removes_stale_pod_namespaces_of_its_name(make_node: Callable[..., Node]) -> None:
    node = make_node()
    net = node.net
    stale = f"{net.name}-pod-leftover"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    sleeper = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "300"], start_new_session=True)
    node.procs.append(sleeper)
    wait_for(lambda: netns_pids(stale) == [sleeper.pid], 5, "the stale sleeper")
    net.down()
    assert stale not in netns_names()
    assert sleeper.wait(5) == -signal.SIGKILL


# --- containers --------------------------------------------------------------------------------------------------


def test_read_only_root_with_writable_volumes(node: Node, tmp_path: Path) -> None:
    node.net.add_pod("ro")
    token = secrets.token_hex(4)
    var_tmp, tmp = Path("/var") / "tmp", Path("/") / "tmp"  # the host's own (ruff S108 wants this spelled out)
    bind_src = tmp_path / "rw-src"
    bind_src.mkdir()
    target = tmp_path / "mnt" / "rw"  # under /tmp: reachable although a tmpfs is mounted over /tmp first
    code = (
        "import errno, os\n"
        "def write(path):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); return 'ok'\n"
        "    except OSError as exc:\n"
        "        return errno.errorcode[exc.errno]\n"
        f"print('root', write('{var_tmp}/x-{token}'))\n"
        f"print('tmpfs', write('{tmp}/y-{token}'))\n"
        f"print('bind', write('{target}/z'))\n"
        "print('hosts', write('/etc/hosts'))\n"
    )
    spec = py(code, read_only_root=True, mounts=[Mount(str(tmp), tmpfs=True), Mount(str(target), source=str(bind_src))])
    assert node.run("ro", spec) == (0, "root EROFS\ntmpfs ok\nbind ok\nhosts ok\n")
    assert not (var_tmp / f"x-{token}").exists()
    assert not (tmp / f"y-{token}").exists()  # the tmpfs was the container's own
    assert (bind_src / "z").read_text() == "x"
    # The host's root filesystem is still writable: only the container's view of it was read-only.
    probe = var_tmp / f"host-{token}"
    probe.write_text("still writable")
    probe.unlink()
    # Without read_only_root the same write works.
    assert node.run("ro", py(f"open('{var_tmp}/x-{token}', 'w').write('x')")) == (0, "")
    (var_tmp / f"x-{token}").unlink()


def test_bind_mounts_read_only_file_and_missing_source(node: Node, tmp_path: Path) -> None:
    node.net.add_pod("vol")
    src = tmp_path / "config"
    src.mkdir()
    (src / "app.conf").write_text("answer=42\n")
    single = tmp_path / "secret.txt"
    single.write_text("s3cret")
    mnt = tmp_path / "mnt"
    code = (
        "import os\n"
        f"print(open('{mnt}/conf/app.conf').read().strip())\n"
        f"print(open('{mnt}/etc/secret').read())\n"
        "try:\n"
        f"    open('{mnt}/conf/new', 'w')\n"
        "except OSError as exc:\n"
        "    print(exc.strerror)\n"
    )
    mounts = [
        Mount(str(mnt / "conf"), source=str(src), read_only=True),
        Mount(str(mnt / "etc" / "secret"), source=str(single), read_only=True),
    ]
    assert node.run("vol", py(code, mounts=mounts)) == (0, "answer=42\ns3cret\nRead-only file system\n")
    assert not (src / "new").exists()
    # Mount points were created on the host's filesystem (documented), empty there.
    assert (mnt / "conf").is_dir()
    assert list((mnt / "conf").iterdir()) == []
    assert (mnt / "etc" / "secret").read_text() == ""

    missing = py("print('ran')", mounts=[Mount(str(mnt / "x"), source="/nonexistent-src-dir")])
    rc, log = node.run("vol", missing)
    assert (rc, log) == (125, "podinit: mount source /nonexistent-src-dir: No such file or directory\n")


def test_run_as_user_and_workdir(node: Node, tmp_path: Path) -> None:
    node.net.add_pod("user")
    ids = ContainerSpec(argv=["/bin/sh", "-c", "id -u; id -g; id -G; pwd"], env={}, workdir="/usr/share")
    assert node.run("user", ids) == (0, "0\n0\n0\n/usr/share\n")
    ids.run_as_user, ids.run_as_group = 65534, 65534
    assert node.run("user", ids) == (0, "65534\n65534\n65534\n/usr/share\n")
    ids.run_as_user, ids.run_as_group = 1234, 4321
    assert node.run("user", ids) == (0, "1234\n4321\n4321\n/usr/share\n")
    ids.run_as_user, ids.run_as_group = 65534, None  # group from /etc/passwd (nobody -> nogroup)
    assert node.run("user", ids)[1].splitlines()[:2] == ["65534", "65534"]
    # chdir happens as the user: a 0700 directory of root is refused, clearly.
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    ids.workdir = str(private)
    assert node.run("user", ids) == (125, f"podinit: cannot change to working directory {private}: Permission denied\n")


def test_environment_is_exactly_the_spec(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKED_FROM_KUBELET", "1")
    node.net.add_pod("env")
    rc, out = node.run("env", ContainerSpec(argv=["/usr/bin/env"], env={"FOO": "bar baz", "EMPTY": ""}))
    assert rc == 0
    assert sorted(out.splitlines()) == ["EMPTY=", "FOO=bar baz", f"PATH={DEFAULT_PATH}"]
    rc, out = node.run("env", ContainerSpec(argv=["env"], env={"PATH": "/usr/bin:/bin", "X": "1"}))
    assert (rc, sorted(out.splitlines())) == (0, ["PATH=/usr/bin:/bin", "X=1"])


def test_hosts_entries_and_hostname(node: Node) -> None:
    host_hosts = Path("/etc/hosts").read_bytes()
    host_name = socket.gethostname()
    ip = node.net.add_pod("default/api-7f9c")
    hosts = {"my-svc.default.svc.cluster.local": "10.213.255.10", "db": "10.213.255.11"}
    script = "getent hosts my-svc.default.svc.cluster.local db localhost; hostname; getent hosts $(hostname)"
    rc, out = node.run("default/api-7f9c", ContainerSpec(argv=["/bin/sh", "-c", script], env={}, hosts=hosts))
    assert rc == 0, out
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["10.213.255.10", "my-svc.default.svc.cluster.local"]
    assert lines[1] == ["10.213.255.11", "db"]
    assert lines[2][0] == "127.0.0.1"  # the machine's entries are kept
    hostname = lines[3][0]
    assert hostname.startswith("default-api-7f9c")
    assert lines[4] == [ip, hostname]
    # No DNS server: an unknown name fails at once (the pod's own loopback), nothing goes to the host's resolver.
    started = time.monotonic()
    rc, out = node.run("default/api-7f9c", ContainerSpec(argv=["getent", "hosts", "unknown.example"], env={}))
    assert (rc, out) == (2, "")
    assert time.monotonic() - started < 3
    spec = ContainerSpec(argv=["/bin/hostname"], env={}, hostname="api-0")
    assert node.run("default/api-7f9c", spec) == (0, "api-0\n")
    assert Path("/etc/hosts").read_bytes() == host_hosts
    assert socket.gethostname() == host_name


def test_exec_failures_exit_codes_and_log(node: Node, tmp_path: Path) -> None:
    node.net.add_pod("bad")
    log = node.log_dir / "shared.log"
    proc, _ = node.start("bad", ContainerSpec(argv=["/nonexistent/prog", "--flag"], env={}), log)
    assert proc.wait(10) == 127
    proc, _ = node.start("bad", ContainerSpec(argv=["no-such-program-k8s"], env={}), log)
    assert proc.wait(10) == 127
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("echo hi\n")
    proc, _ = node.start("bad", ContainerSpec(argv=[str(not_executable)], env={}), log)
    assert proc.wait(10) == 126
    proc, _ = node.start("bad", ContainerSpec(argv=["/bin/echo", "ran"], env={}), log)
    assert proc.wait(10) == 0
    assert log.read_text().splitlines() == [  # appended, one clear line each
        'podinit: exec "/nonexistent/prog": executable file not found',
        'podinit: exec "no-such-program-k8s": executable file not found in $PATH',
        f'podinit: exec "{not_executable}": permission denied',
        "ran",
    ]


def test_signals_python_ignores_are_reset(node: Node) -> None:
    # podinit is Python, which ignores SIGPIPE and SIGXFSZ; ignored dispositions survive exec, so it must reset them.
    node.net.add_pod("sig")
    rc, out = node.run("sig", ContainerSpec(argv=["/bin/grep", "SigIgn", "/proc/self/status"], env={}))
    assert rc == 0, out
    ignored = int(out.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))


# --- cleanup after a failing test --------------------------------------------------------------------------------


@pytest.mark.skipif(INNER_ENV not in os.environ, reason="run by test_failing_test_still_cleans_up only")
def test_inner_deliberate_failure(node: Node) -> None:
    """Fails on purpose with pods, processes and sockets alive; the fixture must still clean up."""
    net = node.net
    start_http(node, "doomed")
    net.add_pod("sleeper")
    node.start("sleeper", ContainerSpec(argv=["/bin/sh", "-c", "sleep 300 & exec sleep 301"], env={}))
    wait_for(lambda: len(netns_pids(net.pod_netns("sleeper"))) == 2, 10, "two sleepers")
    listener = net.listen(net.gateway, 0)
    names = our_netns(net.name)
    report = {
        "name": net.name,
        "namespaces": list(names.values()),
        "state_dir": str(net.state_dir),
        "pids": [pid for ns in names for pid in netns_pids(ns)],
        "listener": listener.getsockname()[1],
    }
    Path(os.environ[INNER_ENV]).write_text(json.dumps(report))
    raise AssertionError("deliberate failure")


def test_failing_test_still_cleans_up(tmp_path: Path) -> None:
    report_path = tmp_path / "inner.json"
    result = subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::test_inner_deliberate_failure"],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, INNER_ENV: str(report_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed" in summary
    assert "error" not in summary  # the fixture's own cleanup checks passed
    assert "deliberate failure" in result.stdout
    report = json.loads(report_path.read_text())
    assert len(report["namespaces"]) == 3
    assert len(report["pids"]) == 3
    namespaces = [(ino, cookie) for ino, cookie in report["namespaces"]]
    assert leftovers(report["name"], namespaces, [report["state_dir"]]) == []
    assert not Path(report["state_dir"]).exists()
    for pid in report["pids"]:
        assert not alive(pid)
