# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Shared code of the carbon254.mlflow Cloudflare modules: a small client of the Cloudflare v4 API.

Token (C(Authorization: Bearer)) or global API key (C(X-Auth-Email) + C(X-Auth-Key)) authentication, a
configurable base URL, page-by-page listing (C(result_info.total_pages)), and retries of HTTP 429/5xx and
connection failures with exponential backoff (honouring C(Retry-After)). Requests go through
ansible.module_utils.urls.fetch_url, so the standard proxy (C(https_proxy)) and CA (C(SSL_CERT_FILE))
environment variables apply, as they do to community.general.cloudflare_dns.

Envelope of every answer (https://developers.cloudflare.com/fundamentals/api/how-to/make-api-calls/):
C({"success": bool, "errors": [{"code", "message"}], "messages": [...], "result": ..., "result_info": {...}}).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six.moves.urllib.parse import quote, urlencode
from ansible.module_utils.urls import fetch_url

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_BACKOFF = 60.0


def cloudflare_argument_spec():
    """Options every Cloudflare module of the collection takes (documented in each module)."""
    return dict(
        api_token=dict(type="str", no_log=True),
        account_email=dict(type="str"),
        account_api_key=dict(type="str", no_log=True),
        api_base_url=dict(type="str", default=DEFAULT_BASE_URL),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=30),
        max_retries=dict(type="int", default=5),
        retry_delay=dict(type="float", default=1.0),
    )


CLOUDFLARE_MODULE_KWARGS = dict(
    required_one_of=[("api_token", "account_api_key")],
    required_together=[("account_email", "account_api_key")],
    mutually_exclusive=[("api_token", "account_api_key")],
)


def path_segment(value):
    return quote(str(value), safe="")


class CloudflareError(Exception):
    """A request that failed for good: HTTP status, Cloudflare's error list and a readable message."""

    def __init__(self, method, path, status, errors=None, detail=None):
        self.method = method
        self.path = path
        self.status = status
        self.errors = errors or []
        parts = ["%s %s" % (method, path)]
        parts.append("HTTP %s" % status if status and status > 0 else "no HTTP answer")
        if self.errors:
            parts.append("; ".join("code %s: %s" % (e.get("code"), e.get("message")) for e in self.errors))
        if detail:
            parts.append(detail)
        super(CloudflareError, self).__init__(" - ".join(parts))

    @property
    def codes(self):
        return [e.get("code") for e in self.errors]


class CloudflareClient(object):
    def __init__(self, module, sleep=time.sleep):
        self.module = module
        params = module.params
        self.base_url = params["api_base_url"].rstrip("/")
        self.timeout = params["timeout"]
        self.max_retries = max(0, params["max_retries"])
        self.retry_delay = max(0.0, params["retry_delay"])
        self.sleep = sleep
        self.requests = 0
        self.writes = 0
        self.retried = 0
        if params.get("api_token"):
            self.headers = {"Authorization": "Bearer %s" % params["api_token"]}
        else:
            self.headers = {"X-Auth-Email": params["account_email"], "X-Auth-Key": params["account_api_key"]}
        self.headers["Content-Type"] = "application/json"
        self.headers["User-Agent"] = "carbon254.mlflow"

    def _backoff(self, attempt, info):
        retry_after = None
        for key, value in (info or {}).items():
            if str(key).lower() == "retry-after":
                try:
                    retry_after = float(value)
                except (TypeError, ValueError):
                    retry_after = None
        delay = self.retry_delay * (2**attempt)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, MAX_BACKOFF)

    def request(self, method, path, query=None, body=None):
        """The full JSON envelope of a successful request; raises CloudflareError otherwise."""
        url = self.base_url + path
        if query:
            url += "?" + urlencode(sorted((k, v) for k, v in query.items() if v is not None))
        data = json.dumps(body) if body is not None else None
        attempt = 0
        while True:
            self.requests += 1
            if method in WRITE_METHODS:
                self.writes += 1
            resp, info = fetch_url(
                self.module, url, data=data, headers=self.headers, method=method, timeout=self.timeout
            )
            status = info.get("status", -1)
            content = None
            if resp is not None:
                try:
                    content = resp.read()
                except Exception:  # pylint: disable=broad-except
                    content = None
            if not content:
                content = info.get("body")
            envelope = None
            if content:
                try:
                    envelope = json.loads(to_text(content, errors="surrogate_or_strict"))
                except ValueError:
                    envelope = None
            retryable = status in RETRY_STATUSES or status < 0
            if retryable and attempt < self.max_retries:
                self.sleep(self._backoff(attempt, info))
                attempt += 1
                self.retried += 1
                continue
            if isinstance(envelope, dict) and envelope.get("success") and 200 <= status < 300:
                return envelope
            errors = envelope.get("errors") if isinstance(envelope, dict) else None
            detail = None
            if not errors:
                detail = info.get("msg") or "unexpected answer"
            if retryable:
                detail = (detail + "; " if detail else "") + "gave up after %d retries" % attempt
            raise CloudflareError(method, path, status, errors, detail)

    def get(self, path, query=None):
        return self.request("GET", path, query)["result"]

    def list(self, path, query=None, per_page=50):
        """Every item of a paginated list, following C(result_info.total_pages)."""
        items = []
        page = 1
        while True:
            params = dict(query or {})
            params.update(page=page, per_page=per_page)
            envelope = self.request("GET", path, params)
            result = envelope.get("result") or []
            items.extend(result)
            info = envelope.get("result_info") or {}
            total_pages = info.get("total_pages")
            if total_pages is None:
                if len(result) < per_page:
                    return items
            elif page >= int(total_pages):
                return items
            page += 1

    def stats(self):
        return dict(requests=self.requests, writes=self.writes, retries=self.retried)
