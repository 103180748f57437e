"""What the sandbox's nodes run with: the control plane's command lines, containerd's, the kubelet's and kube-proxy's
configurations, the CNI network and the API server's audit policy (filled in by sandbox/kubecluster.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .topology import CONTROL_PLANE

API_PORT = 6443  # inside the node
SERVICE_CIDR = "10.96.0.0/16"
NODE_NAME = CONTROL_PLANE

RUNC = "/usr/sbin/runc"
# The node's own /run (a tmpfs in its mount namespace): sockets and runtime state that need short paths. The
# kubelet's root directory is there too (pod volumes; rebuilt when the pods are); pod logs stay in the state dir.
NODE_RUN = Path("/run")
CONTAINERD_SOCK = NODE_RUN / "containerd" / "containerd.sock"
# Requests the audit log keeps: everyone's but the node's and the control plane's own (RBAC names them; the
# controllers' service accounts live in kube-system). Other service accounts are logged: a deployer with a token,
# as AWX uses, is one.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:nodes", "system:serviceaccounts:kube-system"]},
        {
            "level": "None",
            "users": [
                "system:kube-controller-manager",
                "system:kube-scheduler",
                "system:kube-proxy",
                "system:apiserver",
                "kube-apiserver-kubelet-client",
            ],
        },
        {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version"]},
        {"level": "Metadata"},
    ],
}

CONTAINERD_CONFIG = """version = 3
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.erofs", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.differ.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
  "io.containerd.nri.v1.nri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{sock}.debug"
  level = "info"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{state}/opt"
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    discard_unpacked_layers = false
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "{pause}"
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = "{certs}"
  [plugins."io.containerd.cri.v1.runtime"]
    # Root here lacks CAP_SYS_RESOURCE: runc could not lower a container's oom_score_adj ("nsexec: failed to
    # update /proc/self/oom_score_adj: Permission denied"), so containerd must not ask it to.
    restrict_oom_score_adj = true
    tolerate_missing_hugetlb_controller = true
    netns_mounts_under_state_dir = true
    enable_unprivileged_ports = true
    enable_unprivileged_icmp = true
    cdi_spec_dirs = []
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = "{runc}"
          SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["{cni_bin}"]
      conf_dir = "{cni_conf}"
      max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
"""

KUBELET_CONFIG = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 here (kubelet 1.35+ refuses it unless told), no systemd: the cgroupfs driver, in our own subtree.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
cgroupsPerQOS: true
kubeletCgroups: /{cgroup}/system
containerRuntimeEndpoint: unix://{sock}
imageServiceEndpoint: unix://{sock}
address: {node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: {cert}
tlsPrivateKeyFile: {key}
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: []
resolvConf: {resolv}
failSwapOn: false
protectKernelDefaults: false
podLogsDir: /var/log/pods
staticPodPath: ""
maxPods: 64
podPidsLimit: 4096
# The nodes' disk is the host's, shared with everything else on it: no disk-pressure eviction and no image GC (as
# kind's nodes: "0%" switches a threshold off, 100 with no maximum age switches image GC off). Under pressure the
# kubelet deleted the locally built images nothing ran at the moment, with no registry to pull them back from
# (a CI run on a 95%-full disk: "ctr: image ghcr.io/carbon254/mlflow:...: not found", ErrImagePull after).
evictionHard:
  memory.available: "200Mi"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 98
enforceNodeAllocatable: ["pods"]
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 10s
# The Lease the kubelet renews (every quarter of it); the node-lifecycle controller's grace period counts from it.
nodeLeaseDurationSeconds: {lease}
# Root here lacks CAP_SYS_RESOURCE: the kubelet cannot lower its own oom_score_adj either.
oomScoreAdj: 0
"""

KUBE_PROXY_CONFIG = """apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
oomScoreAdj: 0
hostnameOverride: {node}
clusterCIDR: {cluster_cidr}
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["primary"]
conntrack:
  # Zero: leave the host-wide conntrack table settings alone.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
"""


