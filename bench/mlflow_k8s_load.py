"""Benchmark: memory of each MLflow pod under a load of concurrent log_metric calls (issue 4: >= 25% headroom).

Deploys MLflow with the role carbon254.mlflow.mlflow_k8s and its DEFAULT production sizing (2 replicas, 2 uvicorn
workers, memory request 1Gi / limit 2Gi, CPU 500m / 1) into the sandbox named by SANDBOX_* (started if it is not
running, and stopped again then), against a database/user and a bucket made here. Then N client threads talk to
the Service (`python -m sandbox service-url`, round-robin over the ready pods per connection) with the Host header
MLflow allows: each creates runs and calls `runs/log-metric`, every few calls `runs/log-batch`, for D seconds.

Every 0.5 s the processes of each pod are read from /proc: those in the pod's cgroup (the kubelet's cgroupfs
layout in the sandbox node's subtree, kubepods/<qos>/pod<uid>: `mlflow server`, the uvicorn master and its workers,
the pause process). RSS (VmRSS) is summed, and PSS (smaps_rollup) beside it; the claim is checked against RSS, the
stricter figure (RSS counts shared pages once per process). The limit is the pod spec's, read from the API, and
the kernel enforces it (a container above it is OOM-killed).

Everything made here (namespace via the role with state=absent, database, user, bucket) is removed, also on failure.
The JSON summary goes to stdout, the Markdown section to stderr, and with --write into docs/benchmarks.md.

    .venv/bin/python bench/mlflow_k8s_load.py [--clients 16] [--duration 60] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sandbox_startup import update_doc  # noqa: E402
from harness.ansible import run_role  # noqa: E402
from harness.kube import api as api_get  # noqa: E402
from harness.kube import delete_namespace as api_delete_namespace  # noqa: E402
from harness.kube import service_base  # noqa: E402
from harness.stores import admin_conn, s3_client  # noqa: E402
from sandbox import Sandbox  # noqa: E402
from sandbox.node import hierarchies  # noqa: E402

HEADING = "## MLflow pods under log_metric load: memory headroom (bench/mlflow_k8s_load.py)"
CLAIM = 0.25  # issue 4: RSS stays below the limit with at least 25% headroom
MIB = 1024 * 1024


# -- the pods' processes: those in the pod's cgroup -----------------------------------------------------------
def pod_cgroup(uid: str) -> Path:
    """The pod's directory in the memory hierarchy (the kubelet's cgroupfs layout: kubepods/<qos>/pod<uid>)."""
    memory = next(root for root in hierarchies() if (root / "memory.stat").exists() or root.name == "memory")
    found = [p for p in memory.glob(f"carbon254-*/kubepods/**/pod{uid}") if p.is_dir()]
    if len(found) != 1:
        raise RuntimeError(f"pod {uid}: {len(found)} cgroups found under {memory}")
    return found[0]


def netns_pids(cgroup: str) -> list[int]:
    """Every process of the pod (its containers and the pause process), from the pod's cgroup."""
    pids: set[int] = set()
    for procs in Path(cgroup).rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(line) for line in procs.read_text().split()}
    return sorted(pids)


def quantity_bytes(text: str) -> float:
    """A Kubernetes memory quantity (2Gi, 512Mi, 1G, 1e9, 1048576) in bytes."""
    match = re.fullmatch(r"([0-9.eE+-]+?)(Ki|Mi|Gi|Ti|k|M|G|T)?", text.strip())
    if not match:
        raise ValueError(f"not a memory quantity: {text!r}")
    factor = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
              "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[match.group(2)]  # fmt: skip
    return float(match.group(1)) * factor


# -- memory of a pod's processes -------------------------------------------------------------------
@dataclass
class PodMemory:
    name: str
    uid: str
    netns: str
    limit: float  # bytes, from the pod spec
    request: float
    idle_rss: list[float] = field(default_factory=list)  # MiB per sample
    idle_pss: list[float] = field(default_factory=list)
    load_rss: list[float] = field(default_factory=list)
    load_pss: list[float] = field(default_factory=list)
    after_rss: list[float] = field(default_factory=list)
    procs: int = 0
    peak_breakdown: list[tuple[int, str, float]] = field(default_factory=list)  # (pid, command, RSS MiB)
    cpu_seconds: float = 0.0  # user+system of the pod's processes during the load


