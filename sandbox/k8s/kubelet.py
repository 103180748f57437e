"""The process kubelet: Pod objects become real local processes, their status comes from what those do.

Each pod gets its own network namespace and IP (`runtime.NodeNetwork`), each container a process in its own
mount namespace with its volumes at their real paths, read-only root and user as its securityContext says
(`runtime.run_container`). Probes are sent as the kubelet sends them (HTTP GET with `Host: <podIP>:<port>`,
TCP connect, exec inside the container's namespaces), readiness drives the pod's Ready condition (and so Service
endpoints and Deployment availability), liveness failures restart the container, and a container that keeps
exiting goes into CrashLoopBackOff with a growing back-off, as on a node.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .images import ImageError, ImageTable
from .runtime import ContainerSpec, Mount, NodeNetwork, run_container
from .store import ApiError, Store, WriteOptions, now

MAX_BACKOFF = 300.0
STATUS = WriteOptions(subresource="status")


class ConfigError(Exception):
    """The container cannot be created from its spec (CreateContainerConfigError, ErrImagePull)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Container:
    spec: dict
    proc: subprocess.Popen | None = None
    restarts: int = 0
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    ready: bool = False
    started: bool = False  # startup probe passed (or none)
    next_start: float = 0.0
    done: bool = False  # terminated for good (restart policy says so)
    prober: threading.Thread | None = None


@dataclass
class PodRun:
    uid: str
    namespace: str
    name: str
    ip: str = ""
    started_at: str = ""
    containers: dict[str, Container] = field(default_factory=dict)
    directory: Path = Path()


