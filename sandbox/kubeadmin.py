"""The sandbox cluster's administrator: what `up` asks of the API server once its processes run, with the admin's
identity (x509, group kubeadm:cluster-admins): GETs over TLS, the kubectl the sandbox built, the admin group bound to
cluster-admin (as kubeadm binds it), and where pods may run (the control plane's node tainted as kind's when there
are workers). sandbox/kubecluster.py runs the processes; this module only talks to the API.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

from . import build
from .kubepki import ADMIN_GROUP
from .nodeconf import NODE_NAME
from .procs import SandboxError
from .topology import CONTROL_PLANE

CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


class ClusterAdmin:
    def __init__(self, url: str, pki_dir: Path, kubeconfig: Path, breakglass: Path) -> None:
        """`kubeconfig`: the admin's; `breakglass`: kubernetes-super-admin's (system:masters), for the one binding
        the admin's group needs before it is anything."""
        self.url, self.pki_dir, self.kubeconfig, self.breakglass = url, pki_dir, kubeconfig, breakglass

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return context

    def get(self, path: str, timeout: float = 5) -> bytes:
        """GET from the API server through the host's address, as the admin."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 - the sandbox's own https URL
        with urllib.request.urlopen(request, context=self._context(), timeout=timeout) as response:  # noqa: S310
            return response.read()

    def kubectl(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:  # fmt: skip
        argv = [str(build.artifacts().kubectl), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)

    def bootstrap_rbac(self) -> None:
        """The admin's group becomes cluster-admin (as kubeadm does), with the break-glass identity, once."""
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": ADMIN_GROUP},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": ADMIN_GROUP}],
        }  # fmt: skip
        if self.kubectl("get", "clusterrolebinding", ADMIN_GROUP, kubeconfig=self.breakglass).returncode == 0:
            return
        proc = self.kubectl("create", "-f", "-", kubeconfig=self.breakglass, stdin=json.dumps(binding))
        if proc.returncode != 0 and "AlreadyExists" not in proc.stderr:
            raise SandboxError(f"binding {ADMIN_GROUP} to cluster-admin failed: {proc.stderr.strip()}")

    def place_control_plane(self, workers: int, nodes: set[str]) -> None:
        """With workers, the control plane's node takes no pods (its role label and NoSchedule taint, as kind's);
        alone, it takes them all. Node objects of workers this sandbox no longer runs (not in `nodes`) go."""
        taint = f"{CONTROL_PLANE_TAINT}:NoSchedule"
        # Read first: an `up` of a running sandbox writes nothing (tests count the admin's writes).
        node = json.loads(self.kubectl("get", "node", NODE_NAME, "-o", "json").stdout or "{}")
        labelled = CONTROL_PLANE_TAINT in node.get("metadata", {}).get("labels", {})
        tainted = any(t.get("key") == CONTROL_PLANE_TAINT and t.get("effect") == "NoSchedule"
                      for t in node.get("spec", {}).get("taints", []))  # fmt: skip
        steps = []
        if workers:
            steps += [] if labelled else [("label", "node", NODE_NAME, f"{CONTROL_PLANE_TAINT}=", "--overwrite")]
            steps += [] if tainted else [("taint", "node", NODE_NAME, taint, "--overwrite")]
        else:
            steps += [("taint", "node", NODE_NAME, f"{taint}-")] if tainted else []
            steps += [("label", "node", NODE_NAME, f"{CONTROL_PLANE_TAINT}-")] if labelled else []
        for args in steps:
            proc = self.kubectl(*args)
            if proc.returncode != 0 and "not found" not in proc.stderr:
                raise SandboxError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        if workers and self.pods_on(NODE_NAME):
            # Pods kept from a single-node sandbox: moved to the workers as an operator would (evictions honour
            # PodDisruptionBudgets), then the node takes pods again but for the taint.
            drained = self.kubectl("drain", NODE_NAME, "--ignore-daemonsets", "--delete-emptydir-data",
                                   "--timeout=180s", timeout=240)  # fmt: skip
            self.kubectl("uncordon", NODE_NAME)
            if drained.returncode != 0:
                raise SandboxError(f"moving the pods off {NODE_NAME} failed: {drained.stderr.strip()[-500:]}")
        listed = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout or "{}").get("items", [])
        stale = [n["metadata"]["name"] for n in listed if n["metadata"]["name"] not in nodes
                 and n["metadata"]["name"].startswith(f"{CONTROL_PLANE}-worker-")]  # fmt: skip
        if stale:
            self.kubectl("delete", "node", *stale, "--wait=false")

    def pods_on(self, node: str) -> list[str]:
        """Pods bound to `node` that are not done (DaemonSets' and mirror pods' included)."""
        selector = f"spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed"
        listed = self.kubectl("get", "pods", "-A", "--field-selector", selector, "-o", "name")
        return listed.stdout.split() if listed.returncode == 0 else []
