"""Controllers: Deployments and Jobs make pods, Services forward to ready pods; status from the real pods.

Simplifications, on purpose and documented: a Deployment owns its pods directly (no ReplicaSet objects in
between; the `pod-template-hash` label still tells template generations apart), and `minReadySeconds` is not
honoured. The rolling-update arithmetic (maxSurge rounded up, maxUnavailable rounded down, never both zero)
and the status fields follow the deployment controller (pkg/controller/deployment).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from .kubelet import STATUS, Kubelet
from .proxy import Forwarder
from .runtime import NodeNetwork
from .selectors import match_label_selector
from .store import ApiError, Store, WriteOptions, now

POD_DELETE = WriteOptions(propagation="Background")


def template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = total * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


def _condition(kind: str, status: bool, reason: str, message: str, previous: list[dict]) -> dict:
    old = next((c for c in previous if c.get("type") == kind), None)
    text = "True" if status else "False"
    since = old["lastTransitionTime"] if old and old.get("status") == text else now()
    updated = old["lastUpdateTime"] if old and old.get("reason") == reason and old.get("status") == text else now()
    return {
        "type": kind,
        "status": text,
        "lastUpdateTime": updated,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    }


class ControllerManager:
    """One thread running every controller and the kubelet in a loop."""

    def __init__(
        self,
        store: Store,
        network: NodeNetwork,
        kubelet: Kubelet,
        state_dir: Path,
        *,
        host_forwards: list[tuple[int, int]] | None = None,
        interval: float = 0.25,
    ) -> None:
        self.store = store
        self.network = network
        self.kubelet = kubelet
        self.interval = interval
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="controller-manager", daemon=True)
        self.services = ServiceController(store, network, kubelet, state_dir / "services.json")
        # deployment uid -> (replica counts last seen, monotonic time they last changed): progress deadline
        self.progress: dict[str, tuple[tuple[int, int, int], float]] = {}
        self.forwarders = [
            Forwarder(
                network.listen(network.gateway, port), lambda target=target: [_host_connector(target)], f"host-{port}"
            )
            for port, target in host_forwards or []
        ]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        for forwarder in self.forwarders:
            forwarder.close()
        self.services.close()
        self.kubelet.stop_all()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.sync()
            except Exception as exc:
                print(f"controller-manager: {type(exc).__name__}: {exc}", flush=True)
            self.stopping.wait(self.interval)

    def sync(self) -> None:
        self.services.sync()
        for _, obj in self.store.iter_objects():
            kind = obj.get("kind")
            if kind == "Deployment":
                self._deployment(obj)
            elif kind == "Job":
                self._job(obj)
        self.kubelet.sync()

    # -- shared ------------------------------------------------------------------------------------
    def _owned_pods(self, owner: dict) -> list[dict]:
        uid = owner["metadata"]["uid"]
        return [
            obj
            for _, obj in self.store.iter_objects()
            if obj.get("kind") == "Pod"
            and any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    def _create_pod(self, owner: dict, template: dict, name: str, extra_labels: dict[str, str]) -> None:
        meta = copy.deepcopy(template.get("metadata") or {})
        meta["name"] = name
        meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template["spec"])}
        with contextlib.suppress(ApiError):
            self.store.create(self.store.resource("", "v1", "pods"), owner["metadata"]["namespace"], pod)

    def _delete_pod(self, pod: dict) -> None:
        with contextlib.suppress(ApiError):
            self.store.delete(
                self.store.resource("", "v1", "pods"), pod["metadata"]["namespace"], pod["metadata"]["name"]
            )

    def _write_status(self, obj: dict, plural: str, group: str, version: str, status: dict) -> None:
        if obj.get("status") == status:
            return
        resource = self.store.resource(group, version, plural)
        with contextlib.suppress(ApiError):
            self.store.update(
                resource, obj["metadata"]["namespace"], obj["metadata"]["name"], {**obj, "status": status}, STATUS
            )

    def _ready(self, pod: dict) -> bool:
        conditions = (pod.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # -- deployments -------------------------------------------------------------------------------
    def _deployment(self, dep: dict) -> None:
        spec = dep["spec"]
        desired = int(spec.get("replicas", 1))
        current_hash = template_hash(spec["template"])
        pods = self._owned_pods(dep)
        new = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == current_hash]
        old = [p for p in pods if p not in new]
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", "25%"), desired, round_up=True)
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        ready = [p for p in pods if self._ready(p)]
        if strategy.get("type") == "Recreate":
            for pod in old:
                self._delete_pod(pod)
            if not old:
                for _ in range(desired - len(new)):
                    self._create_pod(
                        dep, spec["template"], self._pod_name(dep, current_hash), {"pod-template-hash": current_hash}
                    )
        else:
            # Scale up the new generation within maxSurge.
            room = desired + surge - len(pods)
            for _ in range(max(0, min(room, desired - len(new)))):
                self._create_pod(
                    dep, spec["template"], self._pod_name(dep, current_hash), {"pod-template-hash": current_hash}
                )
            # Scale down the old generation (not-ready pods first) while keeping desired - maxUnavailable ready.
            available = len(ready)
            min_available = max(desired - unavailable, 0)
            for pod in sorted(old, key=self._ready):
                if not self._ready(pod):
                    self._delete_pod(pod)
                elif available - 1 >= min_available:
                    self._delete_pod(pod)
                    available -= 1
            for pod in sorted(new, key=self._ready)[: max(len(new) - desired, 0)]:
                self._delete_pod(pod)
        self._deployment_status(dep, desired, unavailable, current_hash)

    def _pod_name(self, dep: dict, current_hash: str) -> str:
        return f"{dep['metadata']['name']}-{current_hash}-{uuid.uuid4().hex[:5]}"

    def _deployment_status(self, dep: dict, desired: int, max_unavailable: int, current_hash: str) -> None:
        pods = self._owned_pods(dep)
        updated = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == current_hash]
        ready = [p for p in pods if self._ready(p)]
        previous = (dep.get("status") or {}).get("conditions") or []
        uid = dep["metadata"]["uid"]
        complete = len(updated) == desired == len(pods) and len([p for p in updated if self._ready(p)]) == desired
        signature = (len(updated), len(ready), len(pods))
        if uid not in self.progress or self.progress[uid][0] != signature:
            self.progress[uid] = (signature, time.monotonic())
        deadline = dep["spec"].get("progressDeadlineSeconds", 600)
        stalled = not complete and time.monotonic() - self.progress[uid][1] > deadline
        name = dep["metadata"]["name"]
        if complete:
            progressing = _condition(
                "Progressing",
                True,
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}-{current_hash}" has successfully progressed.',
                previous,
            )
        elif stalled:
            progressing = _condition(
                "Progressing",
                False,
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{name}-{current_hash}" has timed out progressing.',
                previous,
            )
        else:
            progressing = _condition(
                "Progressing",
                True,
                "ReplicaSetUpdated",
                f'ReplicaSet "{name}-{current_hash}" is progressing.',
                previous,
            )
        available_ok = len(ready) >= desired - max_unavailable
        available = _condition(
            "Available",
            available_ok,
            "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available_ok
            else "Deployment does not have minimum availability.",
            previous,
        )
        status: dict[str, Any] = {"observedGeneration": dep["metadata"].get("generation", 1)}
        if pods:
            status.update(
                replicas=len(pods), updatedReplicas=len(updated), readyReplicas=len(ready), availableReplicas=len(ready)
            )
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas"):
            if not status.get(key):
                status.pop(key, None)
        if len(pods) - len(ready) > 0:
            status["unavailableReplicas"] = len(pods) - len(ready)
        status["conditions"] = [available, progressing]
        self._write_status(dep, "deployments", "apps", "v1", status)

    # -- jobs --------------------------------------------------------------------------------------
    def _job(self, job: dict) -> None:
        status = copy.deepcopy(job.get("status") or {})
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions") or []):
            return
        spec = job["spec"]
        pods = self._owned_pods(job)
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        completions = int(spec.get("completions", 1))
        backoff_limit = int(spec.get("backoffLimit", 6))
        status.setdefault("startTime", now())
        conditions: list[dict] = []
        if succeeded >= completions:
            stamp = now()
            conditions = _terminal_conditions(
                ("SuccessCriteriaMet", "Complete"),
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                stamp,
            )
            status["completionTime"] = stamp
        elif failed > backoff_limit:
            conditions = _terminal_conditions(
                ("FailureTarget", "Failed"),
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now(),
            )
        elif not active:
            name, uid = job["metadata"]["name"], job["metadata"]["uid"]
            # The labels a real Job controller gives its pods (selectable with job-name=<job>).
            labels = {"batch.kubernetes.io/job-name": name, "job-name": name,
                      "batch.kubernetes.io/controller-uid": uid, "controller-uid": uid}  # fmt: skip
            self._create_pod(job, spec["template"], f"{name}-{uuid.uuid4().hex[:5]}", labels)
            active = [None]  # type: ignore[list-item]
        status.update(
            active=len(active) if not conditions else 0,
            succeeded=succeeded,
            failed=failed,
            ready=sum(1 for p in active if p and self._ready(p)),
            terminating=0,
            uncountedTerminatedPods={},
        )
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                status.pop(key)
        if conditions:
            status["conditions"] = conditions
        self._write_status(job, "jobs", "batch", "v1", status)


def _terminal_conditions(types: tuple[str, ...], reason: str, message: str, stamp: str) -> list[dict]:
    """The pair of conditions the job controller sets when a Job finishes (e.g. SuccessCriteriaMet + Complete)."""
    return [
        {"type": kind, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp, "reason": reason,
         "message": message}
        for kind in types
    ]  # fmt: skip


def _host_connector(port: int) -> Any:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=5)


class ServiceController:
    """ClusterIP Services: the ClusterIP answers inside the node network, a 127.0.0.1 port on the host; both
    forward each new connection to one of the ready pods the selector matches (round-robin)."""

    def __init__(self, store: Store, network: NodeNetwork, kubelet: Kubelet, registry: Path) -> None:
        self.store = store
        self.network = network
        self.kubelet = kubelet
        self.registry = registry
        self.forwarders: dict[tuple[str, str, int], list[Forwarder]] = {}
        self.addresses: set[str] = set()

    def sync(self) -> None:
        services = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): o
            for _, o in self.store.iter_objects()
            if o.get("kind") == "Service"
        }
        wanted = set()
        hosts: dict[str, str] = {}
        for (namespace, name), svc in services.items():
            spec = svc.get("spec") or {}
            cluster_ip = spec.get("clusterIP")
            if not cluster_ip or cluster_ip == "None":
                continue
            for dns in (f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc", f"{name}.{namespace}"):
                hosts[dns] = cluster_ip
            for port in spec.get("ports") or []:
                key = (namespace, name, int(port["port"]))
                wanted.add(key)
                if key not in self.forwarders:
                    self._open(key, svc, port, cluster_ip)
        for key in [k for k in self.forwarders if k not in wanted]:
            for forwarder in self.forwarders.pop(key):
                forwarder.close()
        self.kubelet.service_hosts = hosts
        self._write_registry()

    def _open(self, key: tuple[str, str, int], svc: dict, port: dict, cluster_ip: str) -> None:
        if cluster_ip not in self.addresses:
            self.network.add_address(cluster_ip)
            self.addresses.add(cluster_ip)
        namespace, name, number = key

        def targets() -> list:
            current = next(
                (
                    o
                    for _, o in self.store.iter_objects()
                    if o.get("kind") == "Service"
                    and o["metadata"].get("namespace") == namespace
                    and o["metadata"]["name"] == name
                ),
                None,
            )
            if current is None:
                return []
            selector = (current.get("spec") or {}).get("selector")
            target = next(
                (
                    p.get("targetPort", p["port"])
                    for p in current["spec"].get("ports") or []
                    if int(p["port"]) == number
                ),
                number,
            )
            connectors = []
            for _, pod in self.store.iter_objects():
                if pod.get("kind") != "Pod" or pod["metadata"].get("namespace") != namespace:
                    continue
                if not selector or not match_label_selector({"matchLabels": selector}, pod["metadata"].get("labels")):
                    continue
                ip = self.kubelet.ready_ip(namespace, pod["metadata"]["name"])
                if ip:
                    pod_port = _container_port(pod, target)
                    connectors.append(lambda ip=ip, pod_port=pod_port: self.network.connect(ip, pod_port, 5.0))
            return connectors

        inside = Forwarder(self.network.listen(cluster_ip, number), targets, f"{namespace}/{name}:{number}")
        host_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        host_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host_socket.bind(("127.0.0.1", 0))
        host_socket.listen(64)
        outside = Forwarder(host_socket, targets, f"host:{namespace}/{name}:{number}")
        self.forwarders[key] = [inside, outside]

    def _write_registry(self) -> None:
        registry: dict[str, dict[str, str]] = {}
        for (namespace, name, port), (_, outside) in self.forwarders.items():
            registry.setdefault(f"{namespace}/{name}", {})[str(port)] = f"127.0.0.1:{outside.port}"
        text = json.dumps(registry, indent=2, sort_keys=True)
        if not self.registry.exists() or self.registry.read_text() != text:
            self.registry.write_text(text)

    def close(self) -> None:
        for forwarders in self.forwarders.values():
            for forwarder in forwarders:
                forwarder.close()
        self.forwarders.clear()


def _container_port(pod: dict, target: Any) -> int:
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    return 0
