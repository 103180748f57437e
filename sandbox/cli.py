"""`python -m sandbox build|up|down|status|facts|kubeconfig|service-url|kubectl|crds`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from . import build, crds
from .config import SandboxConfig
from .core import Sandbox
from .kubecluster import KubeCluster
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
        }.items()
        if value is not None
    }
    return SandboxConfig(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local test services for carbon254.mlflow (PostgreSQL, S3) on 127.0.0.1: a test double.",
    )
    parser.add_argument("--state-dir", type=Path, help="where data, logs and facts live (env SANDBOX_STATE_DIR)")
    parser.add_argument("--pg-port", type=int, help="PostgreSQL port (env SANDBOX_PG_PORT, default 55432)")
    parser.add_argument("--s3-port", type=int, help="S3 port (env SANDBOX_S3_PORT, default 58333)")
    parser.add_argument(
        "--k8s-port", type=int, help="Kubernetes API emulator port (env SANDBOX_K8S_PORT, default 58443)"
    )
    parser.add_argument("--weed-port-base", type=int, help="first of SeaweedFS's internal ports (default 58340)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the Kubernetes binaries and images from sources, once (make setup runs it)")
    sub.add_parser("up", help="start every service and wait until it answers; idempotent")
    down = sub.add_parser("down", help="stop what `up` started")
    down.add_argument("--purge", action="store_true", help="also delete the state directory (data, credentials)")
    status = sub.add_parser("status", help="what runs and answers; exit 1 unless everything does")
    status.add_argument("--json", action="store_true")
    sub.add_parser("facts", help="print the path of the connection facts file written by `up`")
    sub.add_parser("kubeconfig", help="print the path of the kubeconfig for the Kubernetes API emulator")
    service_url = sub.add_parser("service-url", help="print the host URL forwarding to a Service's ready pods")
    service_url.add_argument("namespace")
    service_url.add_argument("name")
    service_url.add_argument("--port", type=int, help="Service port (default: its first port)")
    kubectl = sub.add_parser("kubectl", help="the kubectl the sandbox built, with its admin kubeconfig")
    kubectl.add_argument("args", nargs=argparse.REMAINDER)
    crd = sub.add_parser("crds", help="install or remove a bundle of CustomResourceDefinitions in the running emulator")
    crd_sub = crd.add_subparsers(dest="crds_command", required=True)
    crd_sub.add_parser("list", help="the bundles and whether each CRD is installed")
    for verb, text in (("install", "create or update the bundle's CRDs; idempotent"), ("remove", "delete them")):
        action = crd_sub.add_parser(verb, help=text)
        action.add_argument("bundle", choices=crds.bundles())
        action.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for discovery (default 30)")
    return parser


def _up(sandbox: Sandbox, _args: argparse.Namespace) -> int:
    result = sandbox.up()
    for name in result.started:
        print(f"started {name}")
    for name in result.already_running:
        print(f"{name} already running")
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
    if isinstance(kube, KubeCluster):
        if not kube.is_running():
            print("the sandbox is not up: run `python -m sandbox up`", file=sys.stderr)
            return 1
        print(kube.service_url(args.namespace, args.name, args.port))
        return 0
    registry = sandbox.config.state_dir / "kubernetes" / "services.json"
    ports = json.loads(registry.read_text()).get(f"{args.namespace}/{args.name}", {}) if registry.exists() else {}
    if not ports:
        print(f"no Service {args.namespace}/{args.name} is forwarded (is the sandbox up?)", file=sys.stderr)
        return 1
    port = str(args.port) if args.port else sorted(ports, key=int)[0]
    if port not in ports:
        print(f"Service {args.namespace}/{args.name} has no port {port}; ports: {', '.join(ports)}", file=sys.stderr)
        return 1
    print(f"http://{ports[port]}")
    return 0


def _kubectl(sandbox: Sandbox, args: argparse.Namespace) -> int:
    kube = sandbox.service("kubernetes")
    if not isinstance(kube, KubeCluster):
        print("`sandbox kubectl` needs the real cluster (SANDBOX_KUBERNETES=cluster)", file=sys.stderr)
        return 2
    argv = [str(build.artifacts().kubectl), "--kubeconfig", str(kube.kubeconfig), *args.args]
    return subprocess.run(argv, check=False).returncode


def _crds(sandbox: Sandbox, args: argparse.Namespace) -> int:
    if not sandbox.config.facts_file.exists():
        print(f"{sandbox.config.facts_file} does not exist: run `python -m sandbox up`", file=sys.stderr)
        return 1
    facts = json.loads(sandbox.config.facts_file.read_text())
    if args.crds_command == "list":
        for bundle, states in crds.status(facts).items():
            for name, state in states.items():
                print(f"{bundle:20} {name:45} {state}")
        return 0
    run = crds.install if args.crds_command == "install" else crds.remove
    for name, outcome in run(facts, args.bundle, timeout=args.timeout).items():
        print(f"customresourcedefinition.apiextensions.k8s.io/{name} {outcome}")
    return 0


COMMANDS = {
    "up": _up,
    "down": _down,
    "status": _status,
    "facts": _facts,
    "kubeconfig": _kubeconfig,
    "service-url": _service_url,
    "kubectl": _kubectl,
    "crds": _crds,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "build":  # needs no sandbox state
        from .build import main as build_main  # noqa: PLC0415 - only this command needs it

        return build_main()
    try:
        return COMMANDS[args.command](Sandbox(_config(args)), args)
    except (SandboxError, ValueError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
