"""The sandbox's node and address plan (sandbox/topology.py): what `up` writes into routes, CNI and kubelets."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from sandbox.config import SandboxConfig
from sandbox.nodeconf import ControlPlanePaths, control_plane_argv
from sandbox.topology import CONTROL_PLANE, MAX_WORKERS, plan


def test_the_control_plane_keeps_the_single_node_addresses_and_workers_follow():
    nodes = plan("10.213.0.0/16", 2)
    assert [(n.name, n.ip, n.pod_subnet, n.zone, n.worker) for n in nodes] == [
        (CONTROL_PLANE, "10.213.0.1", "10.213.1.0/24", "zone-0", False),
        (f"{CONTROL_PLANE}-worker-1", "10.213.0.2", "10.213.2.0/24", "zone-1", True),
        (f"{CONTROL_PLANE}-worker-2", "10.213.0.3", "10.213.3.0/24", "zone-2", True),
    ]
    assert plan("10.213.0.0/16", 0) == nodes[:1]


@pytest.mark.parametrize("workers", range(MAX_WORKERS + 1))
def test_no_two_nodes_share_an_address_or_a_pod_network_and_pods_never_take_a_node_address(workers):
    nodes = plan("10.218.0.0/16", workers)
    subnets = [ipaddress.ip_network(n.pod_subnet) for n in nodes]
    assert len({n.ip for n in nodes}) == len({n.port for n in nodes}) == len(nodes) == workers + 1
    assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])
    assert all(ipaddress.ip_address(n.ip) not in s for n in nodes for s in subnets)
    assert all(ipaddress.ip_address(n.ip) in ipaddress.ip_network("10.218.0.0/16") for n in nodes)


def test_a_small_pod_cidr_still_runs_one_node_but_refuses_workers_naming_the_variables():
    (only,) = plan("10.213.7.0/24", 0)
    assert (only.ip, only.pod_subnet) == ("10.213.7.1", "10.213.7.0/24")
    with pytest.raises(ValueError, match=r"SANDBOX_POD_CIDR=10\.213\.7\.0/24 is too small"):
        plan("10.213.7.0/24", 1)
    with pytest.raises(ValueError, match=r"SANDBOX_POD_CIDR=10\.213\.0\.0/23 holds 2 /24s; 1 workers need 3"):
        plan("10.213.0.0/23", 1)
    with pytest.raises(ValueError, match=f"SANDBOX_NODES=9: the sandbox runs 0 to {MAX_WORKERS}"):
        plan("10.213.0.0/16", 9)


def test_the_config_refuses_a_bad_node_count_before_anything_starts(monkeypatch, tmp_path):
    monkeypatch.setenv("SANDBOX_NODES", "two")
    with pytest.raises(ValueError, match="SANDBOX_NODES='two' is not an integer"):
        SandboxConfig(state_dir=tmp_path)
    monkeypatch.setenv("SANDBOX_NODES", "-1")
    with pytest.raises(ValueError, match="SANDBOX_NODES=-1"):
        SandboxConfig(state_dir=tmp_path)


def test_control_plane_command_lines_take_their_paths_and_the_node_grace():
    paths = ControlPlanePaths(pki=Path("/p"), kubeconfigs=Path("/kc"), etcd_data=Path("/etcd"),
                              audit_policy=Path("/conf/audit.json"), audit_log=Path("/logs/audit.log"))  # fmt: skip
    api = control_plane_argv("kube-apiserver", "apiserver", paths, "10.213.0.1", None)
    assert api[0] == "apiserver"
    assert api[api.index("--advertise-address") + 1] == "10.213.0.1"
    assert api[api.index("--audit-log-path") + 1] == "/logs/audit.log"
    assert api[api.index("--audit-policy-file") + 1] == "/conf/audit.json"
    plain = control_plane_argv("kube-controller-manager", "kcm", paths, "10.213.0.1", None)
    assert not [arg for arg in plain if arg.startswith("--node-monitor")]
    short = control_plane_argv("kube-controller-manager", "kcm", paths, "10.213.0.1", 20)
    assert short[len(plain) :] == ["--node-monitor-grace-period=20s", "--node-monitor-period=2s"]
    assert control_plane_argv("etcd", "etcd", paths, "10.213.0.1", None)[:5] == [
        "etcd",
        "--name",
        CONTROL_PLANE,
        "--data-dir",
        "/etcd",
    ]
    with pytest.raises(ValueError, match="kubelet"):
        control_plane_argv("kubelet", "kubelet", paths, "10.213.0.1", None)
