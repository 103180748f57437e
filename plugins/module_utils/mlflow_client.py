# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""The verification modules' HTTP client for an MLflow tracking server: every failure classified (connection
refused, DNS, TLS, MLflow's Host check, 401, other statuses, timeouts) into an MlflowError whose message names the
request and what to check. HTTP through ansible.module_utils.urls. Beside it: prometheus_text (the /metrics names),
mlflow_s3 (S3 checks through botocore), mlflow_presigned (presigned URL requests)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html
import http.client
import json
import re
import socket
import ssl
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit

from ansible.module_utils.urls import Request, make_context

try:
    from inspect import signature

    _REQUEST_TAKES_CONTEXT = "context" in signature(Request.open).parameters
except (ImportError, TypeError, ValueError):  # pragma: no cover
    _REQUEST_TAKES_CONTEXT = False

try:
    from ansible.module_utils.urls import SSLValidationError
except ImportError:  # pragma: no cover - removed in some ansible-core version
    SSLValidationError = None


USER_AGENT = "carbon254.mlflow"
# The body MLflow 3.17.2 sends with its 403 when the Host header is not in --allowed-hosts
# (measured: docs/research/mlflow-3.17.2-server.md section 3, and tests/integration/test_mlflow_modules.py).
HOST_CHECK_MARKER = "Invalid Host header"

# Failure kinds, each with the words a failure message starts with.
KINDS = {
    "connection_refused": "connection refused",
    "dns": "DNS lookup failed",
    "tls": "TLS certificate verification failed",
    "host_check": "HTTP 403 from MLflow's Host header check (--allowed-hosts)",
    "auth": "HTTP 401 authentication failed",
    "http_status": "unexpected HTTP status",
    "timeout": "timed out",
    "connection": "connection failed",
    "invalid_response": "invalid response",
    "version_mismatch": "version mismatch",
    "missing_metrics": "missing metric families",
    "checksum_mismatch": "artifact checksum mismatch",
    "value_mismatch": "logged value mismatch",
    "not_found": "object not found",
    "artifact_store": "artifact upload failed",
    "presigned_transfer": "presigned S3 transfer failed from this host",
}
# Kinds worth retrying while a server starts or rolls: the others are configuration errors.
RETRYABLE_KINDS = frozenset(
    ["connection_refused", "dns", "timeout", "connection", "http_status", "version_mismatch", "missing_metrics"]
)


def mlflow_connection_argument_spec():
    """Options shared by every module; documented by the carbon254.mlflow.mlflow_connection doc fragment."""
    return dict(
        url=dict(type="str", required=True),
        host_header=dict(type="str"),
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        timeout=dict(type="float", default=10),
    )


class MlflowError(Exception):
    """A classified failure of one step: `kind` is a key of KINDS."""

    def __init__(self, kind, detail, *, endpoint=None, method=None, url=None, status_code=None, latency_ms=None):
        self.kind = kind
        self.detail = detail
        self.endpoint = endpoint
        self.method = method
        self.url = url
        self.status_code = status_code
        self.latency_ms = latency_ms
        super(MlflowError, self).__init__(self.message)

    @property
    def retryable(self):
        if self.kind == "http_status" and self.status_code is not None:
            return self.status_code >= 500 or self.status_code in (408, 429)
        return self.kind in RETRYABLE_KINDS

    @property
    def message(self):
        where = ""
        if self.endpoint:
            where = "%s %s" % (self.method or "GET", self.endpoint)
            if self.url:
                where += " (%s)" % self.url
            where += ": "
        return "%s%s: %s" % (where, KINDS.get(self.kind, self.kind), self.detail)

    def __str__(self):
        return self.message


class Response(object):
    def __init__(self, status, body, headers, latency_ms, url):
        self.status = status
        self.body = body
        self.headers = headers
        self.latency_ms = latency_ms
        self.url = url

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))


