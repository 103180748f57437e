"""A real single-node Kubernetes as a sandbox service, built from upstream sources (sandbox/build.py).

`start()` brings up, inside the node's own network and mount namespaces and cgroup subtree (sandbox/node.py):
etcd (data in the state directory, so objects survive `down`/`up`), kube-apiserver (TLS from the sandbox's CA,
x509 client certificates, Node + RBAC authorization, NodeRestriction, service-account keys, an audit log),
kube-controller-manager and kube-scheduler with their own identities, containerd 2.x with runc, the overlayfs
snapshotter and CNI (a bridge on the node's pod subnet), the kubelet (cgroupfs driver, cgroup v1 allowed) as the
node, and kube-proxy (iptables mode). One forwarder process joins host and node: the host reaches the API server on
127.0.0.1:<k8s port>, and pods reach the sandbox's PostgreSQL and S3 at the node's address. `stop()` stops it all
and removes the namespaces and cgroups, and with them every rule, mount and interface it made.

Addresses (all inside the node's network namespace, so sandboxes never collide): the node is the first address
of SANDBOX_POD_CIDR (the "pod gateway" the PostgreSQL certificate names), pods get the CIDR's second /24, Services
10.96.0.0/16.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from . import build, images
from .config import REPO_ROOT, SandboxConfig
from .forward import ServiceForwards
from .kubepki import ADMIN_GROUP, ClusterPKI
from .node import NodeNamespaces
from .nodeconf import (
    AUDIT_POLICY,
    CONTAINERD_CONFIG,
    CONTAINERD_SOCK,
    KUBE_PROXY_CONFIG,
    KUBELET_CONFIG,
    NODE_RUN,
    RUNC,
    cni_conflist,
)
from .pins import ON_DEMAND, PAUSE_IMAGE
from .procs import SandboxError, cmdline, spawn, terminate, wait_until

API_PORT = 6443  # inside the node
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service
NODE_NAME = "carbon254-sandbox"
# Start order; stopped in reverse. Each: the cgroup subtree it runs in.
COMPONENTS = {
    "forwarder": None,  # on the host (it makes its node-side sockets with setns)
    "etcd": "control-plane",
    "kube-apiserver": "control-plane",
    "kube-controller-manager": "control-plane",
    "kube-scheduler": "control-plane",
    "containerd": "system",
    "kubelet": "system",
    "kube-proxy": "system",
}


class KubeCluster:
    name = "kubernetes"

    def __init__(self, config: SandboxConfig, images: list[str] | None = None) -> None:
        self.config = config
        # Names to import into the node (default: every image sandbox/images.py builds).
        self.images = images if images is not None else config.k8s_images
        self.base = config.state_dir / "kubernetes"
        self.kubeconfig = config.state_dir / "kubeconfig"  # the admin's, for the host
        self.pki_dir = self.base / "pki"
        self.conf = self.base / "conf"
        self.logs = self.base / "logs"
        self.pid_file = self.base / "pids.json"
        self.audit_log = self.base / "audit.log"
        self.node_ip = config.pod_gateway
        network = ipaddress.ip_network(config.pod_cidr)
        self.pod_subnet = str(list(network.subnets(new_prefix=24))[1]) if network.prefixlen <= 23 else str(network)
        self.nodes = NodeNamespaces(self.short_name, self.base / "node", self.node_ip)

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
        for directory in (self.conf, self.logs, self.base / "cni" / "net.d", self.base / "cni" / "ipam"):
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
            ("kubelet-client", f"system:node:{NODE_NAME}", "kubelet.conf"),
        ):
            pki.kubeconfig(kc / file, stem, user, inside)
        pki.kubeconfig(self.kubeconfig, "admin", "kubernetes-admin", self.url)
        pki.kubeconfig(kc / "super-admin-host.conf", "super-admin", "kubernetes-super-admin", self.url)
        self._write("audit-policy.json", json.dumps(AUDIT_POLICY, indent=2))
        # Unix sockets allow 108 bytes of path: containerd's state and sockets go to the node's private /run (a tmpfs
        # of its mount namespace), its image store stays in the state directory (imports survive down/up).
        self._write("containerd.toml", CONTAINERD_CONFIG.format(
            root=self.base / "containerd", state=NODE_RUN / "containerd", sock=CONTAINERD_SOCK, pause=PAUSE_IMAGE,
            runc=RUNC,
            cni_bin=bins.cni_dir, cni_conf=self.base / "cni" / "net.d", certs=self.conf / "certs.d"))  # fmt: skip
        (self.conf / "certs.d").mkdir(exist_ok=True)
        conflist = cni_conflist(self.base / "cni" / "ipam", self.pod_subnet)
        (self.base / "cni" / "net.d" / "10-sandbox.conflist").write_text(json.dumps(conflist, indent=2))
        self._write("resolv.conf", "nameserver 127.0.0.1\noptions ndots:1\n")
        self._write("kubelet.yaml", KUBELET_CONFIG.format(
            cgroup=self.nodes.cgroup, sock=CONTAINERD_SOCK, node_ip=self.node_ip, pki=self.pki_dir,
            resolv=self.conf / "resolv.conf"))  # fmt: skip
        self._write("kube-proxy.yaml", KUBE_PROXY_CONFIG.format(
            kubeconfig=kc / "kube-proxy.conf", node=NODE_NAME, cluster_cidr=self.pod_subnet))  # fmt: skip

    def _argv(self, component: str, bins: build.Artifacts) -> list[str]:  # noqa: PLR0911 - one per component
        p, kc, conf = self.pki_dir, self.base / "kubeconfig", self.conf
        binary = str(bins.component(component))
        if component == "forwarder":
            host, node = self.config.host, self.node_ip
            return [_python(), "-m", "sandbox.forward", "--netns", str(self.nodes.netns_path), "--marker", self.marker,
                    "--into", f"{host}:{self.config.k8s_port}={node}:{API_PORT}",
                    "--out", f"{node}:{self.config.pg_port}={host}:{self.config.pg_port}",
                    "--out", f"{node}:{self.config.s3_port}={host}:{self.config.s3_port}"]  # fmt: skip
        if component == "etcd":
            return [binary, "--name", NODE_NAME, "--data-dir", str(self.base / "etcd"),
                    "--listen-client-urls", "https://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
                    "--cert-file", str(p / "etcd-server.crt"), "--key-file", str(p / "etcd-server.key"),
                    "--trusted-ca-file", str(p / "ca.crt"), "--unsafe-no-fsync", "--log-level", "warn"]  # fmt: skip
        if component == "kube-apiserver":
            return [binary, "--etcd-servers", "https://127.0.0.1:2379", "--etcd-cafile", str(p / "ca.crt"),
                    "--etcd-certfile", str(p / "apiserver-etcd-client.crt"),
                    "--etcd-keyfile", str(p / "apiserver-etcd-client.key"),
                    # Every address of the node's own namespace: its node address, and the `kubernetes` Service's.
                    "--bind-address", "0.0.0.0",  # noqa: S104
                    "--secure-port", str(API_PORT), "--advertise-address", self.node_ip,
                    "--tls-cert-file", str(p / "apiserver.crt"), "--tls-private-key-file", str(p / "apiserver.key"),
                    "--client-ca-file", str(p / "ca.crt"),
                    "--kubelet-client-certificate", str(p / "apiserver-kubelet-client.crt"),
                    "--kubelet-client-key", str(p / "apiserver-kubelet-client.key"),
                    "--kubelet-certificate-authority", str(p / "ca.crt"),
                    "--kubelet-preferred-address-types", "InternalIP,Hostname",
                    "--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
                    "--service-cluster-ip-range", SERVICE_CIDR,
                    "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                    "--service-account-key-file", str(p / "sa.pub"),
                    "--service-account-signing-key-file", str(p / "sa.key"),
                    "--audit-policy-file", str(conf / "audit-policy.json"), "--audit-log-path", str(self.audit_log),
                    "--audit-log-format", "json", "--audit-log-maxsize", "100", "--audit-log-maxbackup", "2",
                    "--allow-privileged=true", "--profiling=false", "--v=1"]  # fmt: skip
        if component == "kube-controller-manager":
            cm = str(kc / "controller-manager.conf")
            return [binary, "--kubeconfig", cm, "--authentication-kubeconfig", cm, "--authorization-kubeconfig", cm,
                    "--bind-address", "127.0.0.1", "--secure-port", "10257", "--client-ca-file", str(p / "ca.crt"),
                    "--root-ca-file", str(p / "ca.crt"), "--cluster-signing-cert-file", str(p / "ca.crt"),
                    "--cluster-signing-key-file", str(p / "ca.key"),
                    "--service-account-private-key-file", str(p / "sa.key"), "--use-service-account-credentials=true",
                    "--controllers", "*,bootstrapsigner,tokencleaner", "--service-cluster-ip-range", SERVICE_CIDR,
                    "--leader-elect=false", "--profiling=false", "--v=1"]  # fmt: skip
        if component == "kube-scheduler":
            sc = str(kc / "scheduler.conf")
            return [binary, "--kubeconfig", sc, "--authentication-kubeconfig", sc, "--authorization-kubeconfig", sc,
                    "--bind-address", "127.0.0.1", "--secure-port", "10259", "--leader-elect=false",
                    "--profiling=false", "--v=1"]  # fmt: skip
        if component == "containerd":
            return [str(bins.containerd_dir / "containerd"), "--config", str(conf / "containerd.toml")]
        if component == "kubelet":
            return [binary, "--config", str(conf / "kubelet.yaml"), "--kubeconfig", str(kc / "kubelet.conf"),
                    "--root-dir", str(NODE_RUN / "kubelet"), "--node-ip", self.node_ip,
                    "--hostname-override", NODE_NAME, "--v=1"]  # fmt: skip
        if component == "kube-proxy":
            return [binary, "--config", str(conf / "kube-proxy.yaml"), "--v=1"]
        raise ValueError(component)

    # -- start / stop -------------------------------------------------------------------------------------------

    def _launch(self, component: str, bins: build.Artifacts) -> None:
        if self._alive(component):
            return
        argv = self._argv(component, bins)
        sub = COMPONENTS[component]
        # containerd must find its own shim first; the kubelet and kube-proxy need iptables and mount.
        env = {**os.environ, "PATH": f"{bins.containerd_dir}:{bins.cluster_dir}:/usr/sbin:/usr/bin:/sbin:/bin"}
        if component == "forwarder":
            env["PYTHONPATH"] = str(REPO_ROOT)
            proc = spawn(argv, self.logs / f"{component}.log", env=env)
        else:
            log = (self.logs / f"{component}.log").open("ab")
            with log:
                proc = subprocess.Popen(self.nodes.command(argv), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                        preexec_fn=self.nodes.joiner(sub))  # noqa: PLW1509  # fmt: skip
        pids = self.pids()
        pids[component] = proc.pid
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
        self.nodes.up()
        self.configure(bins)
        self.timings: dict[str, float] = {}
        started = time.monotonic()
        for component in ("forwarder", "etcd", "kube-apiserver"):
            self._launch(component, bins)
        self._wait_api(started)
        self.timings["api"] = time.monotonic() - started
        self._bootstrap_rbac(bins)
        for component in ("kube-controller-manager", "kube-scheduler", "containerd"):
            self._launch(component, bins)
        self._wait_containerd(bins)
        self._import_images(bins)
        for component in ("kubelet", "kube-proxy"):
            self._launch(component, bins)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return context

    def get(self, path: str, timeout: float = 5) -> bytes:
        """GET from the API server through the host's address, as the admin."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 - the sandbox's own https URL
        with urllib.request.urlopen(request, context=self._context(), timeout=timeout) as response:  # noqa: S310
            return response.read()

    def _check_alive(self) -> None:
        for component, pid in self.pids().items():
            if not (pid and self.marker in cmdline(pid)):
                log = self.logs / f"{component}.log"
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise SandboxError(f"{component} exited during start; the end of its log ({log}):\n{tail}")

    def _wait_api(self, started: float) -> None:
        def ready() -> bool:
            self._check_alive()
            return self.get("/readyz", timeout=3) == b"ok"

        wait_until(ready, self.config.ready_timeout, f"kube-apiserver on {self.url}")

    def kubectl(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:  # fmt: skip
        bins = build.artifacts()
        argv = [str(bins.kubectl), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)

    def _bootstrap_rbac(self, bins: build.Artifacts) -> None:
        """The admin's group becomes cluster-admin (as kubeadm does), with the break-glass identity, once."""
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": ADMIN_GROUP},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": ADMIN_GROUP}],
        }  # fmt: skip
        breakglass = self.base / "kubeconfig" / "super-admin-host.conf"
        if self.kubectl("get", "clusterrolebinding", ADMIN_GROUP, kubeconfig=breakglass).returncode == 0:
            return
        proc = self.kubectl("create", "-f", "-", kubeconfig=breakglass, stdin=json.dumps(binding))
        if proc.returncode != 0 and "AlreadyExists" not in proc.stderr:
            raise SandboxError(f"binding {ADMIN_GROUP} to cluster-admin failed: {proc.stderr.strip()}")

    def _ctr(self, bins: build.Artifacts, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.nodes.run([str(bins.containerd_dir / "ctr"), "-a", str(CONTAINERD_SOCK), "-n", "k8s.io", *args],
                              timeout)  # fmt: skip

    def _wait_containerd(self, bins: build.Artifacts) -> None:
        def ready() -> bool:
            self._check_alive()
            return self._ctr(bins, "version", timeout=10).returncode == 0

        wait_until(ready, self.config.ready_timeout, "containerd in the sandbox node")

    def _import_images(self, bins: build.Artifacts, names: list[str] | None = None) -> None:
        """The locally built images (no registry to pull from): `names`, or those `up` brings (SANDBOX_K8S_IMAGES,
        else all but the monitoring tests' images, which they import)."""
        if names is None:
            names = self.images if self.images is not None else [n for n in images.archives(bins) if n not in ON_DEMAND]
        images.import_into_node(lambda *args: self._ctr(bins, *args), bins, names)

    def import_images(self, names: list[str]) -> None:
        """Images `up` leaves out (pins.ON_DEMAND), into the running node, for the tests that run them."""
        self._import_images(build.artifacts(), names)

    def tag_image(self, source: str, target: str) -> None:
        """Another name for an image in the node, as a registry would hold a rebuilt tag (tests of version changes)."""
        bins = build.artifacts()
        images.tag_in_node(lambda *args: self._ctr(bins, *args), source, target)

    def wait_ready(self) -> None:
        def node_ready() -> bool:
            self._check_alive()
            node = json.loads(self.get(f"/api/v1/nodes/{NODE_NAME}"))
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            if conditions.get("Ready") != "True":
                return False
            # Pods are admitted only once the namespace's default ServiceAccount exists.
            json.loads(self.get("/api/v1/namespaces/default/serviceaccounts/default"))
            return True

        started = time.monotonic()
        wait_until(node_ready, max(self.config.ready_timeout, 120), f"Kubernetes node {NODE_NAME} Ready")
        self.timings = {**getattr(self, "timings", {}), "node": time.monotonic() - started}

    def probe(self) -> bool:
        return self.get("/readyz", timeout=3) == b"ok"

    def _remove_pods(self, bins: build.Artifacts) -> None:
        """Kill and delete every container so the shims exit (their mounts live in the node's mount namespace)."""
        if not self._alive("containerd"):
            return
        tasks = self._ctr(bins, "tasks", "ls", "-q", timeout=30).stdout.split()
        for task in tasks:
            self._ctr(bins, "tasks", "kill", "-s", "KILL", task, timeout=30)
        for task in tasks:
            self._ctr(bins, "tasks", "delete", "-f", task, timeout=30)

    def stop(self) -> bool:
        pids = self.pids()
        if not pids and not self.nodes.exists():
            return False
        bins = build.artifacts()
        for component in ("kube-proxy", "kubelet"):
            self._stop_one(component, pids)
        with contextlib.suppress(Exception):
            self._remove_pods(bins)
        for component in ("containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd",
                          "forwarder"):  # fmt: skip
            self._stop_one(component, pids)
        self.forwards.stop_all()
        self.nodes.down()
        self.pid_file.unlink(missing_ok=True)
        return bool(pids)

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
        if self.nodes.exists():
            self.nodes.down()
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
