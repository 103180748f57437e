"""A local double of the Cloudflare v4 API for the endpoints the cloudflare_dns role uses.

Two listeners, both on 127.0.0.1 only:

* the API, over HTTPS with a certificate for ``api.cloudflare.com`` signed by a throw-away CA (``trustme``);
* an HTTP proxy that accepts ``CONNECT api.cloudflare.com:443`` and tunnels it to the API, so a client whose
  base URL is hard-coded (community.general.cloudflare_dns) reaches the double unmodified through
  ``https_proxy`` + ``SSL_CERT_FILE``. Plain ``GET``/``POST`` on the proxy port under ``/__double__/`` is the
  control interface (request log, state, fault injection, token revocation).

Every request body the double accepts and every response body it sends is checked against the typed models of
the official ``cloudflare`` SDK (``schema.problems``); a mismatch is answered with HTTP 400 (requests) and always
recorded in ``validation_errors`` so tests can assert there were none.

Endpoints (paths relative to ``/client/v4``; shapes from https://developers.cloudflare.com/api/):

* ``GET /user/tokens/verify`` and ``GET /user`` (global API key)
* ``GET /zones?name=``
* ``GET|POST /zones/{zone_id}/dns_records``, ``PUT|DELETE /zones/{zone_id}/dns_records/{id}``
* ``GET|PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations``
* ``GET|POST /accounts/{account_id}/access/apps``, ``GET|PUT|DELETE .../access/apps/{id}``
* ``GET|POST /accounts/{account_id}/access/policies``, ``GET|PUT|DELETE .../access/policies/{id}``
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import select
import socket
import ssl
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme
from cloudflare.types.dns import record_create_params, record_response, record_update_params
from cloudflare.types.user import token_verify_response, user_get_response
from cloudflare.types.zero_trust.access import (
    application_create_params,
    application_get_response,
    application_update_params,
    policy_create_params,
    policy_get_response,
    policy_update_params,
)
from cloudflare.types.zero_trust.tunnels.cloudflared import configuration_get_response, configuration_update_params
from cloudflare.types.zones import zone as zone_model

from .schema import problems

API_HOST = "api.cloudflare.com"
PREFIX = "/client/v4"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# The SDK marks ingress[].hostname as required, but the API *requires* the last rule to be a catch-all without
# hostname ("The last ingress rule must match all URLs", cloudflare/terraform-provider-cloudflare#2327; the
# SDK gap is noted in alchemy-run/distilled#227). The double accepts exactly that one exception.
CATCH_ALL_KEYS = {"service", "originRequest"}

DEFAULT_TOKEN = "cf-double-token-0123456789abcdef"
DEFAULT_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_ZONE_ID = "fedcba9876543210fedcba9876543210"
DEFAULT_TUNNEL_ID = "c1a2b3c4-d5e6-4f70-8a9b-0c1d2e3f4a5b"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Fault:
    """Answer the next `times` requests matching `method` and `path` (a regex on the API path) with `status`."""

    status: int
    path: str = ".*"
    method: str | None = None
    times: int = 1
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and (self.method in (None, method)) and re.search(self.path, path) is not None


@dataclass
class State:
    """Everything the double holds; tests may read and change it directly (under `lock`)."""

    tokens: dict[str, dict] = field(default_factory=dict)
    global_keys: dict[str, str] = field(default_factory=dict)  # email -> key
    zones: list[dict] = field(default_factory=list)
    dns_records: dict[str, list[dict]] = field(default_factory=dict)
    tunnels: dict[str, dict] = field(default_factory=dict)
    access_apps: dict[str, dict] = field(default_factory=dict)
    access_policies: dict[str, dict] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    validation_errors: list[str] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def snapshot(self) -> dict:
        with self.lock:
            return copy.deepcopy(
                {
                    "zones": self.zones,
                    "dns_records": self.dns_records,
                    "tunnels": self.tunnels,
                    "access_apps": self.access_apps,
                    "access_policies": self.access_policies,
                    "validation_errors": self.validation_errors,
                }
            )

    def writes(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["method"] in WRITE_METHODS]


def default_state(token: str = DEFAULT_TOKEN) -> State:
    """An account with zone 254carbon.com, one unrelated DNS record and a remotely managed tunnel that already
    routes another hostname (so tests can prove the role leaves other rules alone)."""
    state = State()
    state.tokens[token] = {"id": new_id(), "status": "active"}
    stamp = now()
    state.zones.append(
        {
            "id": DEFAULT_ZONE_ID,
            "account": {"id": DEFAULT_ACCOUNT_ID, "name": "254carbon"},
            "created_on": stamp,
            "modified_on": stamp,
            "activated_on": stamp,
            "development_mode": 0,
            "meta": {"cdn_only": False, "dns_only": False, "page_rule_quota": 3, "phishing_detected": False},
            "name": "254carbon.com",
            "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
            "original_dnshost": None,
            "original_name_servers": None,
            "original_registrar": None,
            "owner": {"id": None, "name": None, "type": "organization"},
            "plan": {"id": new_id(), "name": "Free Website", "price": 0, "currency": "USD", "is_subscribed": True},
            "paused": False,
            "permissions": ["#dns_records:edit", "#dns_records:read", "#zone:read"],
            "status": "active",
            "type": "full",
        }
    )
    state.dns_records[DEFAULT_ZONE_ID] = [
        dns_record(DEFAULT_ZONE_ID, {"type": "CNAME", "name": "grafana.254carbon.com", "proxied": True, "ttl": 1,
                                     "content": f"{DEFAULT_TUNNEL_ID}.cfargotunnel.com", "comment": "not ours"})
    ]  # fmt: skip
    state.tunnels[DEFAULT_TUNNEL_ID] = {
        "account_id": DEFAULT_ACCOUNT_ID,
        "source": "cloudflare",
        "version": 1,
        "created_at": stamp,
        "config": {
            "ingress": [
                {"hostname": "grafana.254carbon.com", "service": "http://grafana.monitoring.svc.cluster.local:3000",
                 "originRequest": {"connectTimeout": 10}},
                {"service": "http_status:404"},
            ],
            "originRequest": {},
        },
    }  # fmt: skip
    return state


def dns_record(zone_id: str, body: dict, existing: dict | None = None) -> dict:
    stamp = now()
    proxied = bool(body.get("proxied", False))
    record = {
        "id": existing["id"] if existing else new_id(),
        "name": body["name"].lower(),
        "type": body["type"],
        "content": body.get("content", ""),
        "proxiable": True,
        "proxied": proxied,
        # Proxied records always have automatic TTL: Cloudflare stores 1 whatever was sent.
        "ttl": 1 if proxied else body.get("ttl", 1),
        "settings": {},
        "meta": {},
        "comment": body.get("comment"),
        "tags": list(body.get("tags") or []),
        "created_on": existing["created_on"] if existing else stamp,
        "modified_on": stamp,
    }
    if record["comment"]:
        record["comment_modified_on"] = stamp
    return record


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def envelope(result: Any, result_info: dict | None = None) -> dict:
    body = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


def error_body(code: int, message: str) -> dict:
    return {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}


def paginate(items: list, query: dict, default_per_page: int) -> tuple[list, dict]:
    page = max(1, int(query.get("page", 1)))
    per_page = max(1, min(int(query.get("per_page", default_per_page)), 1000))
    total = len(items)
    pages = max(1, -(-total // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    return chunk, {"page": page, "per_page": per_page, "count": len(chunk), "total_count": total, "total_pages": pages}


class Api:
    """The request handling, independent of HTTP plumbing (so unit tests can call `handle` directly)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.headers: dict[str, str] = {}

    # -- plumbing ---------------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict, dict]:
        """Returns (status, body, extra headers); records the request."""
        parts = urlsplit(target)
        path = parts.path[len(PREFIX) :] if parts.path.startswith(PREFIX) else parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        entry = {"method": method, "path": path, "query": query, "status": None, "body": None}
        extra: dict[str, str] = {}
        with self.state.lock:
            self.state.requests.append(entry)
            try:
                body = json.loads(raw) if raw else None
                entry["body"] = body
            except ValueError:
                body = None
            fault = next((f for f in self.state.faults if f.matches(method, path)), None)
            if fault is not None:
                fault.times -= 1
                if fault.retry_after is not None:
                    extra["Retry-After"] = str(fault.retry_after)
                message = "Rate limited" if fault.status == 429 else "Internal server error (injected)"
                entry["status"] = fault.status
                return fault.status, error_body(10000 if fault.status >= 500 else 971, message), extra
            self.headers = headers
            try:
                if not parts.path.startswith(PREFIX):
                    raise ApiError(404, 7000, "No route for that URI")
                self.authenticate(path, headers)
                status, result = self.route(method, path, query, body)
            except ApiError as exc:
                entry["status"] = exc.status
                return exc.status, error_body(exc.code, exc.message), extra
            entry["status"] = status
            return status, result, extra

    def check(self, label: str, tp: Any, value: Any) -> list[str]:
        found = problems(tp, value)
        if found:
            self.state.validation_errors.extend(f"{label}: {p}" for p in found)
        return found

    def check_request(self, label: str, tp: Any, body: Any, path_params: dict) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, 9207, "Request body is invalid.")
        found = self.check(f"request {label}", tp, {**body, **path_params})
        if found:
            raise ApiError(400, 9207, f"Request body is invalid: {'; '.join(found)}")

    def check_response(self, label: str, tp: Any, value: Any) -> None:
        self.check(f"response {label}", tp, value)

    def authenticate(self, path: str, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            token = self.state.tokens.get(auth[len("Bearer ") :])
            if token is None:
                if path == "/user/tokens/verify":
                    raise ApiError(401, 1000, "Invalid API Token")
                raise ApiError(403, 9109, "Invalid access token")
            if token["status"] != "active" and path != "/user/tokens/verify":
                raise ApiError(403, 9109, "Invalid access token")
            return
        email, key = headers.get("x-auth-email"), headers.get("x-auth-key")
        if email and key:
            if self.state.global_keys.get(email) != key:
                raise ApiError(403, 9103, "Unknown X-Auth-Key or X-Auth-Email")
            return
        raise ApiError(400, 6003, "Invalid request headers")

    # -- routes -----------------------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict, body: Any) -> tuple[int, dict]:  # noqa: PLR0911
        segments = [s for s in path.split("/") if s]
        match (method, segments):
            case ("GET", ["user", "tokens", "verify"]):
                return self.verify_token()
            case ("GET", ["user"]):
                return self.get_user()
            case ("GET", ["zones"]):
                return self.list_zones(query)
            case ("GET", ["zones", zone_id, "dns_records"]):
                return self.list_records(self.zone(zone_id), query)
            case ("POST", ["zones", zone_id, "dns_records"]):
                return self.create_record(self.zone(zone_id), body)
            case ("PUT", ["zones", zone_id, "dns_records", record_id]):
                return self.update_record(self.zone(zone_id), record_id, body)
            case ("DELETE", ["zones", zone_id, "dns_records", record_id]):
                return self.delete_record(self.zone(zone_id), record_id)
            case ("GET", ["accounts", account_id, "cfd_tunnel", tunnel_id, "configurations"]):
                return self.get_tunnel_config(account_id, tunnel_id)
            case ("PUT", ["accounts", account_id, "cfd_tunnel", tunnel_id, "configurations"]):
                return self.put_tunnel_config(account_id, tunnel_id, body)
            case (_, ["accounts", account_id, "access", "apps", *rest]):
                return self.access_apps(method, account_id, rest, query, body)
            case (_, ["accounts", account_id, "access", "policies", *rest]):
                return self.access_policies(method, account_id, rest, query, body)
        raise ApiError(404, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?")

    def verify_token(self) -> tuple[int, dict]:
        # Authentication already rejected unknown tokens; a disabled/expired one is reported by its status.
        auth = self.headers.get("authorization", "")
        record = self.state.tokens.get(auth[len("Bearer ") :]) if auth.startswith("Bearer ") else None
        if record is None:  # global API key callers have no token to verify
            raise ApiError(400, 6003, "Invalid request headers")
        result = {"id": record["id"], "status": record["status"]}
        self.check_response("GET /user/tokens/verify", token_verify_response.TokenVerifyResponse, result)
        body = envelope(result)
        body["messages"] = [{"code": 10000, "message": "This API Token is valid and active"}]
        return 200, body

    def get_user(self) -> tuple[int, dict]:
        result = {"id": new_id(), "email": next(iter(self.state.global_keys), "user@example.com")}
        self.check_response("GET /user", user_get_response.UserGetResponse, result)
        return 200, envelope(result)

    def list_zones(self, query: dict) -> tuple[int, dict]:
        zones = [z for z in self.state.zones if "name" not in query or z["name"] == query["name"]]
        chunk, info = paginate(zones, query, 20)
        for zone in chunk:
            self.check_response("GET /zones", zone_model.Zone, zone)
        return 200, envelope(copy.deepcopy(chunk), info)

    def zone(self, zone_id: str) -> dict:
        for zone in self.state.zones:
            if zone["id"] == zone_id:
                return zone
        raise ApiError(404, 7003, "Could not route to /zones/..., perhaps your object identifier is invalid?")

    def list_records(self, zone: dict, query: dict) -> tuple[int, dict]:
        records = self.state.dns_records.setdefault(zone["id"], [])
        selected = [
            r for r in records
            if all(query.get(k) in (None, r[k]) for k in ("type", "name", "content"))
        ]  # fmt: skip
        chunk, info = paginate(selected, query, 100)
        for record in chunk:
            self.check_response("GET dns_records", record_response.RecordResponse, record)
        return 200, envelope(copy.deepcopy(chunk), info)

    def validate_record(self, zone: dict, body: dict, tp: Any) -> None:
        self.check_request("dns_record", tp, body, {"zone_id": zone["id"]})
        if not body["name"].lower().endswith(zone["name"]):
            raise ApiError(400, 9005, "Content for the record name is invalid: not in this zone.")
        if not body.get("proxied") and body["ttl"] != 1 and not 60 <= body["ttl"] <= 86400:
            raise ApiError(400, 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.")

    def create_record(self, zone: dict, body: Any) -> tuple[int, dict]:
        self.validate_record(zone, body, record_create_params.CNAMERecord)
        records = self.state.dns_records.setdefault(zone["id"], [])
        if any(r["name"] == body["name"].lower() for r in records):
            raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
        record = dns_record(zone["id"], body)
        records.append(record)
        self.check_response("POST dns_records", record_response.RecordResponse, record)
        return 200, envelope(copy.deepcopy(record))

    def find_record(self, zone: dict, record_id: str) -> tuple[list, int]:
        records = self.state.dns_records.setdefault(zone["id"], [])
        for index, record in enumerate(records):
            if record["id"] == record_id:
                return records, index
        raise ApiError(404, 81044, "Record does not exist.")

    def update_record(self, zone: dict, record_id: str, body: Any) -> tuple[int, dict]:
        records, index = self.find_record(zone, record_id)
        self.validate_record(zone, body, record_update_params.CNAMERecord)
        records[index] = dns_record(zone["id"], body, records[index])
        self.check_response("PUT dns_records", record_response.RecordResponse, records[index])
        return 200, envelope(copy.deepcopy(records[index]))

    def delete_record(self, zone: dict, record_id: str) -> tuple[int, dict]:
        records, index = self.find_record(zone, record_id)
        del records[index]
        return 200, envelope({"id": record_id})

    def tunnel(self, account_id: str, tunnel_id: str) -> dict:
        tunnel = self.state.tunnels.get(tunnel_id)
        if tunnel is None or tunnel["account_id"] != account_id:
            raise ApiError(404, 1001, "Tunnel not found")
        return tunnel

    def tunnel_result(self, tunnel_id: str, tunnel: dict) -> dict:
        result = {
            "account_id": tunnel["account_id"],
            "config": copy.deepcopy(tunnel["config"]),
            "created_at": tunnel["created_at"],
            "source": tunnel["source"],
            "tunnel_id": tunnel_id,
            "version": tunnel["version"],
        }
        checked = copy.deepcopy(result)
        ingress = (checked.get("config") or {}).get("ingress") or []
        if ingress and set(ingress[-1]) <= CATCH_ALL_KEYS:
            ingress.pop()  # the catch-all the SDK cannot type (see CATCH_ALL_KEYS)
        self.check_response("cfd_tunnel configurations", configuration_get_response.ConfigurationGetResponse, checked)
        return result

    def get_tunnel_config(self, account_id: str, tunnel_id: str) -> tuple[int, dict]:
        tunnel = self.tunnel(account_id, tunnel_id)
        return 200, envelope(self.tunnel_result(tunnel_id, tunnel))

    def put_tunnel_config(self, account_id: str, tunnel_id: str, body: Any) -> tuple[int, dict]:
        tunnel = self.tunnel(account_id, tunnel_id)
        if not isinstance(body, dict) or not isinstance(body.get("config"), dict):
            raise ApiError(400, 1056, "Bad Configuration: config is required")
        ingress = body["config"].get("ingress") or []
        if not ingress or set(ingress[-1]) - CATCH_ALL_KEYS:
            raise ApiError(400, 1056, "Bad Configuration: Validation failed: The last ingress rule must match all URLs "
                                      "(i.e. it should not have a hostname or path filter)")  # fmt: skip
        checked = copy.deepcopy(body)
        checked["config"]["ingress"] = ingress[:-1]
        self.check_request("cfd_tunnel configurations", configuration_update_params.ConfigurationUpdateParams,
                           checked, {"account_id": account_id})  # fmt: skip
        if tunnel["source"] == "local":
            raise ApiError(400, 1056, "Bad Configuration: tunnel is locally configured")
        tunnel["config"] = copy.deepcopy(body["config"])
        tunnel["version"] += 1
        return 200, envelope(self.tunnel_result(tunnel_id, tunnel))

    def expand_app(self, app: dict) -> dict:
        result = copy.deepcopy(app)
        del result["account_id"]
        result["policies"] = [
            {**copy.deepcopy(self.state.access_policies[link["id"]]), "precedence": link.get("precedence", i + 1)}
            for i, link in enumerate(app.get("policies", []))
            if link["id"] in self.state.access_policies
        ]
        for policy in result["policies"]:
            policy.pop("app_count", None)
            policy.pop("reusable", None)
        self.check_response("access app", application_get_response.SelfHostedApplication, result)
        return result

    def access_apps(self, method: str, account_id: str, rest: list, query: dict, body: Any) -> tuple[int, dict]:
        apps = self.state.access_apps
        if not rest and method == "GET":
            listed = [a for a in apps.values() if a["account_id"] == account_id]
            chunk, info = paginate(listed, query, 25)
            return 200, envelope([self.expand_app(a) for a in chunk], info)
        if not rest and method == "POST":
            return 201, envelope(self.expand_app(self.store_app(account_id, None, body)))
        if len(rest) != 1 or rest[0] not in apps or apps[rest[0]]["account_id"] != account_id:
            raise ApiError(404, 12130, "access.api.error.not_found: application not found")
        app_id = rest[0]
        if method == "GET":
            return 200, envelope(self.expand_app(apps[app_id]))
        if method == "PUT":
            return 200, envelope(self.expand_app(self.store_app(account_id, app_id, body)))
        if method == "DELETE":
            del apps[app_id]
            return 202, envelope({"id": app_id})
        raise ApiError(405, 10000, "Method not allowed")

    def store_app(self, account_id: str, app_id: str | None, body: Any) -> dict:
        params = application_create_params if app_id is None else application_update_params
        self.check_request("access app", params.SelfHostedApplication, body, {"account_id": account_id})
        if body["type"] != "self_hosted":
            raise ApiError(400, 12130, "the double only models self_hosted applications")
        for link in body.get("policies", []):
            if not isinstance(link, dict) or link.get("id") not in self.state.access_policies:
                raise ApiError(400, 12130, f"access.api.error.invalid_request: unknown policy {link!r}")
        for other_id, other in self.state.access_apps.items():
            if other_id != app_id and other["domain"] == body["domain"]:
                raise ApiError(400, 12130, "access.api.error.conflict: application with that domain already exists")
        previous = self.state.access_apps.get(app_id or "", {})
        app = {
            "session_duration": "24h",
            "allowed_idps": [],
            "auto_redirect_to_identity": False,
            "app_launcher_visible": True,
            **body,
            "id": app_id or str(uuid.uuid4()),
            "account_id": account_id,
            "aud": previous.get("aud", uuid.uuid4().hex + uuid.uuid4().hex),
            "policies": [{"id": p["id"], "precedence": p.get("precedence", i + 1)}
                         for i, p in enumerate(body.get("policies", []))],
        }  # fmt: skip
        self.state.access_apps[app["id"]] = app
        return app

    def policy_result(self, policy: dict) -> dict:
        result = copy.deepcopy(policy)
        result["app_count"] = sum(
            1 for a in self.state.access_apps.values() if any(p["id"] == policy["id"] for p in a.get("policies", []))
        )
        self.check_response("access policy", policy_get_response.PolicyGetResponse, result)
        return result

    def access_policies(self, method: str, account_id: str, rest: list, query: dict, body: Any) -> tuple[int, dict]:
        policies = self.state.access_policies
        if not rest and method == "GET":
            listed = [p for p in policies.values() if p["account_id"] == account_id]
            chunk, info = paginate(listed, query, 25)
            return 200, envelope([self.policy_result(p) for p in chunk], info)
        if not rest and method == "POST":
            return 201, envelope(self.policy_result(self.store_policy(account_id, None, body)))
        if len(rest) != 1 or rest[0] not in policies or policies[rest[0]]["account_id"] != account_id:
            raise ApiError(404, 12130, "access.api.error.not_found: policy not found")
        policy_id = rest[0]
        if method == "GET":
            return 200, envelope(self.policy_result(policies[policy_id]))
        if method == "PUT":
            return 200, envelope(self.policy_result(self.store_policy(account_id, policy_id, body)))
        if method == "DELETE":
            if any(any(p["id"] == policy_id for p in a.get("policies", [])) for a in self.state.access_apps.values()):
                raise ApiError(400, 12130, "access.api.error.policy_in_use: policy is used by an application")
            del policies[policy_id]
            return 202, envelope({"id": policy_id})
        raise ApiError(405, 10000, "Method not allowed")

    def store_policy(self, account_id: str, policy_id: str | None, body: Any) -> dict:
        params = (
            policy_create_params.PolicyCreateParams if policy_id is None else policy_update_params.PolicyUpdateParams
        )
        self.check_request("access policy", params, body, {"account_id": account_id})
        stamp = now()
        previous = self.state.access_policies.get(policy_id or "", {})
        policy = {
            "exclude": [],
            "require": [],
            "session_duration": "24h",
            **body,
            "id": policy_id or str(uuid.uuid4()),
            "account_id": account_id,
            "reusable": True,
            "created_at": previous.get("created_at", stamp),
            "updated_at": stamp,
        }
        self.state.access_policies[policy["id"]] = policy
        return policy


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cloudflare-double"
    double: CloudflareDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


class _ApiHandler(_Handler):
    def _api(self) -> None:
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra = self.double.api.handle(self.command, self.path, headers, raw)
        self._send(status, body, extra)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _api


class _ProxyHandler(_Handler):
    def do_CONNECT(self) -> None:
        host, _, port = self.path.partition(":")
        if host != API_HOST or port not in ("443", ""):
            self.send_error(403, f"the Cloudflare double only tunnels to {API_HOST}:443")
            return
        upstream = socket.create_connection(("127.0.0.1", self.double.api_port))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.double.connects += 1
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, _, broken = select.select(sockets, [], sockets, 30)
                if broken or not readable:
                    break
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()
            self.close_connection = True

    def _control(self) -> None:
        raw = self._read_body()
        body = json.loads(raw) if raw else {}
        path = urlsplit(self.path).path
        state = self.double.state
        with state.lock:
            match (self.command, path):
                case ("GET", "/__double__/requests"):
                    self._send(200, state.requests)
                case ("DELETE", "/__double__/requests"):
                    state.requests.clear()
                    self._send(200, {})
                case ("GET", "/__double__/state"):
                    self._send(200, state.snapshot())
                case ("POST", "/__double__/faults"):
                    state.faults.append(Fault(**body))
                    self._send(200, {})
                case ("POST", "/__double__/revoke"):
                    state.tokens.pop(body["token"], None)
                    self._send(200, {})
                case _:
                    self._send(404, {"error": "unknown control endpoint"})

    do_GET = do_POST = do_DELETE = _control


class CloudflareDouble:
    """Start/stop the API and the proxy in background threads of the current process."""

    def __init__(self, state: State | None = None, workdir: str | Path | None = None) -> None:
        self.state = state or default_state()
        self.api = Api(self.state)
        self.connects = 0
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="cf-double-")
        self.workdir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.workdir / "ca.pem"
        self._servers: list[ThreadingHTTPServer] = []

    def start(self) -> CloudflareDouble:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(API_HOST, "127.0.0.1", "localhost").configure_cert(context)
        api_handler = type("ApiHandler", (_ApiHandler,), {"double": self})
        proxy_handler = type("ProxyHandler", (_ProxyHandler,), {"double": self})
        api = ThreadingHTTPServer(("127.0.0.1", 0), api_handler)
        api.socket = context.wrap_socket(api.socket, server_side=True)
        proxy = ThreadingHTTPServer(("127.0.0.1", 0), proxy_handler)
        for server in (api, proxy):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers = [api, proxy]
        return self

    @property
    def api_port(self) -> int:
        return self._servers[0].server_address[1]

    @property
    def proxy_port(self) -> int:
        return self._servers[1].server_address[1]

    @property
    def api_url(self) -> str:
        """The API reached directly (for clients with a configurable base URL)."""
        return f"https://127.0.0.1:{self.api_port}{PREFIX}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def control_url(self) -> str:
        return f"{self.proxy_url}/__double__"

    def client_env(self) -> dict[str, str]:
        """Environment making any client (the unmodified community module included) talk to the double."""
        return {
            "https_proxy": self.proxy_url,
            "HTTPS_PROXY": self.proxy_url,
            "no_proxy": "",
            "NO_PROXY": "",
            "SSL_CERT_FILE": str(self.ca_file),
        }

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> CloudflareDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