class Kubelet:
    def __init__(
        self, store: Store, network: NodeNetwork, state_dir: Path, images: ImageTable, backoff: float = 10.0
    ) -> None:
        self.store = store
        self.network = network
        self.state_dir = state_dir
        self.images = images
        self.backoff = backoff
        self.pods: dict[str, PodRun] = {}
        self.service_hosts: dict[str, str] = {}  # DNS name -> cluster IP, kept by the service controller

    # -- the loop ----------------------------------------------------------------------------------
    def sync(self) -> None:
        live = {obj["metadata"]["uid"]: obj for _, obj in self.store.iter_objects() if obj.get("kind") == "Pod"}
        for uid in [uid for uid in self.pods if uid not in live]:
            # A deleted pod's processes get their grace period without holding up the loop.
            threading.Thread(target=self._teardown, args=(self.pods.pop(uid),), daemon=True).start()
        for uid, pod in live.items():
            run = self.pods.get(uid)
            if run is None:
                run = self.pods[uid] = self._admit(pod)
            self._step(run, pod)

    def log_path(self, namespace: str, name: str, container: str | None) -> Path | None:
        for run in self.pods.values():
            if (run.namespace, run.name) == (namespace, name):
                chosen = container or next(iter(run.containers), "")
                return run.directory / f"{chosen}.log" if chosen in run.containers else None
        return None

    def ready_ip(self, namespace: str, name: str) -> str | None:
        run = next((r for r in self.pods.values() if (r.namespace, r.name) == (namespace, name)), None)
        if run and run.containers and all(c.ready for c in run.containers.values()):
            return run.ip
        return None

    # -- pod lifecycle -----------------------------------------------------------------------------
    def _admit(self, pod: dict) -> PodRun:
        meta = pod["metadata"]
        run = PodRun(meta["uid"], meta.get("namespace", ""), meta["name"])
        run.directory = self.state_dir / "pods" / f"{run.namespace}_{run.name}_{run.uid[:8]}"
        run.directory.mkdir(parents=True, exist_ok=True)
        run.ip = self.network.add_pod(run.uid[:12])
        run.started_at = now()
        for spec in pod["spec"].get("containers") or []:
            run.containers[spec["name"]] = Container(spec=spec)
        return run

    def _step(self, run: PodRun, pod: dict) -> None:
        restart_policy = pod["spec"].get("restartPolicy", "Always")
        for container in run.containers.values():
            self._reap(run, pod, container, restart_policy)
            if container.proc is None and not container.done and time.monotonic() >= container.next_start:
                self._start(run, pod, container)
        self._write_status(run, pod, restart_policy)

    def _reap(self, run: PodRun, pod: dict, container: Container, restart_policy: str) -> None:
        if container.proc is None or container.proc.poll() is None:
            return
        code = container.proc.returncode
        started = container.state.get("running", {}).get("startedAt", now())
        container.last_state = {
            "terminated": {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": started,
                "finishedAt": now(),
            }
        }
        container.proc = None
        container.ready = container.started = False
        restart = restart_policy == "Always" or (restart_policy == "OnFailure" and code != 0)
        if not restart:
            container.done = True
            container.state = copy.deepcopy(container.last_state)
            container.last_state = {}
            return
        delay = min(self.backoff * (2 ** max(container.restarts - 1, 0)), MAX_BACKOFF) if container.restarts else 0.0
        container.restarts += 1
        container.next_start = time.monotonic() + delay
        container.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container={container.spec['name']} "
                f"pod={run.name}_{run.namespace}({run.uid})",
            }
        }

    def _start(self, run: PodRun, pod: dict, container: Container) -> None:
        try:
            spec = self._container_spec(run, pod, container.spec)
        except ConfigError as exc:
            container.state = {"waiting": {"reason": exc.reason, "message": str(exc)}}
            container.next_start = time.monotonic() + min(self.backoff, 5.0)
            return
        log = run.directory / f"{container.spec['name']}.log"
        container.proc = run_container(self.network, run.uid[:12], spec, log)
        container.state = {"running": {"startedAt": now()}}
        container.started = "startupProbe" not in container.spec
        container.ready = False
        container.prober = threading.Thread(
            target=self._probe_loop,
            args=(run, container, container.proc),
            name=f"probe-{run.name}-{container.spec['name']}",
            daemon=True,
        )
        container.prober.start()

    def _teardown(self, run: PodRun, grace: float = 10.0) -> None:
        for container in run.containers.values():
            proc = container.proc
            container.proc = None
            if proc is not None:
                _stop(proc, grace)
        self.network.remove_pod(run.uid[:12])
        shutil.rmtree(run.directory, ignore_errors=True)

    def stop_all(self) -> None:
        for uid in list(self.pods):
            self._teardown(self.pods.pop(uid), grace=5.0)

    # -- container spec ------------------------------------------------------------------------------
    def _container_spec(self, run: PodRun, pod: dict, spec: dict) -> ContainerSpec:
        try:
            image = self.images.resolve(spec.get("image", ""))
        except ImageError as exc:
            raise ConfigError("ErrImagePull", str(exc)) from exc
        pod_sc = pod["spec"].get("securityContext") or {}
        sc = spec.get("securityContext") or {}
        uid = sc.get("runAsUser", pod_sc.get("runAsUser", image.user))
        gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", uid if uid else 0))
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) and uid == 0:
            raise ConfigError(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root "
                f'(pod: "{run.name}_{run.namespace}({run.uid})", container: {spec["name"]})',
            )
        env = {"PATH": ":".join([*image.path, "/usr/local/bin", "/usr/bin", "/bin"]), "HOSTNAME": run.name}
        env.update(self._env(run, pod, spec))
        command = spec.get("command") or image.entrypoint
        args = spec.get("args") if spec.get("args") is not None or spec.get("command") else image.cmd
        argv = [_expand(part, env) for part in [*command, *(args or [])]]
        if not argv:
            raise ConfigError("CreateContainerConfigError", "no command specified")
        return ContainerSpec(
            argv=argv,
            env=env,
            workdir=spec.get("workingDir"),
            run_as_user=uid if uid else None,
            run_as_group=gid if uid else None,
            read_only_root=bool(sc.get("readOnlyRootFilesystem")),
            mounts=self._mounts(run, pod, spec),
            hosts=dict(self.service_hosts),
            hostname=run.name,
        )

    def _lookup(self, kind: str, namespace: str, name: str) -> dict:
        resource = self.store.resource("", "v1", "secrets" if kind == "Secret" else "configmaps")
        try:
            return self.store.get(resource, namespace, name)
        except ApiError as exc:
            raise ConfigError("CreateContainerConfigError", f'{kind.lower()} "{name}" not found') from exc

    def _data(self, kind: str, obj: dict) -> dict[str, str]:
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
            return data
        return dict(obj.get("data") or {})

    def _ref_data(self, run: PodRun, kind: str, ref: dict) -> dict[str, str] | None:
        """The data of the Secret/ConfigMap `ref` names; None when it is missing and `optional`."""
        try:
            return self._data(kind, self._lookup(kind, run.namespace, ref["name"]))
        except ConfigError:
            if ref.get("optional"):
                return None
            raise

    def _env(self, run: PodRun, pod: dict, spec: dict) -> dict[str, str]:
        """envFrom first, then env in order ($(VAR) expands earlier variables), as the kubelet builds it."""
        env: dict[str, str] = {}
        for source in spec.get("envFrom") or []:
            for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                data = self._ref_data(run, kind, source[ref_key]) if ref_key in source else None
                env.update({source.get("prefix", "") + k: v for k, v in (data or {}).items()})
        fields = {
            "metadata.name": run.name,
            "metadata.namespace": run.namespace,
            "status.podIP": run.ip,
            "metadata.uid": run.uid,
            "spec.nodeName": "sandbox",
            "status.hostIP": self.network.gateway,
        }
        for item in spec.get("env") or []:
            value_from = item.get("valueFrom") or {}
            if not value_from:
                env[item["name"]] = _expand(item.get("value", ""), env)
            elif "fieldRef" in value_from:
                env[item["name"]] = fields.get(value_from["fieldRef"]["fieldPath"], "")
            for kind, ref_key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = value_from.get(ref_key)
                data = self._ref_data(run, kind, ref) if ref else None
                if data is None:
                    continue
                if ref["key"] not in data and not ref.get("optional"):
                    raise ConfigError(
                        "CreateContainerConfigError",
                        f"couldn't find key {ref['key']} in {kind} {run.namespace}/{ref['name']}",
                    )
                if ref["key"] in data:
                    env[item["name"]] = data[ref["key"]]
        return env

    def _mounts(self, run: PodRun, pod: dict, spec: dict) -> list[Mount]:
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        mounts = []
        for mount in spec.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            read_only = bool(mount.get("readOnly"))
            if "emptyDir" in volume:
                mounts.append(Mount(path=mount["mountPath"], tmpfs=True, read_only=read_only))
                continue
            for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if key in volume:
                    name = volume[key].get("secretName" if kind == "Secret" else "name")
                    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
                    directory = self._materialise(run, mount["name"], kind, name, volume[key], fs_group=fs_group)
                    mounts.append(Mount(path=mount["mountPath"], source=str(directory), read_only=True))
                    break
            else:
                raise ConfigError(
                    "CreateContainerConfigError",
                    f"volume {mount['name']}: only emptyDir, secret and configMap volumes are supported by the sandbox",
                )
        return mounts

    def _materialise(
        self, run: PodRun, volume: str, kind: str, name: str, source: dict, *, fs_group: int | None
    ) -> Path:
        data = self._data(kind, self._lookup(kind, run.namespace, name))
        directory = run.directory / "volumes" / volume
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        mode = source.get("defaultMode", 0o644)
        for item in items:
            target = directory / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(data.get(item["key"], ""))
            target.chmod(item.get("mode", mode))
            if fs_group is not None:
                # As the kubelet does for fsGroup: the pod's supplementary group owns the files.
                os.chown(target, 0, fs_group)
        directory.chmod(0o755)
        return directory

    # -- probes ------------------------------------------------------------------------------------
    def _probe_loop(self, run: PodRun, container: Container, proc: subprocess.Popen) -> None:
        spec = container.spec
        startup, readiness, liveness = (spec.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe"))
        started_at = time.monotonic()
        last: dict[str, float] = {}
        counts: dict[str, list[int]] = {"startup": [0, 0], "readiness": [0, 0], "liveness": [0, 0]}
        while container.proc is proc and proc.poll() is None:
            now_ = time.monotonic()
            if not container.started:
                if self._due(startup, "startup", last, started_at, now_):
                    ok = self._probe(run, container, proc, startup)
                    if self._threshold(startup, counts["startup"], ok) == "success":
                        container.started = True
                    elif counts["startup"][1] >= startup.get("failureThreshold", 3):
                        _stop(proc)  # a failed startup probe restarts the container, like liveness
                time.sleep(0.1)
                continue
            if readiness is None:
                container.ready = True
            elif self._due(readiness, "readiness", last, started_at, now_):
                ok = self._probe(run, container, proc, readiness)
                verdict = self._threshold(readiness, counts["readiness"], ok)
                if verdict:
                    container.ready = verdict == "success"
            if liveness is not None and self._due(liveness, "liveness", last, started_at, now_):
                ok = self._probe(run, container, proc, liveness)
                if self._threshold(liveness, counts["liveness"], ok) == "failure":
                    container.ready = False
                    _stop(proc, grace=float(liveness.get("terminationGracePeriodSeconds") or 2))
            time.sleep(0.1)
        container.ready = False

    @staticmethod
    def _due(probe: dict | None, name: str, last: dict[str, float], started_at: float, now_: float) -> bool:
        if probe is None or now_ - started_at < probe.get("initialDelaySeconds", 0):
            return False
        if now_ - last.get(name, -1e9) < probe.get("periodSeconds", 10):
            return False
        last[name] = now_
        return True

    @staticmethod
    def _threshold(probe: dict, count: list[int], ok: bool) -> str:
        """Count consecutive successes/failures; 'success'/'failure' once a threshold is reached, else ''."""
        if ok:
            count[0], count[1] = count[0] + 1, 0
            return "success" if count[0] >= probe.get("successThreshold", 1) else ""
        count[0], count[1] = 0, count[1] + 1
        return "failure" if count[1] >= probe.get("failureThreshold", 3) else ""

    def _port(self, container: Container, port: Any) -> int:
        if isinstance(port, int):
            return port
        for entry in container.spec.get("ports") or []:
            if entry.get("name") == port:
                return int(entry["containerPort"])
        return int(port)

    def _probe(self, run: PodRun, container: Container, proc: subprocess.Popen, probe: dict) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                http = probe["httpGet"]
                port = self._port(container, http.get("port"))
                headers = "".join(f"{h['name']}: {h['value']}\r\n" for h in http.get("httpHeaders") or [])
                request = (
                    f"GET {http.get('path', '/')} HTTP/1.1\r\nHost: {run.ip}:{port}\r\nUser-Agent: kube-probe/1.37\r\n"
                    f"Accept: */*\r\n{headers}Connection: close\r\n\r\n"
                )
                with contextlib.closing(self.network.connect(run.ip, port, timeout)) as sock:
                    sock.settimeout(timeout)
                    sock.sendall(request.encode())
                    status_line = sock.recv(64).split(b"\r\n", 1)[0].split()
                return len(status_line) >= 2 and 200 <= int(status_line[1]) < 400
            if "tcpSocket" in probe:
                port = self._port(container, probe["tcpSocket"].get("port"))
                self.network.connect(run.ip, port, timeout).close()
                return True
            if "exec" in probe:
                argv = ["nsenter", "-t", str(proc.pid), "-n", "-m", "--", *probe["exec"]["command"]]
                return subprocess.run(argv, capture_output=True, timeout=timeout, check=False).returncode == 0
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return False
        return False

    # -- status --------------------------------------------------------------------------------------
    def _write_status(self, run: PodRun, pod: dict, restart_policy: str) -> None:
        statuses = []
        for name, container in run.containers.items():
            entry = {
                "name": name,
                "image": container.spec.get("image", ""),
                "imageID": "",
                "ready": container.ready,
                "started": container.proc is not None and container.started,
                "restartCount": container.restarts,
                "state": container.state,
            }
            if container.last_state:
                entry["lastState"] = container.last_state
            statuses.append(entry)
        all_done = all(c.done for c in run.containers.values())
        if all_done and run.containers:
            failed = any(c.state.get("terminated", {}).get("exitCode") for c in run.containers.values())
            phase = "Failed" if failed else "Succeeded"
        elif any(c.proc is not None for c in run.containers.values()):
            phase = "Running"
        else:
            phase = "Pending" if not any(c.restarts for c in run.containers.values()) else "Running"
        ready = bool(run.containers) and all(c.ready for c in run.containers.values())
        previous = pod.get("status") or {}
        conditions = []
        for kind, value in (
            ("PodReadyToStartContainers", True),
            ("Initialized", True),
            ("Ready", ready),
            ("ContainersReady", ready),
            ("PodScheduled", True),
        ):
            old = next((c for c in previous.get("conditions") or [] if c["type"] == kind), None)
            status = "True" if value else "False"
            since = old["lastTransitionTime"] if old and old["status"] == status else now()
            conditions.append({"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since})
        status = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.network.gateway,
            "hostIPs": [{"ip": self.network.gateway}],
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": run.started_at,
            "containerStatuses": statuses,
            "qosClass": _qos(pod),
        }
        if status == previous:
            return
        resource = self.store.resource("", "v1", "pods")
        with contextlib.suppress(ApiError):
            self.store.update(resource, run.namespace, run.name, {**pod, "status": status}, STATUS)


def _qos(pod: dict) -> str:
    containers = pod["spec"].get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if all(r.get("limits") and r.get("requests", r.get("limits")) == r.get("limits") for r in resources):
        return "Guaranteed"
    return "Burstable" if any(r.get("limits") or r.get("requests") for r in resources) else "BestEffort"


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion in command, args and env values; $$(VAR) escapes."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$(", i):
            out.append("$(")
            i += 3
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2 : end]
            out.append(env.get(name, text[i : end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the container's process group, SIGKILL after the grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