def short(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_REFUSED = "nothing accepts connections at this address and port"
TIMEOUT_DETAIL = "no answer within the timeout"
# (exception class, kind) in order of precedence; socket.timeout is TimeoutError from Python 3.10 on.
_KIND_BY_TYPE = (
    (ssl.SSLCertVerificationError, "tls"),
    (ssl.SSLError, "tls"),
    (ConnectionRefusedError, "connection_refused"),
    (socket.gaierror, "dns"),
    ((socket.timeout, TimeoutError), "timeout"),
)
# When the exception type says nothing (wrapped or re-raised as text): words of the message.
_KIND_BY_TEXT = (
    ("certificate verify failed", "tls"),
    ("certificate_verify_failed", "tls"),
    ("failed to validate the ssl certificate", "tls"),
    ("name or service not known", "dns"),
    ("temporary failure in name resolution", "dns"),
    ("connection refused", "connection_refused"),
    ("timed out", "timeout"),
)


def classify_network_error(exc):
    """(kind, detail) for an exception raised while connecting, sending or reading (not an HTTP status)."""
    reason = exc.reason if isinstance(exc, URLError) and not isinstance(exc, HTTPError) else exc
    text = short(getattr(reason, "verify_message", None) or reason, 500) or type(reason).__name__
    kind = None
    if SSLValidationError is not None and isinstance(exc, SSLValidationError):
        kind = "tls"
    for cls, candidate in _KIND_BY_TYPE:
        if kind is None and isinstance(reason, cls):
            kind = candidate
    for needle, candidate in _KIND_BY_TEXT:
        if kind is None and needle in text.lower():
            kind = candidate
    if kind == "connection_refused":
        return kind, _REFUSED
    if kind == "timeout":
        return kind, TIMEOUT_DETAIL
    if kind == "dns":
        return kind, "cannot resolve the host name (%s)" % text
    if kind == "tls" and isinstance(reason, ssl.SSLError) and not isinstance(reason, ssl.SSLCertVerificationError):
        return kind, "TLS handshake error: %s" % text
    if kind is None:
        kind = "connection"
        if isinstance(reason, http.client.HTTPException):
            text = "%s: %s" % (type(reason).__name__, text)
    return kind, text


_TAG = re.compile(r"<[^>]*>")


def mlflow_error_detail(body):
    """The error_code and message of an MLflow JSON error body, else the start of the body (HTML as text)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    try:
        data = json.loads(text)
    except ValueError:
        if text.lstrip()[:1] == "<":  # Flask's HTML error page, e.g. for an unhandled exception (500)
            text = html.unescape(_TAG.sub(" ", text))
        return short(text) or "(empty body)"
    if isinstance(data, dict) and ("error_code" in data or "message" in data):
        return short("%s: %s" % (data.get("error_code", "?"), data.get("message", "")))
    return short(text)


class MlflowClient(object):
    """Requests against one MLflow server; every failure is raised as a classified MlflowError."""

    def __init__(
        self,
        url,
        *,
        host_header=None,
        username=None,
        password=None,
        validate_certs=True,
        ca_path=None,
        timeout=10.0,
        clock=time.monotonic,
    ):
        self.base_url = url.rstrip("/")
        self.host_header = host_header
        self.username = username
        self.password = password
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.clock = clock

    @classmethod
    def from_params(cls, params):
        return cls(
            params["url"],
            host_header=params.get("host_header"),
            username=params.get("username"),
            password=params.get("password"),
            validate_certs=params.get("validate_certs", True),
            ca_path=params.get("ca_path"),
            timeout=params.get("timeout") or 10.0,
        )

    def request(self, method, path, *, json_body=None, data=None, query=None, timeout=None, expected=(200,)):
        """Send one request; return a Response whose status is in `expected`, else raise MlflowError."""
        url = self.base_url + path
        if query:
            url += "?" + urlencode(query)
        headers = {"Accept": "*/*"}
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif data is not None:
            headers["Content-Type"] = "application/octet-stream"
        if self.host_header:
            headers["Host"] = self.host_header
        kwargs = dict(
            data=data,
            headers=headers,
            method=method,
            timeout=timeout or self.timeout,
            validate_certs=self.validate_certs,
            ca_path=self.ca_path,
            http_agent=USER_AGENT,
            follow_redirects="safe",
            use_netrc=False,
        )
        if self.username:
            kwargs.update(url_username=self.username, url_password=self.password or "", force_basic_auth=True)
        start = self.clock()
        where = dict(endpoint=path, method=method, url=url)
        try:
            response = open_request(url, **kwargs)
            try:
                body = response.read()
                status = response.getcode()
                response_headers = dict(response.headers.items())
            finally:
                response.close()
        except HTTPError as exc:
            latency = int((self.clock() - start) * 1000)
            try:
                body = exc.read() or b""
            except Exception:  # a body we cannot read is reported as empty
                body = b""
            raise self._status_error(exc.code, body, latency_ms=latency, **where) from None
        except Exception as exc:  # every network failure is classified, none escapes raw
            latency = int((self.clock() - start) * 1000)
            kind, detail = classify_network_error(exc)
            if kind == "timeout":
                # Say how long: e.g. MLflow 3.17.2 whose database became unreachable before its first tracking
                # request retries connecting for minutes and answers nothing meanwhile (measured).
                detail = "no answer within %g s (request timeout)" % (timeout or self.timeout)
            raise MlflowError(kind, detail, latency_ms=latency, **where) from exc
        latency = int((self.clock() - start) * 1000)
        if status not in expected:
            raise self._status_error(status, body, latency_ms=latency, **where)
        return Response(status, body, response_headers, latency, url)

    def _status_error(self, status, body, **where):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        url = where["url"]
        common = dict(where, status_code=status)
        if status == 403 and HOST_CHECK_MARKER.lower() in text.lower():
            sent = self.host_header or urlsplit(url).netloc
            return MlflowError(
                "host_check",
                "the server answered %r to Host %r; add that host:port to the server's --allowed-hosts or set "
                "host_header to a name it allows" % (short(text, 120), sent),
                **common,
            )
        if status == 401:
            if self.username:
                detail = "the server rejected the credentials of user %r (wrong username or password)" % self.username
            else:
                detail = "the server requires authentication (set username and password)"
            return MlflowError("auth", detail, **common)
        return MlflowError("http_status", "HTTP %s: %s" % (status, mlflow_error_detail(body)), **common)

    def api(self, method, endpoint, body=None, query=None):
        """Call /api/2.0/mlflow/<endpoint> and return the decoded JSON object."""
        path = "/api/2.0/mlflow/" + endpoint
        response = self.request(method, path, json_body=body, query=query)
        try:
            return response.json()
        except ValueError:
            raise MlflowError(
                "invalid_response",
                "not JSON: %s" % short(response.text(), 200),
                endpoint=path,
                method=method,
                url=response.url,
                status_code=response.status,
            ) from None


_CONTEXTS = {}


def open_request(url, **kwargs):
    """ansible.module_utils.urls' Request.open with one cached SSLContext per (validate_certs, ca_path).

    open_url() builds a fresh context, loading the system CA store, for every request, even for http URLs
    (about 0.3 s each here; a round trip makes a dozen requests). A redirect to https still verifies.
    """
    method = kwargs.pop("method", "GET")
    if _REQUEST_TAKES_CONTEXT:
        key = (bool(kwargs.get("validate_certs", True)), kwargs.get("ca_path"))
        if key not in _CONTEXTS:
            _CONTEXTS[key] = make_context(cafile=key[1], validate_certs=key[0])
        kwargs["context"] = _CONTEXTS[key]
    return Request().open(method, url, **kwargs)