def _kib(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _command(pid: int) -> str:
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [p.decode(errors="replace") for p in parts if p]
    names = [w.rsplit("/", 1)[-1] for w in words[:4]]
    return " ".join(names)[:60]


def read_pod(netns: str) -> tuple[float, float, list[tuple[int, str, float]]]:
    """RSS and PSS (MiB) summed over every process in the pod's network namespace, and RSS per process."""
    rss = pss = 0
    per_process = []
    for pid in netns_pids(netns):
        try:
            own = _kib(Path(f"/proc/{pid}/status"), "VmRSS")
            pss += _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
        except OSError:  # exited between the scan and the read
            continue
        rss += own
        per_process.append((pid, _command(pid), own / 1024))
    return rss / 1024, pss / 1024, per_process


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU time of one process (all its threads), 0 when it is gone."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return 0.0


def cpu_seconds(netns: str) -> float:
    return sum(process_cpu_seconds(pid) for pid in netns_pids(netns))


class Sampler(threading.Thread):
    """Reads every pod every `interval` seconds into the list of the current phase (idle, load, after)."""

    def __init__(self, pods: list[PodMemory], interval: float) -> None:
        super().__init__(daemon=True)
        self.pods, self.interval = pods, interval
        self.phase = "idle"
        self.stop_event = threading.Event()
        self.samples = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            phase = self.phase
            for pod in self.pods:
                rss, pss, per_process = read_pod(pod.netns)
                if not per_process:
                    continue
                pod.procs = max(pod.procs, len(per_process))
                if phase == "idle":
                    pod.idle_rss.append(rss)
                    pod.idle_pss.append(pss)
                elif phase == "load":
                    if not pod.load_rss or rss > max(pod.load_rss):
                        pod.peak_breakdown = per_process
                    pod.load_rss.append(rss)
                    pod.load_pss.append(pss)
                else:
                    pod.after_rss.append(rss)
            self.samples += 1
            self.stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))


# -- the load --------------------------------------------------------------------------------------
@dataclass
class ClientStats:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # endpoint -> seconds (successful calls)
    errors: Counter = field(default_factory=Counter)  # "endpoint: status or exception" -> count
    runs: int = 0
    metrics: int = 0


