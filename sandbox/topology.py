"""The sandbox's nodes and their addresses: a pure function of the pod CIDR and the number of workers.

A static plan, as kindnetd's routes but written once by `up` (no `--allocate-node-cidrs`: with the node addresses
inside the same /16 the range allocator would hand out the nodes' own /24). Within SANDBOX_POD_CIDR (a /16 by
default): the first /24 holds the node addresses (control plane .1, worker i .1+i), the next /24s the pods of each
node in turn (control plane first, so a single-node sandbox keeps the addresses it always had).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

CONTROL_PLANE = "carbon254-sandbox"
MAX_WORKERS = 8  # each runs a containerd, a kubelet and a kube-proxy and holds a copy of every image
ZONE_LABEL = "topology.kubernetes.io/zone"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    index: int  # 0: the control plane; i: worker i
    ip: str
    pod_subnet: str
    zone: str

    @property
    def worker(self) -> bool:
        return self.index > 0

    @property
    def port(self) -> str:
        """The node's veth end in the fabric's namespace (an interface name: short)."""
        return f"p{self.index}"


def worker_name(index: int) -> str:
    return f"{CONTROL_PLANE}-worker-{index}"


def plan(pod_cidr: str, workers: int) -> list[NodeSpec]:
    """The control plane and `workers` workers, with their node IPs, pod /24s and zones (one zone per node)."""
    if not 0 <= workers <= MAX_WORKERS:
        raise ValueError(f"SANDBOX_NODES={workers}: the sandbox runs 0 to {MAX_WORKERS} worker nodes")
    network = ipaddress.ip_network(pod_cidr)
    if network.version != 4:
        raise ValueError(f"SANDBOX_POD_CIDR={pod_cidr}: an IPv4 network is needed")
    if network.prefixlen > 23:
        if workers:
            raise ValueError(f"SANDBOX_POD_CIDR={pod_cidr} is too small for {workers} workers (a /24 per node)")
        # One /24 or less: node and pods share it, as the sandbox always allowed.
        return [NodeSpec(CONTROL_PLANE, 0, str(next(network.hosts())), str(network), "zone-0")]
    subnets = list(network.subnets(new_prefix=24))
    if len(subnets) < workers + 2:
        raise ValueError(f"SANDBOX_POD_CIDR={pod_cidr} holds {len(subnets)} /24s; {workers} workers need {workers + 2}")
    node_net = subnets[0]
    return [
        NodeSpec(
            CONTROL_PLANE if i == 0 else worker_name(i), i, str(node_net.network_address + 1 + i),
            str(subnets[1 + i]), f"zone-{i}",
        )
        for i in range(workers + 1)
    ]  # fmt: skip
