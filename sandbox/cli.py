"""`python -m sandbox build|up|down|status|facts|kubeconfig|service-url|kubectl`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from . import build, ee, images
from .config import SandboxConfig
from .core import Sandbox
from .procs import SandboxError


def _config(args: argparse.Namespace) -> SandboxConfig:
    overrides = {
        key: value
        for key, value in {
            "state_dir": args.state_dir,
            "pg_port": args.pg_port,
            "s3_port": args.s3_port,
            "k8s_port": args.k8s_port,
            "weed_port_base": args.weed_port_base,
            "nodes": args.nodes,
        }.items()
        if value is not None
    }
    return SandboxConfig(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="carbon254.mlflow's local services on 127.0.0.1: PostgreSQL, S3, a real multi-node Kubernetes.",
    )
    parser.add_argument("--state-dir", type=Path, help="where data, logs and facts live (env SANDBOX_STATE_DIR)")
    parser.add_argument("--pg-port", type=int, help="PostgreSQL port (env SANDBOX_PG_PORT, default 25432)")
    parser.add_argument("--s3-port", type=int, help="S3 port (env SANDBOX_S3_PORT, default 25333)")
    parser.add_argument(
        "--k8s-port", type=int, help="Kubernetes API server port on 127.0.0.1 (env SANDBOX_K8S_PORT, default 25443)"
    )
    parser.add_argument("--weed-port-base", type=int, help="first of SeaweedFS's internal ports (default 25340)")
    parser.add_argument(
        "--nodes", type=int, help="worker nodes beside the control plane (env SANDBOX_NODES; 0: one node runs all)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the Kubernetes binaries and images from sources, once (make setup runs it)")
    sub.add_parser("ee", help="build the execution environment (execution-environment.yml) for this checkout")
    sub.add_parser("up", help="start every service and wait until it answers; idempotent")
    down = sub.add_parser("down", help="stop what `up` started")
    down.add_argument("--purge", action="store_true", help="also delete the state directory (data, credentials)")
    status = sub.add_parser("status", help="what runs and answers; exit 1 unless everything does")
    status.add_argument("--json", action="store_true")
    sub.add_parser("facts", help="print the path of the connection facts file written by `up`")
    sub.add_parser("kubeconfig", help="print the path of the admin kubeconfig (CA and client certificate)")
    service_url = sub.add_parser("service-url", help="print a host URL forwarding to a Service")
    service_url.add_argument("namespace")
    service_url.add_argument("name")
    service_url.add_argument("--port", type=int, help="Service port (default: its first port)")
    service_url.add_argument(
        "--lazy",
        action="store_true",
        help="look the Service up at each connection: the URL works once the Service exists",
    )
    kubectl = sub.add_parser("kubectl", help="the kubectl the sandbox built, with its admin kubeconfig")
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _up(sandbox: Sandbox, _args: argparse.Namespace) -> int:
    result = sandbox.up()
    for name in result.started:
        print(f"started {name}")
    for name in result.already_running:
        print(f"{name} already running")
    for name in result.revived:
        print(f"restarted {name}, which had stopped")
    print(f"facts: {sandbox.config.facts_file}")
    return 0


def _down(sandbox: Sandbox, args: argparse.Namespace) -> int:
    stopped = sandbox.down(purge=args.purge)
    print("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def _status(sandbox: Sandbox, args: argparse.Namespace) -> int:
    report = sandbox.status()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, entry in report.items():
            state = "answering" if entry.get("answering") else ("running" if entry["running"] else "stopped")
            error = f"  {entry['error']}" if "error" in entry else ""
            print(f"{name:10} {state:10} pid={entry['pid']}{error}")
    return 0 if all(entry.get("answering") for entry in report.values()) else 1


def _facts(sandbox: Sandbox, _args: argparse.Namespace) -> int:
    if not sandbox.config.facts_file.exists():
        print(f"{sandbox.config.facts_file} does not exist: run `python -m sandbox up`", file=sys.stderr)
        return 1
    print(sandbox.config.facts_file)
    return 0


def _kubeconfig(sandbox: Sandbox, _args: argparse.Namespace) -> int:
    path = sandbox.config.state_dir / "kubeconfig"
    if not path.exists():
        print(f"{path} does not exist: run `python -m sandbox up`", file=sys.stderr)
        return 1
    print(path)
    return 0


def _service_url(sandbox: Sandbox, args: argparse.Namespace) -> int:
    kube = sandbox.service("kubernetes")
    if not kube.is_running():
        print("the sandbox is not up: run `python -m sandbox up`", file=sys.stderr)
        return 1
    print(kube.service_url(args.namespace, args.name, args.port, lazy=args.lazy))
    return 0


def _kubectl(sandbox: Sandbox, args: argparse.Namespace) -> int:
    kube = sandbox.service("kubernetes")
    argv = [str(build.artifacts().kubectl), "--kubeconfig", str(kube.kubeconfig), *args.args]
    return subprocess.run(argv, check=False).returncode


COMMANDS = {
    "up": _up,
    "down": _down,
    "status": _status,
    "facts": _facts,
    "kubeconfig": _kubeconfig,
    "service-url": _service_url,
    "kubectl": _kubectl,
}


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "build":  # needs no sandbox state: the binaries, then the images that contain some of them
        try:
            images.build_images(build.build(_say), _say)
        except SandboxError as exc:
            print(f"sandbox build: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "ee":
        try:
            return ee.main()
        except SandboxError as exc:
            print(f"sandbox: {exc}", file=sys.stderr)
            return 2
    try:
        return COMMANDS[args.command](Sandbox(_config(args)), args)
    except (SandboxError, ValueError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