def cni_conflist(ipam_dir: Path, subnet: str) -> dict[str, Any]:
    """A node's pod network: a bridge with host-local addresses from the node's `subnet`, and portmap.

    No masquerade: the bridge plugin would SNAT everything leaving `subnet` (plugins/pkg/ip/ipmasq_iptables_linux.go),
    so a pod on another node would see the node's address instead of the pod's; the nodes route pod /24s instead.
    """
    return {
        "cniVersion": "1.0.0",
        "name": "carbon254-sandbox",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }  # fmt: skip


@dataclass(frozen=True)
class ControlPlanePaths:
    pki: Path
    kubeconfigs: Path
    etcd_data: Path
    audit_policy: Path
    audit_log: Path


def control_plane_argv(
    component: str, binary: str, paths: ControlPlanePaths, node_ip: str, node_grace: int | None
) -> list[str]:
    """etcd, the API server, the controller manager or the scheduler, as kubeadm's static pods would start them."""
    p, kc = paths.pki, paths.kubeconfigs
    if component == "etcd":
        return [binary, "--name", NODE_NAME, "--data-dir", str(paths.etcd_data),
                "--listen-client-urls", "https://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
                "--cert-file", str(p / "etcd-server.crt"), "--key-file", str(p / "etcd-server.key"),
                "--trusted-ca-file", str(p / "ca.crt"), "--unsafe-no-fsync", "--log-level", "warn"]  # fmt: skip
    if component == "kube-apiserver":
        return [binary, "--etcd-servers", "https://127.0.0.1:2379", "--etcd-cafile", str(p / "ca.crt"),
                "--etcd-certfile", str(p / "apiserver-etcd-client.crt"),
                "--etcd-keyfile", str(p / "apiserver-etcd-client.key"),
                # Every address of the node's own namespace: its node address, and the `kubernetes` Service's.
                "--bind-address", "0.0.0.0",  # noqa: S104
                "--secure-port", str(API_PORT), "--advertise-address", node_ip,
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
                "--audit-policy-file", str(paths.audit_policy), "--audit-log-path", str(paths.audit_log),
                "--audit-log-format", "json", "--audit-log-maxsize", "100", "--audit-log-maxbackup", "2",
                "--allow-privileged=true", "--profiling=false", "--v=1"]  # fmt: skip
    if component == "kube-controller-manager":
        cm = str(kc / "controller-manager.conf")
        # A shorter grace than upstream's 50 s when asked (the node-loss tests), with the monitor polling every 2 s.
        lifecycle = [f"--node-monitor-grace-period={node_grace}s", "--node-monitor-period=2s"] if node_grace else []
        return [binary, "--kubeconfig", cm, "--authentication-kubeconfig", cm, "--authorization-kubeconfig", cm,
                "--bind-address", "127.0.0.1", "--secure-port", "10257", "--client-ca-file", str(p / "ca.crt"),
                "--root-ca-file", str(p / "ca.crt"), "--cluster-signing-cert-file", str(p / "ca.crt"),
                "--cluster-signing-key-file", str(p / "ca.key"),
                "--service-account-private-key-file", str(p / "sa.key"), "--use-service-account-credentials=true",
                "--controllers", "*,bootstrapsigner,tokencleaner", "--service-cluster-ip-range", SERVICE_CIDR,
                "--leader-elect=false", "--profiling=false", "--v=1", *lifecycle]  # fmt: skip
    if component == "kube-scheduler":
        sc = str(kc / "scheduler.conf")
        return [binary, "--kubeconfig", sc, "--authentication-kubeconfig", sc, "--authorization-kubeconfig", sc,
                "--bind-address", "127.0.0.1", "--secure-port", "10259", "--leader-elect=false",
                "--profiling=false", "--v=1"]  # fmt: skip
    raise ValueError(component)
