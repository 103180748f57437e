"""An AWX 24.6.1 double: its REST API for the awx.awx modules, and its jobs run for real (see README.md)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .resources import Record
from .server import Api, serve
from .store import Store
from .tasks import FINISHED, Tasks


class AwxDouble:
    """`with AwxDouble(workdir) as awx:` an AWX API on 127.0.0.1 whose jobs run in the execution environment.

    `mode(template) -> 'execution_node' | 'container_group'` says where a job template's jobs run (AWX's instance
    group): on an execution node (ansible-runner worker on the host, podman process isolation) or in a container
    group (ansible-runner worker inside the execution environment, as AWX's default pod runs it)."""

    def __init__(self, workdir: Path, mode: Callable[[Record], str] | None = None) -> None:
        self.workdir = workdir
        self.username, self.password = "admin", secrets.token_urlsafe(12)
        self.store = Store()
        self.tasks = Tasks(self.store, workdir, mode or (lambda _template: "execution_node"))
        self.api = Api(self.store, self.tasks, self.username, self.password)
        self.url = ""

    def __enter__(self) -> AwxDouble:
        self.server, self._thread = serve(self.api)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def controller_env(self) -> dict[str, str]:
        """The environment awx.awx's modules (and awxkit) read: CONTROLLER_HOST, CONTROLLER_USERNAME, ..."""
        return {"CONTROLLER_HOST": self.url, "CONTROLLER_USERNAME": self.username,
                "CONTROLLER_PASSWORD": self.password, "CONTROLLER_VERIFY_SSL": "false"}  # fmt: skip

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One API call as an authenticated user (what the UI or a REST client sends)."""
        import base64  # noqa: PLC0415

        auth = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return self.api.handle(method, path, body, auth)

    def one(self, endpoint: str, **values: Any) -> Record:
        [record] = self.store.find(endpoint, **values)
        return record

    def wait(self, endpoint: str, ident: int, timeout: float) -> Record:
        record = self.store.get(endpoint, ident)
        deadline = time.monotonic() + timeout
        while record.values["status"] not in FINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{endpoint}/{ident} is still {record.values['status']} after {timeout} s")
            time.sleep(0.5)
        return record
