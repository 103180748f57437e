"""The AWX double's HTTP API: /api/v2/ on 127.0.0.1, answering as AWX 24.6.1 does for what awx.awx's modules use.

Routes: token login (POST /api/v2/tokens/ with basic auth, then Bearer), list/create/detail/patch/delete of every
resource in resources.RESOURCES, `unified_job_templates`, the sub-lists the modules associate through
(job_templates/N/credentials/, workflow_job_template_nodes/N/{success,failure,always}_nodes/), survey_spec,
launch (job and workflow templates), projects/N/update/, inventory_sources/N/update/, the job endpoints with
job_events/ and stdout/. Headers X-API-Product-Name: AWX and X-API-Product-Version: 24.6.1 on every answer.
Every request is recorded (`requests`).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .resources import JOB_TYPES, RESOURCES, Invalid
from .store import Store
from .tasks import Tasks

VERSION = "24.6.1"
PATH = re.compile(r"^/api/v2/(?P<endpoint>[a-z_]+)/(?:(?P<id>\d+)/(?:(?P<sub>[a-z_]+)/)?)?$")
EDGES = ("success_nodes", "failure_nodes", "always_nodes")


class Api:
    """Request dispatch over the store and the task system."""

    def __init__(self, store: Store, tasks: Tasks, username: str, password: str) -> None:
        self.store, self.tasks = store, tasks
        self.username, self.password = username, password
        self.tokens: dict[int, str] = {}
        self.requests: list[dict[str, Any]] = []

    def authorized(self, header: str) -> bool:
        if header.startswith("Bearer "):
            return header[7:] in self.tokens.values()
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return (user, password) == (self.username, self.password)
        return False

    def handle(self, method: str, raw_path: str, body: Any, auth: str) -> tuple[int, Any]:  # noqa: PLR0911 - a router
        url = urlparse(raw_path)
        path = url.path if url.path.endswith("/") else url.path + "/"
        self.requests.append({"method": method, "path": path, "query": url.query, "body": body})
        if not self.authorized(auth):
            return 401, {"detail": "Authentication credentials were not provided."}
        if path == "/api/v2/tokens/" and method == "POST":
            ident = len(self.tokens) + 1
            self.tokens[ident] = secrets.token_hex(16)
            return 201, {"id": ident, "token": self.tokens[ident], "type": "o_auth2_access_token", "scope": "write"}
        match = PATH.match(path)
        if match is None:
            return 404, {"detail": "Not found."}
        endpoint, ident, sub = match["endpoint"], match["id"], match["sub"]
        if endpoint == "tokens" and method == "DELETE":
            self.tokens.pop(int(ident or 0), None)
            return 204, None
        try:
            with self.store.lock:
                return self._dispatch(method, endpoint, int(ident) if ident else None, sub, body or {},
                                      parse_qs(url.query, keep_blank_values=True))  # fmt: skip
        except Invalid as exc:
            return 400, exc.body
        except PermissionError as exc:
            return 403, {"detail": str(exc)}
        except KeyError:
            return 404, {"detail": "Not found."}

    def _dispatch(  # noqa: PLR0911, PLR0917 - a router
        self, method: str, endpoint: str, ident: int | None, sub: str | None, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        known = endpoint in RESOURCES or endpoint in JOB_TYPES or endpoint == "unified_job_templates"
        if not known:
            return 404, {"detail": "Not found."}
        if ident is None:
            if method == "GET":
                return 200, _page(self.store.query(endpoint, query), query, f"/api/v2/{endpoint}/")
            if method == "POST" and endpoint in RESOURCES:
                record = self.store.create(endpoint, body)
                self._created(record)
                return 201, self.store.render(record)
            return 405, {"detail": f'Method "{method}" not allowed.'}
        record = self.store.get(endpoint, ident)
        if sub is None:
            if method == "GET":
                return 200, self.store.render(record)
            if method in ("PATCH", "PUT") and endpoint in RESOURCES:
                before = dict(record.values)
                self.store.update(record, body)
                if endpoint == "projects" and any(
                    before[k] != record.values[k] for k in ("scm_url", "scm_branch", "scm_type", "scm_refspec")
                ):
                    self.tasks.update_project(record)
                return 200, self.store.render(record)
            if method == "DELETE" and endpoint in RESOURCES:
                self.store.delete(record)
                return 204, None
            return 405, {"detail": f'Method "{method}" not allowed.'}
        return self._sub(method, record, sub, body, query)

    def _created(self, record: Any) -> None:
        if record.endpoint == "projects" and record.values["scm_type"]:
            self.tasks.update_project(record)  # AWX updates a new SCM project at once (Project.save)

    def _sub(  # noqa: PLR0911, PLR0912 - a router
        self, method: str, record: Any, sub: str, body: Any, query: dict[str, list[str]]
    ) -> tuple[int, Any]:
        endpoint = record.endpoint
        base = f"/api/v2/{endpoint}/{record.id}/{sub}/"
        if (sub == "credentials" and endpoint == "job_templates") or sub in EDGES:
            if method == "GET":
                target = "credentials" if sub == "credentials" else "workflow_job_template_nodes"
                items = [self.store.render(self.store.get(target, i)) for i in record.extra.get(sub, [])]
                return 200, _page(items, query, base)
            if method == "POST":
                if "id" not in body:
                    return 400, {"msg": '"id" is required to disassociate'}
                self.store.associate(record, sub, body["id"], bool(body.get("disassociate")))
                return 204, None
        if sub == "survey_spec" and endpoint in ("job_templates", "workflow_job_templates"):
            if method == "GET":
                return 200, self.store.survey_view(record)
            if method in ("POST", "DELETE"):
                self.store.set_survey(record, body if method == "POST" else None)
                return 200, None
        if sub == "launch" and endpoint in ("job_templates", "workflow_job_templates"):
            if method == "GET":
                return 200, self._launch_info(record)
            if endpoint == "job_templates":
                job, ignored = self.tasks.launch(record, body)
                return 201, {"job": job.id, "ignored_fields": ignored, **self.store.render(job)}
            job = self.tasks.launch_workflow(record, body)
            return 201, {"workflow_job": job.id, "ignored_fields": {}, **self.store.render(job)}
        if sub == "update" and endpoint in ("projects", "inventory_sources") and method == "POST":
            if endpoint == "projects":
                if not record.values["scm_type"]:
                    return 405, {"detail": "Method not allowed."}
                job = self.tasks.update_project(record)
                return 202, {"project_update": job.id, **self.store.render(job)}
            job = self.tasks.update_inventory_source(record)
            return 202, {"inventory_update": job.id, **self.store.render(job)}
        if sub == "playbooks" and endpoint == "projects":
            return 200, record.extra.get("playbook_files", [])
        if sub == "job_events" and endpoint == "jobs":
            return 200, _page(record.extra.get("events", []), query, base)
        if sub == "stdout" and endpoint in JOB_TYPES:
            text = record.extra.get("stdout", "")
            return 200, {"content": text} if query.get("format", ["json"])[-1] == "json" else text
        if sub == "workflow_nodes" and endpoint == "workflow_job_templates":
            nodes = self.store.find("workflow_job_template_nodes", workflow_job_template=record.id)
            return 200, _page([self.store.render(n) for n in nodes], query, base)
        return 404, {"detail": "Not found."}

    def _launch_info(self, record: Any) -> dict[str, Any]:
        survey = record.extra.get("survey_spec") or {}
        enabled = record.values["survey_enabled"] and "spec" in survey
        return {
            "can_start_without_user_input": not enabled or not any(q["required"] for q in survey.get("spec", [])),
            "passwords_needed_to_start": [], "survey_enabled": enabled,
            "variables_needed_to_start": [q["variable"] for q in survey.get("spec", []) if q["required"]] if enabled else [],
            "credential_needed_to_start": False, "inventory_needed_to_start": record.values.get("inventory") is None,
            "job_template_data": {"name": record.values["name"], "id": record.id, "description": record.values["description"]},
            **{k: v for k, v in record.values.items() if k.startswith("ask_")},
        }  # fmt: skip


def _page(items: list[Any], query: dict[str, list[str]], base: str) -> dict[str, Any]:
    size = min(int(query.get("page_size", ["25"])[-1]), 200)
    page = int(query.get("page", ["1"])[-1])
    chunk = items[(page - 1) * size : page * size]
    rest = {k: v[-1] for k, v in query.items() if k != "page"}
    tail = "&".join(f"{k}={v}" for k, v in rest.items())
    link = lambda n: f"{base}?{tail + '&' if tail else ''}page={n}"  # noqa: E731
    return {"count": len(items), "next": link(page + 1) if page * size < len(items) else None,
            "previous": link(page - 1) if page > 1 else None, "results": chunk}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    api: Api

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._send(400, {"detail": "JSON parse error"})
            return
        status, answer = self.api.handle(self.command, self.path, body, self.headers.get("Authorization", ""))
        self._send(status, answer)

    def _send(self, status: int, answer: Any) -> None:
        payload = b"" if answer is None else (answer if isinstance(answer, str) else json.dumps(answer)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(answer, str) else "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-API-Product-Name", "AWX")
        self.send_header("X-API-Product-Version", VERSION)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    def log_message(self, *_args: Any) -> None:  # quiet
        return


def serve(api: Api) -> tuple[ThreadingHTTPServer, threading.Thread]:
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="awx-double", daemon=True)
    thread.start()
    return server, thread
