"""The HTTP face of the API server emulator: discovery, REST verbs, Status errors, a request log.

A request flows: `Handler.do_<METHOD>` → `_serve()` (auth, request log) → `route()` parses the path into
discovery or (resource, namespace, name, subresource) → the verb's method on `Store` → JSON response.
Wire details follow what the official Python client and kubernetes.core 6.x really send and expect
(recorded from them; see sandbox/README.md): plain APIGroupList/APIResourceList discovery, `?dryRun=All`,
`fieldValidation`, `fieldManager`/`force` for apply patches, label/field selectors on lists.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import catalog, selectors
from .store import ApiError, Store, WriteOptions

if TYPE_CHECKING:
    from .kubelet import Kubelet

PATCH_TYPES = {
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class PlainText(str):
    """A response body sent as text/plain (container logs)."""


@dataclass
class Call:
    """One resource request, parsed."""

    method: str
    resource: catalog.Resource
    namespace: str
    name: str
    query: dict
    body: Any
    entry: dict
    opts: WriteOptions


class RequestLog:
    """Every API request: verb, resource, status. Tests and benchmarks read it through /sandbox/requests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[dict] = []

    def add(self, entry: dict) -> None:
        with self.lock:
            self.entries.append(entry)

    def summary(self) -> dict:
        with self.lock:
            entries = list(self.entries)
        counts = Counter(f"{e['verb']} {e['resource']}" for e in entries)
        writes = [e for e in entries if e["method"] in WRITE_METHODS and not e.get("dry_run")]
        return {
            "total": len(entries),
            "writes": len(writes),
            "counts": dict(sorted(counts.items())),
            "entries": entries,
        }

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], store: Store, token: str | None) -> None:
        super().__init__(address, Handler)
        self.store = store
        self.token = token
        self.log = RequestLog()
        self.kubelet: Kubelet | None = None


def _status_ok(details: dict | None = None) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details or {}}


class Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; the request log keeps what matters."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- plumbing ----------------------------------------------------------------------------------
    def _serve(self, method: str) -> None:
        started = time.monotonic()
        parsed = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
        self.warnings: list[str] = []
        entry = {"method": method, "path": parsed.path, "verb": method.lower(), "resource": "", "dry_run": False}
        try:
            body = self._read_body()
            if parsed.path.startswith("/sandbox/"):
                code, payload = self._sandbox(method, parsed.path)
                self._send(code, payload)
                return
            if self.server.token and self.headers.get("Authorization") != f"Bearer {self.server.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            entry["dry_run"] = query.get("dryRun") == "All"
            code, payload = self.route(method, parsed.path.rstrip("/") or "/", query, body, entry)
        except ApiError as exc:
            code, payload = exc.code, exc.status()
        except (ValueError, selectors.SelectorError) as exc:
            code, payload = 400, ApiError(400, "BadRequest", str(exc)).status()
        entry.update(status=code, ms=round((time.monotonic() - started) * 1000, 1), time=time.time())
        self.server.log.add(entry)
        self._send(code, payload)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        try:
            if content_type == "application/apply-patch+yaml":
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"the request body could not be decoded: {exc}") from exc

    def _send(self, code: int, payload: Any) -> None:
        text = isinstance(payload, PlainText)
        data = payload.encode() if text else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", "sandbox")
        for warning in self.warnings:
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            self.send_header("Warning", f'299 - "{escaped}"')  # RFC 7234 warn-text is a quoted-string
        self.end_headers()
        self.wfile.write(data)

    def _sandbox(self, method: str, path: str) -> tuple[int, Any]:
        """Non-Kubernetes endpoints for tests and benchmarks: the request log."""
        if path == "/sandbox/requests" and method == "GET":
            return 200, self.server.log.summary()
        if path == "/sandbox/requests" and method == "DELETE":
            self.server.log.clear()
            return 200, {"cleared": True}
        return 404, ApiError(404, "NotFound", "no such sandbox endpoint").status()

    # -- routing -----------------------------------------------------------------------------------
    def _root_discovery(self, path: str) -> dict | None:
        """/version, /api and /apis, or None for any other path."""
        if path == "/version":
            major, minor, _ = catalog.KUBERNETES_VERSION.split(".")
            return {
                "major": major,
                "minor": minor,
                "gitVersion": f"v{catalog.KUBERNETES_VERSION}",
                "gitCommit": "sandbox",
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.25",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "/api":
            host = self.headers.get("Host", "127.0.0.1")
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
            }
        if path == "/apis":
            return self._group_list()
        return None

    def route(self, method: str, path: str, query: dict, body: Any, entry: dict) -> tuple[int, Any]:
        store = self.server.store
        root = self._root_discovery(path) if method == "GET" else None
        if root is not None:
            return 200, root
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if parts[0] == "api":
            group, version, rest = "", parts[1] if len(parts) > 1 else "", parts[2:]
        elif len(parts) == 2 and method == "GET":
            return 200, self._group(parts[1])
        else:
            group, version, rest = (parts[1], parts[2], parts[3:]) if len(parts) >= 3 else ("", "", [])
        if not version:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest and method == "GET":
            resources = store.resources_in(group, version)
            if not resources:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}".lstrip("/"),
                "resources": [d for r in resources for d in r.discovery()],
            }
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
        resource = store.resource(group, version, plural)
        entry["resource"] = f"{plural}.{group}" if group else plural
        if resource.namespaced and name and not namespace:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub and sub not in resource.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if (resource.plural, sub, method) == ("pods", "log", "GET"):
            entry["verb"] = "get"
            entry["resource"] = "pods/log"
            return 200, self._pod_log(namespace, name, query)
        opts = WriteOptions(
            dry_run=query.get("dryRun") == "All",
            strict_fields=query.get("fieldValidation") == "Strict",
            field_manager=query.get("fieldManager", ""),
            force=query.get("force") == "true",
            subresource=sub,
            propagation=query.get("propagationPolicy") or (body or {}).get("propagationPolicy") or "Background"
            if method == "DELETE"
            else "Background",
        )
        return self._verb(Call(method, resource, namespace, name, query, body, entry, opts))

    def _pod_log(self, namespace: str, name: str, query: dict) -> PlainText:
        """GET pods/<name>/log: the container's output, from the kubelet (404 when the pod is not running here)."""
        pods = self.server.store.resource("", "v1", "pods")
        pod = self.server.store.get(pods, namespace, name)
        kubelet = self.server.kubelet
        path = kubelet.log_path(namespace, name, query.get("container")) if kubelet else None
        if path is None or not path.exists():
            container = query.get("container") or pod["spec"]["containers"][0]["name"]
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start')
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        tail = query.get("tailLines")
        return PlainText("".join(lines[-int(tail) :] if tail else lines))

    def _group_entry(self, group: str, versions: list[str]) -> dict:
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": listed, "preferredVersion": dict(listed[0])}

    def _group_list(self) -> dict:
        groups = [self._group_entry(g, vs) for g, vs in sorted(self.server.store.groups().items()) if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _group(self, group: str) -> dict:
        versions = self.server.store.groups().get(group)
        if not versions:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_entry(group, versions)}

    def _verb(self, call: Call) -> tuple[int, Any]:
        """Dispatch a resource request to the verb it is (the verb is recorded in the request log)."""
        method, named = call.method, bool(call.name)
        handlers = {
            ("GET", True): ("get", self._get),
            ("GET", False): ("watch" if call.query.get("watch") in ("true", "1") else "list", self._list),
            ("POST", False): ("create", self._create),
            ("PUT", True): ("update", self._update),
            ("PATCH", True): ("patch", self._patch),
            ("DELETE", True): ("delete", self._delete),
            ("DELETE", False): ("deletecollection", self._delete_collection),
        }
        if (method, named) not in handlers:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not allowed on this path")
        call.entry["verb"], handler = handlers[(method, named)]
        code, payload, warnings = handler(call)
        self.warnings = warnings if call.query.get("fieldValidation") != "Ignore" else []
        return code, payload

    def _selected(self, call: Call) -> list[dict]:
        labels = selectors.parse_label_selector(call.query.get("labelSelector", ""))
        fields = selectors.parse_field_selector(call.query.get("fieldSelector", ""))
        return self.server.store.list(
            call.resource, call.namespace, lambda o: labels(o["metadata"].get("labels") or {}) and fields(o)
        )

    def _get(self, call: Call) -> tuple[int, Any, list[str]]:
        return 200, self.server.store.get(call.resource, call.namespace, call.name), []

    def _list(self, call: Call) -> tuple[int, Any, list[str]]:
        if call.entry["verb"] == "watch":
            raise ApiError(405, "MethodNotAllowed", "watch is not supported by the sandbox API server")
        body = {
            "kind": call.resource.list_kind,
            "apiVersion": call.resource.group_version,
            "metadata": {"resourceVersion": str(self.server.store.revision)},
            "items": self._selected(call),
        }
        return 200, body, []

    def _create(self, call: Call) -> tuple[int, Any, list[str]]:
        self._require_object(call.body, call.resource)
        result = self.server.store.create(call.resource, call.namespace, call.body, call.opts)
        return 201, result.obj, result.warnings

    def _update(self, call: Call) -> tuple[int, Any, list[str]]:
        self._require_object(call.body, call.resource)
        result = self.server.store.update(call.resource, call.namespace, call.name, call.body, call.opts)
        return 200, result.obj, result.warnings

    def _patch(self, call: Call) -> tuple[int, Any, list[str]]:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(sorted(PATCH_TYPES)),
            )
        store = self.server.store
        result = store.patch(call.resource, call.namespace, call.name, content_type, call.body, call.opts)
        return (201 if result.created else 200), result.obj, result.warnings

    def _delete(self, call: Call) -> tuple[int, Any, list[str]]:
        return 200, self.server.store.delete(call.resource, call.namespace, call.name, call.opts), []

    def _delete_collection(self, call: Call) -> tuple[int, Any, list[str]]:
        doomed = self._selected(call)
        for obj in doomed:
            meta = obj["metadata"]
            self.server.store.delete(call.resource, meta.get("namespace", ""), meta["name"], call.opts)
        body = {
            "kind": call.resource.list_kind,
            "apiVersion": call.resource.group_version,
            "metadata": {},
            "items": doomed,
        }
        return 200, body, []

    @staticmethod
    def _require_object(body: Any, resource: catalog.Resource) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", f"the body of the request is not a {resource.kind} object")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if (kind and kind != resource.kind) or (api_version and api_version != resource.group_version):
            raise ApiError(
                400,
                "BadRequest",
                f'{kind} in version "{api_version}" cannot be handled as a '
                f"{resource.kind}: the object provided is of the wrong kind or version",
            )


