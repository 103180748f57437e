"""One node of the sandbox's Kubernetes: containerd, the kubelet and kube-proxy in that node's own network and mount
namespaces and cgroup subtree (sandbox/node.py), with its own configuration, image store, CNI network and logs.

The control plane's node keeps the paths it always had (its state survives an upgrade of the sandbox); worker i
lives under `kubernetes/workers/<node name>/`. Each node imports the images itself, as kind loads an image into every
node: there is no registry and no shared store.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from . import build, images
from .kubepki import ClusterPKI
from .node import Fabric, NodeNamespaces
from .nodeconf import (
    CONTAINERD_CONFIG,
    CONTAINERD_SOCK,
    KUBE_PROXY_CONFIG,
    KUBELET_CONFIG,
    NODE_RUN,
    RUNC,
    cni_conflist,
)
from .pins import PAUSE_IMAGE
from .topology import ZONE_LABEL, NodeSpec

RUNTIME = ("containerd", "kubelet", "kube-proxy")  # start order; stopped in reverse


class NodeRuntime:
    def __init__(self, spec: NodeSpec, cluster_base: Path, short_name: str, fabric: Fabric, *, cluster_cidr: str,
                 lease_seconds: int = 40) -> None:  # fmt: skip
        self.spec = spec
        self.name = spec.name
        self.cluster_cidr = cluster_cidr
        self.lease_seconds = lease_seconds
        self.kubeconfig_dir = cluster_base / "kubeconfig"
        self.pki_dir = cluster_base / "pki"
        if spec.worker:
            self.root = cluster_base / "workers" / spec.name
            self.conf = self.root / "conf"
            self.logs = self.root / "logs"
            ns_name, self.suffix = f"{short_name}-w{spec.index}", f"-{spec.name}"
        else:  # the control plane's node: the layout of the single-node sandbox
            self.root, self.conf, self.logs = cluster_base, cluster_base / "conf", cluster_base / "logs"
            ns_name, self.suffix = short_name, ""
        self.ns = NodeNamespaces(ns_name, self.root / "node", spec.ip, fabric, spec.port)

    def key(self, component: str) -> str:
        """The component's name in pids.json (the control plane's node keeps the bare names)."""
        return f"{self.name}/{component}" if self.spec.worker else component

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.kubeconfig_dir / f"kubelet{self.suffix}.conf"

    def configure(self, bins: build.Artifacts, pki: ClusterPKI, api_inside: str) -> None:
        cni = self.root / "cni"
        for directory in (self.conf, self.logs, cni / "net.d", cni / "ipam", self.conf / "certs.d"):
            directory.mkdir(parents=True, exist_ok=True)
        pki.kubelet(self.name, self.spec.ip, self.suffix)
        pki.kubeconfig(self.kubelet_kubeconfig, f"kubelet-client{self.suffix}", f"system:node:{self.name}",
                       api_inside)  # fmt: skip
        # Unix sockets allow 108 bytes of path: containerd's state and sockets go to the node's private /run (a tmpfs
        # of its mount namespace), its image store stays in the state directory (imports survive down/up).
        (self.conf / "containerd.toml").write_text(CONTAINERD_CONFIG.format(
            root=self.root / "containerd", state=NODE_RUN / "containerd", sock=CONTAINERD_SOCK, pause=PAUSE_IMAGE,
            runc=RUNC, cni_bin=bins.cni_dir, cni_conf=cni / "net.d", certs=self.conf / "certs.d"))  # fmt: skip
        conflist = cni_conflist(cni / "ipam", self.spec.pod_subnet)
        (cni / "net.d" / "10-sandbox.conflist").write_text(json.dumps(conflist, indent=2))
        (self.conf / "resolv.conf").write_text("nameserver 127.0.0.1\noptions ndots:1\n")
        server = self.pki_dir / f"kubelet-server{self.suffix}"
        (self.conf / "kubelet.yaml").write_text(KUBELET_CONFIG.format(
            cgroup=self.ns.cgroup, sock=CONTAINERD_SOCK, node_ip=self.spec.ip, ca=self.pki_dir / "ca.crt",
            cert=server.with_suffix(".crt"), key=server.with_suffix(".key"), resolv=self.conf / "resolv.conf",
            lease=self.lease_seconds))  # fmt: skip
        (self.conf / "kube-proxy.yaml").write_text(
            KUBE_PROXY_CONFIG.format(
                kubeconfig=self.kubeconfig_dir / "kube-proxy.conf", node=self.name, cluster_cidr=self.cluster_cidr
            )
        )

    def argv(self, component: str, bins: build.Artifacts) -> list[str]:
        if component == "containerd":
            return [str(bins.containerd_dir / "containerd"), "--config", str(self.conf / "containerd.toml")]
        if component == "kubelet":
            argv = [str(bins.component("kubelet")), "--config", str(self.conf / "kubelet.yaml"),
                    "--kubeconfig", str(self.kubelet_kubeconfig), "--root-dir", str(NODE_RUN / "kubelet"),
                    "--node-ip", self.spec.ip, "--hostname-override", self.name, "--v=1"]  # fmt: skip
            if self.spec.worker:
                # A label the kubelet may set on its own Node (and re-applies to an existing one).
                argv += ["--node-labels", f"{ZONE_LABEL}={self.spec.zone}"]
            return argv
        if component == "kube-proxy":
            return [str(bins.component("kube-proxy")), "--config", str(self.conf / "kube-proxy.yaml"), "--v=1"]
        raise ValueError(component)

    def ctr(self, bins: build.Artifacts, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.ns.run([str(bins.containerd_dir / "ctr"), "-a", str(CONTAINERD_SOCK), "-n", "k8s.io", *args],
                           timeout)  # fmt: skip

    def import_images(self, bins: build.Artifacts, names: list[str]) -> None:
        images.import_into_node(lambda *args: self.ctr(bins, *args), bins, names)

    def tag_image(self, bins: build.Artifacts, source: str, target: str) -> None:
        images.tag_in_node(lambda *args: self.ctr(bins, *args), source, target)

    def remove_pods(self, bins: build.Artifacts) -> None:
        """Kill and delete every container so the shims exit (their mounts live in the node's mount namespace)."""
        tasks = self.ctr(bins, "tasks", "ls", "-q", timeout=30).stdout.split()
        for task in tasks:
            self.ctr(bins, "tasks", "kill", "-s", "KILL", task, timeout=30)
        for task in tasks:
            self.ctr(bins, "tasks", "delete", "-f", task, timeout=30)
