"""TCP forwarding between the host and the sandbox node's network namespace, in both directions.

    python -m sandbox.forward --netns /run/netns/<node> [--into HOST:PORT=NODEADDR:PORT ...]
                              [--out NODEADDR:PORT=HOST:PORT ...] [--port-file FILE] [--marker TEXT]

`--into`: listen on the host (127.0.0.1) and connect inside the node, e.g. the API server, or a Service's ClusterIP
(kube-proxy's rules in the node then pick a ready pod, as for any client in a cluster). A listening port 0 takes a
free one, written to --port-file. A target `service:NAMESPACE/NAME:PORT` is looked up through the API server
(--api-url, --api-ca, --api-cert, --api-key) at each connection: the address exists before the Service does, as a
load balancer's would (a job that creates the Service can then reach it). `--out`: listen inside the node and
connect on the host, e.g. the pods' way to the sandbox's PostgreSQL and S3 on 127.0.0.1.

`ServiceForwards` is the host side's bookkeeping: one such process per Service port, recorded in forwards.json.

Each socket is made in the namespace it belongs to (setns(2) around its creation; the process is single-threaded),
so bytes pass through untouched: TLS and client certificates work end to end. --marker is only there so that the
sandbox recognises its own process by command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import json
import os
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .config import REPO_ROOT
from .procs import SandboxError, cmdline, spawn, terminate, wait_until

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class Namespaces:
    def __init__(self, netns: str) -> None:
        self.host = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.node = os.open(netns, os.O_RDONLY)

    @contextlib.contextmanager
    def inside(self, node: bool) -> Iterator[None]:
        """Sockets made within are the node's (node=True) or the host's."""
        if not node:
            yield
            return
        _setns(self.node)
        try:
            yield
        finally:
            _setns(self.host)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class ServiceTarget:
    """`service:NAMESPACE/NAME:PORT`: the Service's ClusterIP, asked of the API server when a connection comes."""

    def __init__(self, spec: str, args: argparse.Namespace) -> None:
        ref, _, port = spec.removeprefix("service:").rpartition(":")
        self.namespace, _, self.name = ref.partition("/")
        self.port = int(port)
        self.url = args.api_url
        self.context = ssl.create_default_context(cafile=args.api_ca)
        self.context.load_cert_chain(args.api_cert, args.api_key)

    def resolve(self) -> tuple[str, int]:
        path = f"{self.url}/api/v1/namespaces/{self.namespace}/services/{self.name}"
        with urllib.request.urlopen(path, context=self.context, timeout=5) as response:  # noqa: S310 - the sandbox's API
            address = json.loads(response.read())["spec"].get("clusterIP", "")
        if not address or address == "None":
            raise OSError(f"Service {self.namespace}/{self.name} has no ClusterIP")
        return address, self.port


async def _serve(spaces: Namespaces, listen: tuple[str, int], target: tuple[str, int] | ServiceTarget, into: bool,
                 port_file: Path | None) -> asyncio.Server:  # fmt: skip
    with spaces.inside(node=not into):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(listen)
    listener.listen(128)
    listener.setblocking(False)
    if port_file is not None:
        port_file.write_text(f"{listener.getsockname()[1]}\n")
    loop = asyncio.get_running_loop()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        with spaces.inside(node=into):
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        upstream.setblocking(False)
        address = target
        try:
            if isinstance(target, ServiceTarget):
                address = await loop.run_in_executor(None, target.resolve)
            await asyncio.wait_for(loop.sock_connect(upstream, address), timeout=10)
        except (TimeoutError, OSError) as exc:
            stamp = time.strftime("%H:%M:%S", time.gmtime())
            print(f"{stamp} connect {address}: {exc!r}", file=sys.stderr, flush=True)
            upstream.close()
            client_writer.close()
            return
        reader, writer = await asyncio.open_connection(sock=upstream)
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer))

    return await asyncio.start_server(handle, sock=listener)


async def _main(args: argparse.Namespace) -> None:
    spaces = Namespaces(args.netns)
    servers = []
    for spec in args.into:
        listen, _, target = spec.partition("=")
        port_file = Path(args.port_file) if args.port_file else None
        resolved = ServiceTarget(target, args) if target.startswith("service:") else _address(target)
        servers.append(await _serve(spaces, _address(listen), resolved, True, port_file))
    for spec in args.out:
        listen, _, target = spec.partition("=")
        servers.append(await _serve(spaces, _address(listen), _address(target), False, None))
    print(f"forwarding {' '.join(args.into + args.out)}", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


class ServiceForwards:
    """The sandbox's forwards to Services, one process each (this module), recorded in <base>/forwards.json: asking
    again for the same target returns the same port; `stop_all` (at `down`) ends them."""

    def __init__(self, base: Path, log: Path, netns: Path, marker: str, host: str, api: list[str]) -> None:  # noqa: PLR0917
        self.base, self.log, self.netns, self.marker, self.host, self.api = base, log, netns, marker, host, api
        self.file = base / "forwards.json"

    def _known(self) -> dict[str, dict]:
        try:
            return json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}

    def url(self, key: str, target: str) -> str:
        """http://<host>:<port> forwarding to `target` (NODEADDR:PORT or service:NAMESPACE/NAME:PORT)."""
        forwards = self._known()
        known = forwards.get(key)
        if known and self.marker in cmdline(known["pid"]):
            if known.get("target") == target:
                return f"http://{self.host}:{known['port']}"
            # The Service came back with another ClusterIP: end the old forward, which `stop_all` could no longer find.
            with contextlib.suppress(SandboxError, ProcessLookupError):
                terminate(known["pid"], self.marker, timeout=5)
        port_file = self.base / f"forward-{hashlib.sha256(key.encode()).hexdigest()[:8]}.port"
        port_file.unlink(missing_ok=True)
        api = self.api if target.startswith("service:") else []
        argv = [sys.executable, "-m", "sandbox.forward", "--netns", str(self.netns), "--marker", self.marker,
                "--into", f"{self.host}:0={target}", "--port-file", str(port_file), *api]  # fmt: skip
        proc = spawn(argv, self.log, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 10, f"a forward to {key}")
        forwards[key] = {"pid": proc.pid, "port": int(port_file.read_text()), "target": target}
        self.file.write_text(json.dumps(forwards))
        return f"http://{self.host}:{forwards[key]['port']}"

    def stop_all(self) -> None:
        for entry in self._known().values():
            with contextlib.suppress(SandboxError, ProcessLookupError):
                terminate(entry["pid"], self.marker, timeout=5)
        self.file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.forward")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--into", action="append", default=[], help="HOST:PORT=NODEADDR:PORT")
    parser.add_argument("--out", action="append", default=[], help="NODEADDR:PORT=HOST:PORT")
    parser.add_argument("--port-file", help="where to write the (first --into) listening port")
    parser.add_argument("--marker", help="ignored: lets the sandbox recognise this process")
    for name in ("url", "ca", "cert", "key"):
        parser.add_argument(f"--api-{name}", help="the API server and the client identity for service: targets")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
