"""A real Kubernetes as a sandbox service, built from upstream sources (sandbox/build.py): a control plane and
SANDBOX_NODES worker nodes.

`start()` brings up, inside the control plane node's own network and mount namespaces and cgroup subtree
(sandbox/node.py): etcd (data in the state directory, so objects survive `down`/`up`), kube-apiserver (TLS from the
sandbox's CA, x509 client certificates, Node + RBAC authorization, NodeRestriction, service-account keys, an audit
log), kube-controller-manager and kube-scheduler with their own identities; then on every node (the control plane's
and each worker's, each in namespaces and a cgroup subtree of its own: sandbox/noderuntime.py) containerd 2.x with
runc, the overlayfs snapshotter and CNI (a bridge on the node's pod /24), the kubelet (cgroupfs driver, cgroup v1
allowed) and kube-proxy (iptables mode). With workers, the control plane's node is tainted NoSchedule (as kind's):
pods run on the workers. One forwarder process joins host and control plane: the host reaches the API server on
127.0.0.1:<k8s port>, and pods reach the sandbox's PostgreSQL and S3 at the control plane node's address. `stop()`
stops it all and removes the namespaces and cgroups, and with them every rule, mount and interface it made.
What `up` then asks of the API server as the admin (the RBAC bootstrap, the control plane's taint) is in
sandbox/kubeadmin.py.

Addresses (sandbox/topology.py; all inside the sandbox's own network namespaces, so sandboxes never collide): nodes
in the first /24 of SANDBOX_POD_CIDR (the control plane's first: the "pod gateway" the PostgreSQL certificate
names), each node's pods in a /24 of its own after it, Services 10.96.0.0/16.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import build, images
from .config import REPO_ROOT, SandboxConfig
from .forward import ServiceForwards
from .kubeadmin import ClusterAdmin
from .kubepki import ClusterPKI
from .node import Fabric
from .nodeconf import API_PORT, AUDIT_POLICY, NODE_NAME, ControlPlanePaths, control_plane_argv
from .noderuntime import NodeRuntime
from .pins import ON_DEMAND, PAUSE_IMAGE
from .procs import SandboxError, cmdline, spawn, terminate, wait_until
from .topology import NodeSpec, plan

SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service
# The control plane's processes, in start order; stopped in reverse. Each: the cgroup subtree it runs in. Every
# node's containerd, kubelet and kube-proxy (noderuntime.RUNTIME) run in that node's `system` subtree.
COMPONENTS = {
    "forwarder": None,  # on the host (it makes its node-side sockets with setns)
    "etcd": "control-plane",
    "kube-apiserver": "control-plane",
    "kube-controller-manager": "control-plane",
    "kube-scheduler": "control-plane",
}


NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy")  # in the order they start


class KubeCluster:
    name = "kubernetes"

    def __init__(self, config: SandboxConfig, images: list[str] | None = None, node_grace: int | None = None) -> None:
        """`node_grace` (seconds; tests of a lost node): the node-lifecycle controller's grace period and the
        kubelets' Lease duration, instead of upstream's 50 s and 40 s."""
        self.config = config
        # Names to import into the nodes (default: every image sandbox/images.py builds).
        self.images = images if images is not None else config.k8s_images
        self.node_grace = node_grace
        self.base = config.state_dir / "kubernetes"
        self.kubeconfig = config.state_dir / "kubeconfig"  # the admin's, for the host
        self.pki_dir = self.base / "pki"
        self.conf = self.base / "conf"
        self.logs = self.base / "logs"
        self.pid_file = self.base / "pids.json"
        self.nodes_file = self.base / "nodes.json"
        self.audit_log = self.base / "audit.log"
        self.fabric = Fabric(self.short_name)
        self.admin = ClusterAdmin(
            self.url, self.pki_dir, self.kubeconfig, self.base / "kubeconfig" / "super-admin-host.conf"
        )
        # A running sandbox keeps the nodes it was started with (`down` must find every one, whatever is asked now).
        recorded = self._recorded_workers()
        self.workers = recorded if recorded is not None and self.pid_file.exists() else config.nodes
        self.plan = plan(config.pod_cidr, self.workers)
        network = ipaddress.ip_network(config.pod_cidr)
        cluster_cidr = str(network)
        self.runtimes = [NodeRuntime(spec, self.base, self.short_name, self.fabric, cluster_cidr=cluster_cidr,
                                     lease_seconds=node_grace or 40) for spec in self.plan]  # fmt: skip
        self.control_plane = self.runtimes[0]
        self.node_ip = self.control_plane.spec.ip
        self.pod_subnet = self.control_plane.spec.pod_subnet
        self.nodes = self.control_plane.ns

    def _recorded_workers(self) -> int | None:
        try:
            return int(json.loads(self.nodes_file.read_text())["workers"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def schedulable(self) -> list[NodeRuntime]:
        """The nodes pods run on: the workers, or the control plane's node when there are none."""
        return self.runtimes[1:] or self.runtimes[:1]

    def runtime(self, node: str) -> NodeRuntime:
        found = [rt for rt in self.runtimes if rt.name == node]
        if not found:
            raise SandboxError(f"no node {node!r} in this sandbox ({', '.join(rt.name for rt in self.runtimes)})")
        return found[0]

    # -- names and paths ----------------------------------------------------------------------------------------

    @property
    def short_name(self) -> str:
        """Prefix of this sandbox's namespaces and cgroups (unique per state directory; interface-name sized)."""
        return "sb" + hashlib.sha256(str(self.config.state_dir).encode()).hexdigest()[:5]

    @property
    def marker(self) -> str:
        return str(self.base)

    @property
    def url(self) -> str:
        return f"https://{self.config.host}:{self.config.k8s_port}"

    @property
    def gateway(self) -> str:
        return self.node_ip

    @staticmethod
    def node_supported() -> bool:
        return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("ip", "nsenter", "unshare", "iptables"))

    def ports(self) -> list[int]:
        return [self.config.k8s_port]

    def pids(self) -> dict[str, int]:
        try:
            return {name: int(pid) for name, pid in json.loads(self.pid_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def pid(self) -> int | None:
        return self.pids().get("kube-apiserver")

    def _alive(self, component: str) -> bool:
        pid = self.pids().get(component)
        return bool(pid) and self.marker in cmdline(pid)

    def is_running(self) -> bool:
        return self._alive("kube-apiserver")

    # -- configuration --------------------------------------------------------------------------------------

    def _write(self, name: str, text: str) -> Path:
        path = self.conf / name
        path.write_text(text)
        return path

    def configure(self, bins: build.Artifacts) -> None:
        for directory in (self.conf, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        pki = ClusterPKI(self.pki_dir)
        pki.ensure(NODE_NAME, self.node_ip, SERVICE_IP)
        inside = f"https://{self.node_ip}:{API_PORT}"
        kc = self.base / "kubeconfig"
        for stem, user, file in (
            ("super-admin", "kubernetes-super-admin", "super-admin.conf"),
            ("admin", "kubernetes-admin", "admin.conf"),
            ("controller-manager", "system:kube-controller-manager", "controller-manager.conf"),
            ("scheduler", "system:kube-scheduler", "scheduler.conf"),
            ("kube-proxy", "system:kube-proxy", "kube-proxy.conf"),
        ):
            pki.kubeconfig(kc / file, stem, user, inside)
        pki.kubeconfig(self.kubeconfig, "admin", "kubernetes-admin", self.url)
        pki.kubeconfig(kc / "super-admin-host.conf", "super-admin", "kubernetes-super-admin", self.url)
        self._write("audit-policy.json", json.dumps(AUDIT_POLICY, indent=2))
        for runtime in self.runtimes:
            runtime.configure(bins, pki, inside)

    def _argv(self, component: str, bins: build.Artifacts) -> list[str]:
        if component == "forwarder":
            host, node = self.config.host, self.node_ip
            return [_python(), "-m", "sandbox.forward", "--netns", str(self.nodes.netns_path), "--marker", self.marker,
                    "--into", f"{host}:{self.config.k8s_port}={node}:{API_PORT}",
                    "--out", f"{node}:{self.config.pg_port}={host}:{self.config.pg_port}",
                    "--out", f"{node}:{self.config.s3_port}={host}:{self.config.s3_port}"]  # fmt: skip
        paths = ControlPlanePaths(pki=self.pki_dir, kubeconfigs=self.base / "kubeconfig", etcd_data=self.base / "etcd",
                                  audit_policy=self.conf / "audit-policy.json", audit_log=self.audit_log)  # fmt: skip
        return control_plane_argv(component, str(bins.component(component)), paths, self.node_ip, self.node_grace)

    # -- start / stop -------------------------------------------------------------------------------------------

    def _launch(self, component: str, bins: build.Artifacts, runtime: NodeRuntime | None = None) -> None:
        """Start a control-plane component (`runtime` None) or one of a node's (containerd, kubelet, kube-proxy)."""
        key = runtime.key(component) if runtime else component
        if self._alive(key):
            return
        node = runtime or self.control_plane
        argv = runtime.argv(component, bins) if runtime else self._argv(component, bins)
        sub = "system" if runtime else COMPONENTS[component]
        # containerd must find its own shim first; the kubelet and kube-proxy need iptables and mount.
        env = {**os.environ, "PATH": f"{bins.containerd_dir}:{bins.cluster_dir}:/usr/sbin:/usr/bin:/sbin:/bin"}
        log_path = node.log(component)
        if component == "forwarder":
            env["PYTHONPATH"] = str(REPO_ROOT)
            proc = spawn(argv, log_path, env=env)
        else:
            with log_path.open("ab") as log:
                proc = subprocess.Popen(node.ns.command(argv), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                        preexec_fn=node.ns.joiner(sub))  # noqa: PLW1509  # fmt: skip
        pids = self.pids()
        pids[key] = proc.pid
        self.pid_file.write_text(json.dumps(pids))

    def start(self) -> None:
        if not self.node_supported():
            raise SandboxError("the sandbox's Kubernetes needs root and iproute2, util-linux and iptables "
                               "(network and mount namespaces, cgroups)")  # fmt: skip
        bins = build.artifacts()
        built = (bins.cluster_dir, bins.cni_dir, bins.containerd_dir)
        missing = [str(d) for d in built if not (d / ".complete").exists()]
        if missing:
            raise SandboxError(f"Kubernetes is not built yet ({', '.join(missing)}): run `make setup` "
                               "(or `python -m sandbox build`)")  # fmt: skip
        self.base.mkdir(parents=True, exist_ok=True)
        self._retire_workers()
        self.nodes_file.write_text(json.dumps({"workers": self.workers, "nodes": [s.name for s in self.plan]}))
        for runtime in self.runtimes:
            runtime.ns.up()
        self._route()
        self.configure(bins)
        self.timings: dict[str, float] = {}
        started = time.monotonic()
        for component in ("forwarder", "etcd", "kube-apiserver"):
            self._launch(component, bins)
        self._wait_api(started)
        self.timings["api"] = time.monotonic() - started
        self.admin.bootstrap_rbac()
        for component in ("kube-controller-manager", "kube-scheduler"):
            self._launch(component, bins)
        for runtime in self.runtimes:
            self._launch("containerd", bins, runtime)
        for runtime in self.runtimes:
            self._wait_containerd(bins, runtime)
        self._import_images(bins)
        for runtime in self.runtimes:
            for component in ("kubelet", "kube-proxy"):
                self._launch(component, bins, runtime)

    def revive(self) -> list[str]:
        """`up` of a running cluster: components that died since (or that an interrupted `up` never started) are
        started again, as an operator restarts a crashed daemon; a worker whose containerd died comes back as a
        rebooted machine (its pods died with it; the control plane's node keeps its namespaces, which hold etcd and
        the API server). What was started, by name; nothing when all is alive. Before, `up` said "already running"
        and then waited for nodes a dead kubelet would never make Ready."""
        bins = build.artifacts()
        revived = [c for c in COMPONENTS if not self._alive(c)]
        for component in revived:
            self._launch(component, bins)
        for runtime in self.runtimes:
            dead = [c for c in NODE_COMPONENTS if not self._alive(runtime.key(c))]
            if "containerd" in dead and runtime.spec.worker:
                self.restore_node(runtime.name)
            else:
                for component in dead:
                    self._launch(component, bins, runtime)
                    if component == "containerd":
                        self._wait_containerd(bins, runtime)
            revived += [runtime.key(c) for c in dead]
        return revived

    def _route(self) -> None:
        """Every node reaches every other node's pods through that node (static routes over the fabric)."""
        for runtime in self.runtimes:
            others = {s.pod_subnet: s.ip for s in self.plan if s.name != runtime.name}
            self.fabric.route(runtime.ns.netns, others)

    def _retire_workers(self) -> None:
        """Workers a former `up` started and this one does not: their namespaces and state go (their Node objects
        are deleted once the API answers: `wait_ready`)."""
        keep = {rt.name for rt in self.runtimes}
        for old in sorted((self.base / "workers").glob("*")) if (self.base / "workers").is_dir() else []:
            if old.name in keep:
                continue
            index = old.name.rsplit("-", 1)[-1]
            if index.isdigit():
                spec = NodeSpec(old.name, int(index), "10.0.0.1", "10.0.1.0/24", "")  # its namespaces' names only
                NodeRuntime(spec, self.base, self.short_name, self.fabric, cluster_cidr="10.0.0.0/16").ns.down()
            shutil.rmtree(old, ignore_errors=True)

    def get(self, path: str, timeout: float = 5) -> bytes:
        """GET from the API server through the host's address, as the admin."""
        return self.admin.get(path, timeout)

    def _check_alive(self) -> None:
        for component, pid in self.pids().items():
            if not (pid and self.marker in cmdline(pid)):
                node, _, name = component.rpartition("/")
                log = (self.runtime(node) if node else self.control_plane).log(name)
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise SandboxError(f"{component} exited during start; the end of its log ({log}):\n{tail}")

    def _wait_api(self, started: float) -> None:
        def ready() -> bool:
            self._check_alive()
            return self.get("/readyz", timeout=3) == b"ok"

        wait_until(ready, self.config.ready_timeout, f"kube-apiserver on {self.url}")

    def kubectl(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:  # fmt: skip
        return self.admin.kubectl(*args, kubeconfig=kubeconfig, stdin=stdin, timeout=timeout)

    def _wait_containerd(self, bins: build.Artifacts, runtime: NodeRuntime) -> None:
        def ready() -> bool:
            self._check_alive()
            return runtime.ctr(bins, "version", timeout=10).returncode == 0

        wait_until(ready, self.config.ready_timeout, f"containerd in node {runtime.name}")

    def _import_images(self, bins: build.Artifacts, names: list[str] | None = None) -> None:
        """The locally built images (no registry to pull from), into every node pods run on: `names`, or those `up`
        brings (SANDBOX_K8S_IMAGES, else all but the monitoring tests' images, which they import). A tainted
        control plane only gets the pause image."""
        if names is None:
            names = self.images if self.images is not None else [n for n in images.archives(bins) if n not in ON_DEMAND]
        work = [(runtime, names) for runtime in self.schedulable]
        if self.control_plane not in self.schedulable:
            work.append((self.control_plane, [PAUSE_IMAGE]))
        # One containerd per node, so the nodes import side by side (as kind loads every node).
        with ThreadPoolExecutor(max_workers=len(work)) as pool:
            for done in [pool.submit(runtime.import_images, bins, wanted) for runtime, wanted in work]:
                done.result()

    def import_images(self, names: list[str]) -> None:
        """Images `up` leaves out (pins.ON_DEMAND), into the running nodes, for the tests that run them."""
        self._import_images(build.artifacts(), names)

    def tag_image(self, source: str, target: str) -> None:
        """Another name for an image in the nodes, as a registry would hold a rebuilt tag (tests of version changes)."""
        bins = build.artifacts()
        for runtime in self.schedulable:
            runtime.tag_image(bins, source, target)

    def wait_ready(self) -> None:
        def nodes_ready() -> bool:
            self._check_alive()
            for runtime in self.runtimes:
                node = json.loads(self.get(f"/api/v1/nodes/{runtime.name}"))
                conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
                if conditions.get("Ready") != "True":
                    return False
            # Pods are admitted only once the namespace's default ServiceAccount exists.
            json.loads(self.get("/api/v1/namespaces/default/serviceaccounts/default"))
            return True

        if self.workers != self.config.nodes:
            raise SandboxError(f"this sandbox runs {self.workers} worker node(s), not the {self.config.nodes} asked "
                               "(SANDBOX_NODES / --nodes): `down` it first")  # fmt: skip
        started = time.monotonic()
        names = ", ".join(rt.name for rt in self.runtimes)
        timeout = max(self.config.ready_timeout, 120) * len(self.runtimes)
        wait_until(nodes_ready, timeout, f"Kubernetes nodes {names} Ready")
        self.admin.place_control_plane(self.workers, {rt.name for rt in self.runtimes})
        self.timings = {**getattr(self, "timings", {}), "node": time.monotonic() - started}

    def probe(self) -> bool:
        return self.get("/readyz", timeout=3) == b"ok"

    def stop(self) -> bool:
        pids = self.pids()
        if not pids and not any(rt.ns.exists() for rt in self.runtimes) and not self.fabric.path.exists():
            return False
        bins = build.artifacts()
        for runtime in reversed(self.runtimes):
            for component in ("kube-proxy", "kubelet"):
                self._stop_one(runtime.key(component), pids)
            if self._alive(runtime.key("containerd")):
                with contextlib.suppress(Exception):
                    runtime.remove_pods(bins)
            self._stop_one(runtime.key("containerd"), pids)
        for component in reversed(COMPONENTS):
            self._stop_one(component, pids)
        self.forwards.stop_all()
        errors = []
        for runtime in reversed(self.runtimes):
            try:
                runtime.ns.down()
            except SandboxError as exc:
                errors.append(str(exc))
        self.fabric.down()
        self.pid_file.unlink(missing_ok=True)
        if errors:
            raise SandboxError("; ".join(errors))
        return bool(pids)

    # -- a node lost, and back (tests of what the cluster and the deployment do then) ---------------------------

    def lose_node(self, node: str) -> None:
        """A worker gone as a machine goes: its wire unplugged (nothing it sent arrives, nothing reaches it), then
        every process of it killed at once (kubelet, kube-proxy, containerd, the shims and the containers). Its
        namespaces and disk stay until `down`, as a dead machine's disk does."""
        runtime = self.runtime(node)
        if not runtime.spec.worker:
            raise SandboxError("only a worker node can be lost; the control plane runs the API server")
        self.fabric.set_port(runtime.spec.port, up=False)
        for _ in range(3):
            left = runtime.ns.pids()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)

    def restore_node(self, node: str) -> None:
        """A lost worker back, as a machine that rebooted: fresh namespaces (its /run, mounts and network state
        gone), its image store and configuration kept, its containerd, kubelet and kube-proxy started again."""
        runtime = self.runtime(node)
        bins = build.artifacts()
        pids = self.pids()
        for component in reversed(NODE_COMPONENTS):
            self._stop_one(runtime.key(component), pids)
            pids.pop(runtime.key(component), None)
        self.pid_file.write_text(json.dumps(pids))
        runtime.ns.down()
        runtime.ns.up()
        self._route()
        self._launch("containerd", bins, runtime)
        self._wait_containerd(bins, runtime)
        for component in ("kubelet", "kube-proxy"):
            self._launch(component, bins, runtime)

    def _stop_one(self, component: str, pids: dict[str, int]) -> None:
        pid = pids.get(component)
        if pid:
            with contextlib.suppress(SandboxError):
                terminate(pid, self.marker, timeout=15)

    # -- Services from the host ---------------------------------------------------------------------------------

    @property
    def forwards(self) -> ServiceForwards:
        pki = self.pki_dir
        api = ["--api-url", self.url, "--api-ca", str(pki / "ca.crt"),
               "--api-cert", str(pki / "admin.crt"), "--api-key", str(pki / "admin.key")]  # fmt: skip
        return ServiceForwards(self.base, self.logs / "forwards.log", self.nodes.netns_path, self.marker,
                               self.config.host, api)  # fmt: skip

    def service_url(self, namespace: str, name: str, port: int | None = None, lazy: bool = False) -> str:
        """http://127.0.0.1:<port> forwarding into the node to the Service's ClusterIP (kube-proxy picks a pod).

        One forwarder per Service port, kept until `down`; asking again returns the same URL. `lazy` (port needed):
        the Service is looked up at each connection, so the URL exists before the Service does.
        """
        if lazy:
            if port is None:
                raise SandboxError("a lazy Service URL needs the Service's port")
            return self.forwards.url(f"{namespace}/{name}:{port}:lazy", f"service:{namespace}/{name}:{port}")
        service = json.loads(self.get(f"/api/v1/namespaces/{namespace}/services/{name}"))
        ports = service["spec"].get("ports", [])
        chosen = next((p for p in ports if port is None or p["port"] == port), None)
        if chosen is None or not service["spec"].get("clusterIP") or service["spec"]["clusterIP"] == "None":
            raise SandboxError(f"Service {namespace}/{name} has no ClusterIP port {port or ''}".strip())
        return self.forwards.url(
            f"{namespace}/{name}:{chosen['port']}", f"{service['spec']['clusterIP']}:{chosen['port']}"
        )

    def purge(self) -> None:
        for runtime in self.runtimes:
            if runtime.ns.exists():
                runtime.ns.down()
        self.fabric.down()
        shutil.rmtree(self.base, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)

    def facts(self) -> dict[str, object]:
        return {
            "url": self.url,
            "kubeconfig": str(self.kubeconfig),
            "ca_file": str(self.pki_dir / "ca.crt"),
            "client_cert": str(self.pki_dir / "admin.crt"),
            "client_key": str(self.pki_dir / "admin.key"),
            "audit_log": str(self.audit_log),
            "version": build.k8s_version(),
            "nodes": [
                {"name": s.name, "ip": s.ip, "pod_cidr": s.pod_subnet, "zone": s.zone, "worker": s.worker}
                for s in self.plan
            ],
            "node": {
                "name": NODE_NAME,
                "pod_cidr": self.pod_subnet,
                "gateway": self.gateway,
                "postgres_host": self.gateway,
                "postgres_port": self.config.pg_port,
                "s3_endpoint_url": f"http://{self.gateway}:{self.config.s3_port}",
            },
        }


def _python() -> str:
    """The interpreter of the sandbox's virtualenv (has the sandbox package's dependencies)."""
    return sys.executable
