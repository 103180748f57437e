"""What the sandbox's own cluster tests share: kubectl against a module's cluster, small pods of the test tool,
waiting, and the host's state that `down` must restore."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

from sandbox import pins

TOOL = pins.TESTTOOL_IMAGE


def host_state(names: tuple[str, ...]) -> dict[str, object]:
    """What the host shows: its iptables rules and links, and the mounts naming this cluster (`names`)."""
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {
        "rules": sorted(line for line in rules.splitlines() if line and not line.startswith("#")),
        "links": sorted(line.split(":")[1].strip() for line in links.splitlines()),
        "mounts": sorted(
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if any(n in line for n in names)
        ),
    }


def kubectl(cluster: dict, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    proc = cluster["kube"].kubectl(*args, stdin=stdin, timeout=timeout)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def apply(cluster: dict, *objects: dict) -> None:
    kubectl(cluster, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def pod(name: str, args: list[str], memory: str = "64Mi", restart: str = "Never", labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"restartPolicy": restart, "containers": [{
                "name": "main", "image": TOOL, "imagePullPolicy": "Never", "args": args,
                "resources": {"limits": {"memory": memory, "cpu": "200m"}}}]}}  # fmt: skip


def wait_for(check, timeout: float = 90, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, KeyError, IndexError, ValueError):
            result = check()
            if result:
                return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what or check}")


def get(cluster: dict, *args: str) -> dict:
    return json.loads(kubectl(cluster, "get", *args, "-o", "json"))
