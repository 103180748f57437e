"""Faults injected for real into the sandbox's services: a store stopped, then started again; the Kubernetes API
answering with errors or slowly (through a front on loopback)."""

from __future__ import annotations

import http.client
import http.server
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox import Sandbox, SandboxConfig


@contextmanager
def stopped(facts: dict, name: str) -> Iterator[None]:
    """The sandbox's `name` service (postgres, s3) stopped; started again (`up`, data kept) whatever happens inside."""
    sandbox = Sandbox(SandboxConfig(state_dir=Path(facts["state_dir"])))
    assert sandbox.service(name).stop(), f"the sandbox's {name} was not running"
    try:
        yield
    finally:
        sandbox.up()


class ApiFront:
    """A front for the sandbox's Kubernetes API server on loopback, as a load balancer before it would be, that
    can answer with errors or slowly: what clients meet while an API server restarts, is replaced or sheds load.

    It terminates TLS with the API server's own certificate (valid for 127.0.0.1) and passes each request on with
    the admin's client certificate, so clients of `kubeconfig` are the admin as far as the audit log can tell.
    Faults: `fail_every(n, status)` answers every n-th request with `status` and a Kubernetes Status body (n=1: all);
    `slow(seconds)` delays every answer. Counts: `requests`, `injected` (method, path, status)."""

    def __init__(self, facts: dict, kubeconfig: Path) -> None:
        kube = facts["kubernetes"]
        pki = Path(kube["ca_file"]).parent
        self.upstream = urllib.parse.urlsplit(kube["url"])
        self.kubeconfig = kubeconfig
        self.requests = 0
        self.injected: list[tuple[str, str, int]] = []
        self._every, self._status, self._delay = 0, 503, 0.0
        self._lock = threading.Lock()
        self._client_tls = ssl.create_default_context(cafile=kube["ca_file"])
        self._client_tls.load_cert_chain(kube["client_cert"], kube["client_key"])
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(str(pki / "apiserver.crt"), str(pki / "apiserver.key"))
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = front._fault(self.command, self.path)
                if front._delay:
                    time.sleep(front._delay)
                if status:
                    reason = http.HTTPStatus(status).phrase.replace(" ", "")
                    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                            "message": "injected by the test's API front", "reason": reason}  # fmt: skip
                    self._answer(
                        status, {"Content-Type": "application/json", "Retry-After": "1"}, json.dumps(body).encode()
                    )
                    return
                conn = http.client.HTTPSConnection(front.upstream.hostname, front.upstream.port,
                                                   context=front._client_tls, timeout=60)  # fmt: skip
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    passed = {k: v for k, v in answer.getheaders()
                              if k.lower() not in ("transfer-encoding", "connection", "content-length")}  # fmt: skip
                    self._answer(answer.status, passed, data)
                finally:
                    conn.close()

            def _answer(self, status: int, headers: dict, data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):  # TLS per connection, handshake in the handler's thread
                sock, address = self.socket.accept()
                return server_tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        original = Path(kube["kubeconfig"]).read_text()
        kubeconfig.write_text(original.replace(kube["url"], self.url))
        kubeconfig.chmod(0o600)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _fault(self, method: str, path: str) -> int:
        with self._lock:
            self.requests += 1
            if self._every and self.requests % self._every == 0:
                self.injected.append((method, path, self._status))
                return self._status
            return 0

    def fail_every(self, n: int, status: int = 503) -> None:
        with self._lock:
            self._every, self._status = n, status

    def slow(self, seconds: float) -> None:
        self._delay = seconds

    def clear(self) -> None:
        self.fail_every(0)
        self.slow(0)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def api_front(facts: dict, kubeconfig: Path) -> Iterator[ApiFront]:
    front = ApiFront(facts, kubeconfig)
    try:
        yield front
    finally:
        front.close()