class Client(threading.Thread):
    def __init__(self, args: argparse.Namespace, url: str, host: str, experiment: str, deadline: float) -> None:
        super().__init__(daemon=True)
        parts = urllib.parse.urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.host, self.experiment, self.deadline, self.args = host, experiment, deadline, args
        self.stats = ClientStats()
        self.conn: http.client.HTTPConnection | None = None
        self.rng = random.Random()  # noqa: S311 - metric values, not secrets

    def call(self, endpoint: str, body: dict) -> dict | None:
        payload = json.dumps(body).encode()
        headers = {"Host": self.host, "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.address, timeout=self.args.timeout)
            self.conn.request("POST", f"/api/2.0/mlflow/{endpoint}", body=payload, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.stats.errors[f"{endpoint}: {type(exc).__name__}"] += 1
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return None
        elapsed = time.perf_counter() - started
        if response.status != 200:
            self.stats.errors[f"{endpoint}: HTTP {response.status}"] += 1
            return None
        self.stats.latencies.setdefault(endpoint, []).append(elapsed)
        return json.loads(data) if data else {}

    def new_run(self) -> str | None:
        body = {"experiment_id": self.experiment, "start_time": int(time.time() * 1000)}
        answer = self.call("runs/create", body)
        if answer is None:
            return None
        self.stats.runs += 1
        return answer["run"]["info"]["run_id"]

    def run(self) -> None:
        run_id, step = None, 0
        while time.monotonic() < self.deadline:
            if run_id is None or step >= self.args.steps_per_run:
                run_id, step = self.new_run(), 0
                if run_id is None:
                    time.sleep(0.2)
                    continue
            now_ms = int(time.time() * 1000)
            if self.args.batch_every and step % self.args.batch_every == self.args.batch_every - 1:
                metrics = [{"key": f"batch_{k}", "value": self.rng.random(), "timestamp": now_ms, "step": step}
                           for k in range(self.args.batch_size)]  # fmt: skip
                if self.call("runs/log-batch", {"run_id": run_id, "metrics": metrics}) is not None:
                    self.stats.metrics += len(metrics)
            else:
                body = {"run_id": run_id, "key": f"loss_{step % 4}", "value": self.rng.random(),
                        "timestamp": now_ms, "step": step}  # fmt: skip
                if self.call("runs/log-metric", body) is not None:
                    self.stats.metrics += 1
            step += 1
        if self.conn is not None:
            self.conn.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def latency_summary(values: list[float]) -> dict[str, float]:
    return {"count": len(values), **{f"p{q}_ms": round(percentile(values, q) * 1000, 1) for q in (50, 95, 99)},
            "max_ms": round(max(values) * 1000, 1) if values else float("nan")}  # fmt: skip


def run_load(args: argparse.Namespace, url: str, host: str, experiment: str) -> tuple[list[ClientStats], float]:
    deadline = time.monotonic() + args.duration
    clients = [Client(args, url, host, experiment, deadline) for _ in range(args.clients)]
    started = time.monotonic()
    for client in clients:
        client.start()
    for client in clients:
        client.join(args.duration + args.timeout + 30)
    return [c.stats for c in clients], time.monotonic() - started


# -- setup and teardown ----------------------------------------------------------------------------
@dataclass
class Stores:
    db: str
    user: str
    password: str
    bucket: str
    ns: str


def create_stores(facts: dict, stores: Stores) -> None:
    conn = admin_conn(facts)
    with conn.cursor() as cur:
        cur.execute(f"create role {stores.user} login password %s", (stores.password,))
        cur.execute(f"create database {stores.db} owner {stores.user}")
    conn.close()
    s3_client(facts).create_bucket(Bucket=stores.bucket)


def role_vars(facts: dict, stores: Stores) -> dict:
    """Only what says where things are and the credentials: every sizing setting stays at the role's default."""
    node = facts["kubernetes"]["node"]
    return {
        "mlflow_k8s_namespace": stores.ns,
        "mlflow_k8s_db_host": node["postgres_host"],
        "mlflow_k8s_db_port": node["postgres_port"],
        "mlflow_k8s_db_name": stores.db,
        "mlflow_k8s_db_user": stores.user,
        "mlflow_k8s_db_password": stores.password,
        "mlflow_k8s_artifacts_bucket": stores.bucket,
        "mlflow_k8s_s3_endpoint_url": node["s3_endpoint_url"],
        "mlflow_k8s_s3_access_key": facts["s3"]["access_key"],
        "mlflow_k8s_s3_secret_key": facts["s3"]["secret_key"],
        "mlflow_k8s_s3_region": facts["s3"]["region"],
        "mlflow_k8s_kubeconfig": facts["kubernetes"]["kubeconfig"],
    }


def teardown(facts: dict, stores: Stores, problems: list[str]) -> None:
    """Remove the namespace (role state=absent, then the API as a fallback), the database, the user, the bucket."""
    try:
        result = run_role("mlflow_k8s", {**role_vars(facts, stores), "mlflow_k8s_state": "absent",
                                         "mlflow_k8s_delete_namespace": True})  # fmt: skip
        if result.failed:
            problems.append(f"role state=absent failed: {'; '.join(result.failure_messages()) or result.output[-800:]}")
    except Exception as exc:
        problems.append(f"role state=absent: {exc!r}")
    with contextlib.suppress(Exception):
        api_delete_namespace(facts, stores.ns)
    try:
        client = s3_client(facts)
        with contextlib.suppress(client.exceptions.NoSuchBucket):
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=stores.bucket):
                for obj in page.get("Contents", []):
                    client.delete_object(Bucket=stores.bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=stores.bucket)
    except Exception as exc:
        problems.append(f"bucket cleanup: {exc!r}")
    try:
        conn = admin_conn(facts)
        with conn.cursor() as cur:
            cur.execute(f"drop database if exists {stores.db} with (force)")
            cur.execute(f"drop role if exists {stores.user}")
        conn.close()
    except Exception as exc:
        problems.append(f"database cleanup: {exc!r}")


# -- measurement -----------------------------------------------------------------------------------
def find_pods(facts: dict, ns: str) -> list[PodMemory]:
    selector = urllib.parse.quote("app.kubernetes.io/component=tracking-server")
    pods = api_get(facts, f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"]
    found = []
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp") or pod.get("status", {}).get("phase") != "Running":
            continue
        uid = pod["metadata"]["uid"]
        netns = str(pod_cgroup(uid))  # the field's name is historic: it holds the pod's cgroup
        resources = pod["spec"]["containers"][0].get("resources", {})
        found.append(PodMemory(name=pod["metadata"]["name"], uid=uid, netns=netns,
                               limit=quantity_bytes(resources["limits"]["memory"]),
                               request=quantity_bytes(resources["requests"]["memory"])))  # fmt: skip
    return sorted(found, key=lambda p: p.name)


def service_url(facts: dict, ns: str, name: str = "mlflow") -> str:
    return service_base(facts, ns, name)


def create_experiment(url: str, host: str, name: str) -> str:
    request = urllib.request.Request(  # noqa: S310 - loopback sandbox
        url + "/api/2.0/mlflow/experiments/create", data=json.dumps({"name": name}).encode(), method="POST",
        headers={"Host": host, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback sandbox
        return json.loads(response.read())["experiment_id"]


def deployment_summary(facts: dict, ns: str) -> dict:
    deploy = api_get(facts, f"/apis/apps/v1/namespaces/{ns}/deployments/mlflow")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    config = api_get(facts, f"/api/v1/namespaces/{ns}/configmaps")["items"]
    workers = next((c["data"].get("MLFLOW_WORKERS") for c in config if "MLFLOW_WORKERS" in c.get("data", {})), "?")
    return {"replicas": deploy["spec"]["replicas"], "workers": workers, "resources": container["resources"],
            "image": container["image"]}  # fmt: skip


def pod_result(pod: PodMemory) -> dict:
    peak = max(pod.load_rss, default=float("nan"))
    peak_pss = max(pod.load_pss, default=float("nan"))
    limit = pod.limit / MIB
    return {
        "pod": pod.name,
        "processes": pod.procs,
        "limit_mib": round(limit),
        "request_mib": round(pod.request / MIB),
        "idle_rss_mib": round(statistics.median(pod.idle_rss), 1) if pod.idle_rss else None,
        "idle_pss_mib": round(statistics.median(pod.idle_pss), 1) if pod.idle_pss else None,
        "peak_rss_mib": round(peak, 1),
        "peak_pss_mib": round(peak_pss, 1),
        "after_load_rss_mib": round(pod.after_rss[-1], 1) if pod.after_rss else None,
        "headroom_rss": round(1 - peak / limit, 3),
        "headroom_pss": round(1 - peak_pss / limit, 3),
        "cpu_seconds_under_load": round(pod.cpu_seconds, 1),
        "peak_breakdown": [
            {"pid": pid, "command": cmd, "rss_mib": round(rss, 1)}
            for pid, cmd, rss in sorted(pod.peak_breakdown, key=lambda item: -item[2])
        ],
    }


def measure(args: argparse.Namespace, facts: dict, stores: Stores, apiserver: int) -> dict:
    pods = find_pods(facts, stores.ns)
    if not pods:
        raise RuntimeError(f"no running MLflow pod in {stores.ns}")
    url = service_url(facts, stores.ns)
    host = f"mlflow.{stores.ns}.svc.cluster.local:5000"
    experiment = create_experiment(url, host, f"bench-{stores.ns}")
    sampler = Sampler(pods, args.interval)
    sampler.start()
    time.sleep(args.idle)
    cpu_before = {p.name: cpu_seconds(p.netns) for p in pods}
    load_before = os.getloadavg()
    forwarder_before, bench_before = process_cpu_seconds(apiserver), time.process_time()
    sampler.phase = "load"
    stats, elapsed = run_load(args, url, host, experiment)
    sampler.phase = "after"
    load_during = os.getloadavg()
    other_cpu = {
        "api_server_and_service_forwarder_s": round(process_cpu_seconds(apiserver) - forwarder_before, 1),
        "load_generator_and_sampler_s": round(time.process_time() - bench_before, 1),
    }
    for pod in pods:
        pod.cpu_seconds = cpu_seconds(pod.netns) - cpu_before[pod.name]
    time.sleep(args.after)
    sampler.stop_event.set()
    sampler.join(10)

    latencies: dict[str, list[float]] = {}
    errors: Counter = Counter()
    for item in stats:
        for endpoint, values in item.latencies.items():
            latencies.setdefault(endpoint, []).extend(values)
        errors.update(item.errors)
    every = [v for values in latencies.values() for v in values]
    ok = len(every)
    results = [pod_result(p) for p in pods]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_end_of_load": round(load_during[0], 2),
            "cpu_seconds_under_load": other_cpu,
        },
        "deployment": deployment_summary(facts, stores.ns),
        "load": {
            "clients": args.clients,
            "duration_s": round(elapsed, 1),
            "batch_every": args.batch_every,
            "batch_size": args.batch_size,
            "steps_per_run": args.steps_per_run,
            "requests_ok": ok,
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
            "requests_per_s": round((ok + sum(errors.values())) / elapsed, 1),
            "ok_per_s": round(ok / elapsed, 1),
            "runs_created": sum(s.runs for s in stats),
            "metrics_logged": sum(s.metrics for s in stats),
            "latency_all": latency_summary(every),
            "latency": {k: latency_summary(v) for k, v in sorted(latencies.items())},
        },
        "memory": {"figure_for_claim": "RSS", "samples": sampler.samples, "interval_s": args.interval, "pods": results},
        "claim": {
            "headroom_required": CLAIM,
            "min_headroom_rss": min(r["headroom_rss"] for r in results),
            "holds": all(r["headroom_rss"] >= CLAIM for r in results),
        },
    }


# -- report ----------------------------------------------------------------------------------------
def markdown(summary: dict) -> list[str]:
    load, deploy, claim = summary["load"], summary["deployment"], summary["claim"]
    res = deploy["resources"]
    lat = load["latency_all"]
    lines = [
        HEADING,
        "",
        f"Measured {summary['date']} on this machine ({summary['machine']['cpus']} cores, shared with other test runs:"
        f" 1-min load average {summary['machine']['loadavg_1m_before']} before, "
        f"{summary['machine']['loadavg_1m_end_of_load']} at the end of the load; the load generator runs on the same"
        " cores, and the sandbox enforces neither the CPU nor the memory limit).",
        f"Role `carbon254.mlflow.mlflow_k8s` with its default sizing: {deploy['replicas']} replicas,"
        f" {deploy['workers']} uvicorn workers, memory {res['requests']['memory']} request / {res['limits']['memory']}"
        f" limit, CPU {res['requests']['cpu']} / {res['limits']['cpu']}, image `{deploy['image']}`.",
        f"Load: {load['clients']} client threads through the Service for {load['duration_s']:.0f} s, each creating a"
        f" run every {load['steps_per_run']} calls and calling `runs/log-metric`, every {load['batch_every']}th call"
        f" `runs/log-batch` of {load['batch_size']} metrics. Memory: the pod's whole process tree (every process in"
        f" its network namespace) read every {summary['memory']['interval_s']} s; the claim is checked on RSS"
        " (stricter: shared pages counted in every process), PSS beside it.",
        "",
        "| pod | processes | limit, MiB | idle RSS, MiB | peak RSS under load, MiB | headroom (RSS) "
        "| idle PSS, MiB | peak PSS, MiB | headroom (PSS) | RSS after load, MiB | CPU s under load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pod in summary["memory"]["pods"]:
        lines.append(
            f"| {pod['pod']} | {pod['processes']} | {pod['limit_mib']} | {pod['idle_rss_mib']:.0f} "
            f"| {pod['peak_rss_mib']:.0f} | {pod['headroom_rss']:.0%} | {pod['idle_pss_mib']:.0f} "
            f"| {pod['peak_pss_mib']:.0f} | {pod['headroom_pss']:.0%} | {pod['after_load_rss_mib']:.0f} "
            f"| {pod['cpu_seconds_under_load']:.0f} |"
        )
    errors = ", ".join(f"{k}: {v}" for k, v in load["error_kinds"].items()) or "none"
    lines += [
        "",
        "| load | value |",
        "|---|---|",
        f"| requests answered 200 (per s) | {load['requests_ok']} ({load['ok_per_s']}) |",
        f"| errors | {load['errors']} ({errors}) |",
        f"| runs created / metric values logged | {load['runs_created']} / {load['metrics_logged']} |",
        f"| latency p50 / p95 / p99 / max, ms (all calls) | {lat['p50_ms']} / {lat['p95_ms']} / {lat['p99_ms']}"
        f" / {lat['max_ms']} |",
    ]
    for endpoint, values in load["latency"].items():
        lines.append(
            f"| latency p50 / p95 / p99, ms (`{endpoint}`, {values['count']} calls) | {values['p50_ms']} / "
            f"{values['p95_ms']} / {values['p99_ms']} |"
        )
    other = summary["machine"]["cpu_seconds_under_load"]
    lines.append(
        f"| CPU s during the load: API server process (Service forwarder, kubelet) / load generator + sampler "
        f"| {other['api_server_and_service_forwarder_s']} / {other['load_generator_and_sampler_s']} |"
    )
    verdict = "holds" if claim["holds"] else "does NOT hold"
    growth = max(p["peak_rss_mib"] - p["idle_rss_mib"] for p in summary["memory"]["pods"])
    lines += [
        "",
        "Throughput and latencies say more about this shared machine than about MLflow (the pods got the CPU"
        " time in the first table, well under their 1-CPU limit); `runs/create` is mostly every client's first"
        f" call, all at the same moment. Memory grew by at most {growth:.0f} MiB RSS from idle to the peak under load.",
        "",
        f"Verdict: the claim (each pod's RSS under load at least {CLAIM:.0%} below its memory limit) {verdict}:"
        f" smallest headroom {claim['min_headroom_rss']:.0%} (RSS).",
        "",
    ]
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    parser.add_argument("--batch-every", type=int, default=10, help="every Nth call is a log-batch (0: never)")
    parser.add_argument("--batch-size", type=int, default=20, help="metrics per log-batch (default 20)")
    parser.add_argument("--steps-per-run", type=int, default=200, help="calls per run before a new run")
    parser.add_argument("--interval", type=float, default=0.5, help="memory sampling interval, s (default 0.5)")
    parser.add_argument("--idle", type=float, default=10, help="seconds of idle sampling before the load")
    parser.add_argument("--after", type=float, default=5, help="seconds of sampling after the load")
    parser.add_argument("--timeout", type=float, default=30, help="per-request timeout, s")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--from-json", type=Path, help="render (and --write) a saved JSON summary; no deployment")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.from_json:
        return report(json.loads(args.from_json.read_text()), args.write)
    box = Sandbox()  # SANDBOX_* settings; reused when running, else started and stopped again
    up = box.up()
    problems: list[str] = []
    summary: dict | None = None
    try:
        facts = box.facts()
        if "node" not in facts["kubernetes"]:
            raise RuntimeError("the sandbox's Kubernetes node needs root and iproute2: no pods can run here")
        suffix = uuid.uuid4().hex[:8]
        stores = Stores(db=f"bench_load_{suffix}", user=f"bench_load_{suffix}", password=f"pw-{suffix}-Bench",
                        bucket=f"bench-load-{suffix}", ns=f"mlflow-load-{suffix}")  # fmt: skip
        try:
            create_stores(facts, stores)
            started = time.monotonic()
            result = run_role("mlflow_k8s", role_vars(facts, stores))
            if result.failed:
                raise RuntimeError(
                    "role mlflow_k8s failed: " + ("; ".join(result.failure_messages()) or result.output[-3000:])
                )
            deploy_seconds = time.monotonic() - started
            print(f"deployed in {deploy_seconds:.0f} s; measuring", file=sys.stderr)
            summary = measure(args, facts, stores, box.service("kubernetes").pid() or 0)
            summary["deploy_seconds"] = round(deploy_seconds, 1)
        finally:
            teardown(facts, stores, problems)
    finally:
        if up.started:
            box.down()
    if problems:
        print("cleanup problems: " + "; ".join(problems), file=sys.stderr)
    summary["cleanup_problems"] = problems
    return report(summary, args.write)


def report(summary: dict, write: bool) -> int:
    lines = markdown(summary)
    print("\n".join(lines), file=sys.stderr)
    print(json.dumps(summary, indent=2))
    if write:
        update_doc(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
