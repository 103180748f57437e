"""Fixtures for the module unit tests: the collection on sys.path, a misbehaving local HTTP server, a module runner."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS = ROOT / ".cache" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "carbon254" / "mlflow"
# The Makefile links this checkout as ansible_collections/carbon254/mlflow (make .cache/collections/...);
# create the link when a fresh checkout runs pytest directly, then import the modules by their FQCN path.
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    LINK.symlink_to(ROOT, target_is_directory=True)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from harness.ansible import MLFLOW_VERSION  # noqa: E402

HOST_CHECK_BODY = b"Invalid Host header - possible DNS rebinding attack detected"  # MLflow 3.17.2's exact text
METRICS_TEXT = """# HELP mlflow_exporter_info Information about the Prometheus Flask exporter
# TYPE mlflow_exporter_info gauge
mlflow_exporter_info{version="0.23.2"} 1.0
# HELP mlflow_http_request_total Total number of HTTP requests
# TYPE mlflow_http_request_total counter
mlflow_http_request_total{method="POST",status="200"} 1.0
# HELP mlflow_otlp_spans_per_request Number of spans in each OTLP export request
# TYPE mlflow_otlp_spans_per_request histogram
mlflow_otlp_spans_per_request_sum 0.0
mlflow_otlp_spans_per_request_bucket{le="+Inf"} 0.0
mlflow_otlp_spans_per_request_count 0.0
"""


class Recorded:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    @property
    def route(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"{self.method} {self.path}"


class FakeMlflow:
    """Enough of MLflow 3.17.2's HTTP behaviour for the modules, with knobs to misbehave.

    Knobs: server_info (what /api/3.0/mlflow/server-info advertises; None: 404), presigned_origin (where presigned
    URLs point), presigned_file_size; statuses[route] = list of statuses to answer first (then the normal answer); slow[route] = seconds to
    wait before answering; allowed_hosts = Host values allowed past the host check (None: all); auth =
    (user, password) required everywhere but /health; version; metrics; corrupt_download; fail[route] = (status,
    body) always (or fail["PUT /path/prefix*"]: that method on every route below the prefix, as HTML); artifact_uri_format; wrong_metric; s3_objects (key -> size) for HEAD /<bucket>/<key>.
    """

    def __init__(self):
        self.requests: list[Recorded] = []
        self.statuses: dict[str, list[int]] = {}
        self.slow: dict[str, float] = {}
        self.fail: dict[str, tuple[int, bytes]] = {}
        self.allowed_hosts: set[str] | None = None
        self.auth: tuple[str, str] | None = None
        self.version = MLFLOW_VERSION
        self.metrics = METRICS_TEXT
        self.corrupt_download = False
        self.wrong_metric = False
        self.artifact_uri_format = "mlflow-artifacts:/{exp}/{run}/artifacts"
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.artifacts: dict[str, bytes] = {}
        self.s3_bucket = "bucket"
        self.s3_objects: dict[str, int] = {}
        # /api/3.0/mlflow/server-info (None: 404, as before MLflow 3); presigned URLs point at presigned_origin
        # (set to the server's own URL by Server; a closed port makes them unreachable, as from outside a cluster).
        self.server_info: dict | None = {"multipart_downloads_enabled": False, "multipart_uploads_enabled": False}
        self.presigned_origin = ""
        self.presigned_file_size = True
        self.presigned_signature = "fake-sig"  # what the URLs carry; the "S3" side accepts only "fake-sig"
        self.uploads: dict[str, dict] = {}
        self.lock = threading.Lock()

    def routes(self, method: str | None = None) -> list[str]:
        return [r.route for r in self.requests if method is None or r.method == method]

    def handle(self, method, path, headers, body):  # noqa: PLR0911, PLR0912 - a dispatcher
        parts = urllib.parse.urlsplit(path)
        route, query = parts.path, dict(urllib.parse.parse_qsl(parts.query))
        if route in self.slow:
            time.sleep(self.slow[route])
        with self.lock:
            pending = self.statuses.get(route)
            if pending:
                return pending.pop(0), "text/plain", b"Internal Server Error"
        if route in self.fail:
            status, payload = self.fail[route]
            return status, "application/json", payload
        for pattern, (status, payload) in self.fail.items():  # "PUT /prefix*": one method, a path prefix
            verb, _, prefix = pattern.partition(" ")
            if prefix.endswith("*") and verb == method and route.startswith(prefix[:-1]):
                return status, "text/html; charset=utf-8", payload
        if route.startswith("/presigned-s3/"):  # the "S3" side of presigned URLs: no MLflow auth, a signature
            return self.presigned_s3(method, route[len("/presigned-s3/") :], query, headers, body)
        if route.startswith(f"/{self.s3_bucket}/") or route == f"/{self.s3_bucket}":
            key = route[len(self.s3_bucket) + 2 :]
            if key == "" or key in self.s3_objects:
                return 200, "application/octet-stream", b"", {"Content-Length": str(self.s3_objects.get(key, 0))}
            return 404, "application/xml", b""
        if route in ("/health", "/version"):  # MLflow answers these for any Host (research notes, section 3)
            return (200, "text/plain", b"OK") if route == "/health" else (200, "text/html", self.version.encode())
        if self.allowed_hosts is not None and headers.get("Host") not in self.allowed_hosts:
            return 403, "text/plain", HOST_CHECK_BODY
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            if headers.get("Authorization") != expected:
                return 401, "text/plain", b"You are not authenticated."
        if route == "/metrics":
            return 200, "text/plain; version=0.0.4", self.metrics.encode()
        if route.startswith("/api/2.0/mlflow-artifacts/artifacts/"):
            return self.artifact(method, route[len("/api/2.0/mlflow-artifacts/artifacts/") :], body)
        if route == "/api/3.0/mlflow/server-info":
            if self.server_info is None:
                return 404, "text/html", b"<h1>Not Found</h1>"
            return 200, "application/json", json.dumps(self.server_info).encode()
        if route.startswith("/api/2.0/mlflow-artifacts/presigned/"):
            rel = urllib.parse.unquote(route[len("/api/2.0/mlflow-artifacts/presigned/") :])
            if rel not in self.artifacts:
                return 404, "application/json", b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}'
            answer = {
                "url": f"{self.presigned_origin}/presigned-s3/get/{rel}?X-Amz-Signature={self.presigned_signature}",
                "headers": {},
            }
            if self.presigned_file_size:
                answer["file_size"] = len(self.artifacts[rel])
            return 200, "application/json", json.dumps(answer).encode()
        if route.startswith("/api/2.0/mlflow-artifacts/mpu/"):
            verb, _, root = route[len("/api/2.0/mlflow-artifacts/mpu/") :].partition("/")
            return self.mpu(verb, urllib.parse.unquote(root), json.loads(body))
        if route.startswith("/api/2.0/mlflow/"):
            data = json.loads(body) if body else {}
            return self.api(method, route[len("/api/2.0/mlflow/") :], data, query)
        return 404, "text/plain", b"Not Found"

    def artifact(self, method, rel, body):
        rel = urllib.parse.unquote(rel)
        if method == "PUT":
            self.artifacts[rel] = body
            return 200, "application/octet-stream", b""  # MLflow answers the PUT with an empty body
        if method == "GET":
            if rel not in self.artifacts:
                return 404, "application/json", b'{"error_code": "RESOURCE_DOES_NOT_EXIST"}'
            data = self.artifacts[rel]
            return 200, "application/octet-stream", (data[::-1] + b"x") if self.corrupt_download else data
        if method == "DELETE":
            self.artifacts.pop(rel, None)
            return 200, "application/json", b"{}"
        return 405, "text/plain", b""

    def mpu(self, verb, root, data):
        rel = f"{root}/{data['path']}" if root else data["path"]
        if verb == "create":
            upload_id = f"up{len(self.uploads) + 1}"
            self.uploads[upload_id] = {"rel": rel, "parts": {}, "state": "open"}
            url = f"{self.presigned_origin}/presigned-s3/put/{upload_id}/1?X-Amz-Signature={self.presigned_signature}"
            credentials = [{"url": url, "part_number": 1, "headers": {}}]
            return 200, "application/json", json.dumps({"upload_id": upload_id, "credentials": credentials}).encode()
        upload = self.uploads[data["upload_id"]]
        if verb == "complete":
            etags = [part["etag"] for part in data["parts"]]
            assert etags == [f'"etag-{data["upload_id"]}-1"'], etags  # what S3 answered the part's PUT with
            self.artifacts[upload["rel"]] = b"".join(upload["parts"][n] for n in sorted(upload["parts"]))
        upload["state"] = verb
        return 200, "application/json", b"{}"

    def presigned_s3(self, method, rest, query, headers, body):
        if query.get("X-Amz-Signature") != "fake-sig":
            return 403, "application/xml", b"<Error><Code>SignatureDoesNotMatch</Code></Error>"
        kind, _, rest = rest.partition("/")
        if kind == "get" and method == "GET":
            data = self.artifacts.get(urllib.parse.unquote(rest))
            if data is None:
                return 404, "application/xml", b"<Error><Code>NoSuchKey</Code></Error>"
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", headers.get("Range") or "")
            if match:
                return 206, "application/octet-stream", data[int(match.group(1)) : int(match.group(2)) + 1]
            return 200, "application/octet-stream", data
        if kind == "put" and method == "PUT":
            upload_id, _, part = rest.partition("/")
            self.uploads[upload_id]["parts"][int(part)] = body
            return 200, "application/xml", b"", {"ETag": f'"etag-{upload_id}-{part}"'}
        return 405, "text/plain", b""

    def api(self, method, endpoint, data, query):  # noqa: PLR0911 - a dispatcher
        def ok(payload):
            return 200, "application/json", json.dumps(payload).encode()

        if endpoint == "experiments/search":
            return ok({"experiments": [{"experiment_id": "0", "name": "Default"}]})
        if endpoint == "experiments/create":
            exp = str(len(self.experiments) + 1)
            self.experiments[exp] = {"name": data["name"], "lifecycle_stage": "active"}
            return ok({"experiment_id": exp})
        if endpoint == "runs/create":
            run = f"run{len(self.runs) + 1:030d}"
            uri = self.artifact_uri_format.format(exp=data["experiment_id"], run=run)
            self.runs[run] = {"params": [], "metrics": [], "lifecycle_stage": "active", "artifact_uri": uri}
            info = {"run_id": run, "experiment_id": data["experiment_id"], "artifact_uri": uri, "status": "RUNNING"}
            return ok({"run": {"info": info, "data": {}}})
        if endpoint == "runs/log-batch":
            run = self.runs[data["run_id"]]
            run["params"] += data.get("params", [])
            run["metrics"] += [{**m, "value": m["value"] + (1 if self.wrong_metric else 0)} for m in data["metrics"]]
            return ok({})
        if endpoint == "runs/get":
            run = self.runs[query["run_id"]]
            return ok(
                {"run": {"info": {"run_id": query["run_id"]}, "data": {k: run[k] for k in ("params", "metrics")}}}
            )
        if endpoint == "runs/delete":
            self.runs[data["run_id"]]["lifecycle_stage"] = "deleted"
            return ok({})
        if endpoint == "experiments/delete":
            self.experiments[data["experiment_id"]]["lifecycle_stage"] = "deleted"
            return ok({})
        return 404, "application/json", b'{"error_code": "ENDPOINT_NOT_FOUND"}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # the base class's signature
        pass

    def _any(self):
        app: FakeMlflow = self.server.app  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        app.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body))
        answer = app.handle(self.command, self.path, self.headers, body)
        status, ctype, payload = answer[:3]
        extra = answer[3] if len(answer) > 3 else {}
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if "Content-Length" not in extra:
                self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


class Server:
    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.app = FakeMlflow()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = self.app  # type: ignore[attr-defined]
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if tls_context else 'http'}://127.0.0.1:{self.port}"
        self.app.presigned_origin = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def tls_server(tmp_path):
    """A server whose certificate comes from a throwaway CA (trustme); yields (server, path of the CA PEM)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    srv = Server(tls_context=context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield srv, str(ca_file)
    srv.close()


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: bound and closed again (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture
def run_module(capsys):
    """Run a module's main() with args as Ansible would; return its JSON result (failed or not)."""

    def runner(module, args: dict, check_mode: bool = False) -> dict:
        if check_mode:
            args = {**args, "_ansible_check_mode": True}
        with patch_module_args(args), pytest.raises(SystemExit):
            module.main()
        out = capsys.readouterr().out
        return json.loads(out[out.index("{") :])

    return runner