def kubeconfig(server_url: str, token: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": "sandbox", "cluster": {"server": server_url}}],
        "users": [{"name": "sandbox-admin", "user": {"token": token}}],
        "contexts": [
            {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox-admin", "namespace": "default"}}
        ],
        "current-context": "sandbox",
    }


def serve(state_dir: Path, host: str, port: int, token: str, node: NodeOptions | None = None) -> None:
    """Run the API server (and, with `node`, the kubelet and controllers) until SIGTERM/SIGINT.

    Objects persist in <state_dir>/objects.json; pods found there at start are started again (a node reboot).
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(snapshot=state_dir / "objects.json")
    server = ApiServer((host, port), store, token)
    manager = network = None
    if node is not None:
        from .controllers import ControllerManager  # noqa: PLC0415 - needs root and iproute2; API-only otherwise
        from .images import ImageTable  # noqa: PLC0415
        from .kubelet import Kubelet  # noqa: PLC0415
        from .runtime import NodeNetwork  # noqa: PLC0415

        network = NodeNetwork(node.network, node.cidr)
        network.up()
        server.kubelet = Kubelet(store, network, state_dir, ImageTable.load(state_dir / "images.json"), node.backoff)
        manager = ControllerManager(store, network, server.kubelet, state_dir, host_forwards=node.forwards)
        manager.start()

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if manager is not None:
            manager.stop()
        if network is not None:
            network.down()


@dataclass
class NodeOptions:
    """The sandbox node: network namespace name and CIDR, host ports forwarded to pods, crash back-off."""

    network: str
    cidr: str = "10.213.0.0/16"
    forwards: list[tuple[int, int]] | None = None
    backoff: float = 10.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.k8s.apiserver")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--node", metavar="NAME", help="also run the kubelet and controllers (namespaces NAME*)")
    parser.add_argument("--pod-cidr", default="10.213.0.0/16")
    parser.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="PORT",
        help="make host 127.0.0.1:PORT reachable from pods at <gateway>:PORT (PostgreSQL, S3)",
    )
    parser.add_argument("--crash-backoff", type=float, default=10.0, help="first CrashLoopBackOff delay, seconds")
    args = parser.parse_args(argv)
    node = None
    if args.node:
        forwards = [(int(p), int(p)) for p in args.forward]
        node = NodeOptions(args.node, args.pod_cidr, forwards, args.crash_backoff)
    serve(args.state_dir, args.host, args.port, args.token_file.read_text().strip(), node)
    return 0


if __name__ == "__main__":
    sys.exit(main())
