#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type
# ruff: noqa: E402 - validate-modules wants the imports after DOCUMENTATION, EXAMPLES and RETURN

DOCUMENTATION = r"""
module: mlflow_health
short_description: Wait until an MLflow tracking server is healthy and check its version and metrics
version_added: 0.1.0
description:
  - Requests C(/health), C(/version) and (unless O(check_metrics=false)) C(/metrics) of an MLflow tracking
    server, retrying with exponential backoff until all of them answer as expected or the retries or
    O(overall_timeout) run out.
  - Optionally asserts the server version (O(expected_version)) and that Prometheus metric families are exposed
    (O(expected_metrics); the server must run with C(--expose-prometheus)).
  - A failure message names the endpoint that failed and how, for example connection refused, DNS lookup
    failed, TLS certificate verification failed, HTTP 403 from MLflow's Host header check, HTTP 401
    authentication failed, another HTTP status, timed out, version mismatch or missing metric families.
  - Connection refused, DNS failures, timeouts, HTTP 5xx/408/429, a version mismatch and missing metric
    families are retried (a server starting or rolling out); TLS failures, 401, 403 and other 4xx answers are
    configuration errors that fail at once.
  - Read-only; the module never reports a change.
author:
  - carbon254 platform team (@carbon254)
extends_documentation_fragment:
  - carbon254.mlflow.mlflow_connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The checks only read, so they run in check mode too.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  expected_version:
    description:
      - Fail unless C(/version) returns exactly this version, for example V(3.17.2).
    type: str
  check_metrics:
    description:
      - Request C(/metrics) too. Needs a server started with C(--expose-prometheus).
    type: bool
    default: true
  expected_metrics:
    description:
      - Names of metric families (or sample names) that must be present in the C(/metrics) text.
      - MLflow 3.17.2 always exposes C(mlflow_exporter_info) and the C(mlflow_otlp_*) histograms;
        C(mlflow_http_request_total) and C(mlflow_http_request_duration_seconds) appear only after the first
        API request (C(/health), C(/version) and C(/metrics) are not counted).
      - Ignored when O(check_metrics=false).
    type: list
    elements: str
    default: []
  retries:
    description:
      - How many times to retry after a failed attempt.
    type: int
    default: 10
  delay:
    description:
      - Seconds to wait after the first failed attempt; the wait doubles after every further failure, up to
        30 seconds.
    type: float
    default: 2
  overall_timeout:
    description:
      - Give up after this many seconds in total, whatever O(retries) says. Each request's timeout is cut to
        the time left.
    type: float
    default: 120
notes:
  - MLflow answers C(/health) and C(/version) whatever the C(Host) header, but C(/metrics) and the API go
    through its C(--allowed-hosts) check; so a wrong O(host_header) shows up as a 403 on C(/metrics).
seealso:
  - module: carbon254.mlflow.mlflow_roundtrip
"""

EXAMPLES = r"""
- name: Wait for MLflow and check the deployed version
  carbon254.mlflow.mlflow_health:
    url: http://mlflow.mlflow.svc.cluster.local:5000
    expected_version: "3.17.2"
    expected_metrics:
      - mlflow_exporter_info
    retries: 30
    delay: 2
    overall_timeout: 300

- name: Through a port-forward, sending the Host the server allows, with basic auth and a private CA
  carbon254.mlflow.mlflow_health:
    url: https://127.0.0.1:8443
    host_header: mlflow.example.com
    username: admin
    password: "{{ vault_mlflow_admin_password }}"
    ca_path: /etc/ssl/certs/internal-ca.pem
    check_metrics: false
  register: mlflow_health

- name: Show how long /health took
  ansible.builtin.debug:
    msg: "{{ mlflow_health.endpoints.health.latency_ms }} ms"
"""

RETURN = r"""
version:
  description: What C(/version) returned.
  returned: when C(/version) answered
  type: str
  sample: 3.17.2
endpoints:
  description:
    - One entry per endpoint requested in the last attempt (V(health), V(version), V(metrics)).
  returned: always
  type: dict
  sample:
    health: {url: "http://mlflow:5000/health", status_code: 200, latency_ms: 4, ok: true}
    version: {url: "http://mlflow:5000/version", status_code: 200, latency_ms: 3, ok: true}
    metrics: {url: "http://mlflow:5000/metrics", status_code: 403, latency_ms: 5, ok: false}
  contains:
    url:
      description: The URL requested.
      type: str
    status_code:
      description: The HTTP status, or null when no response arrived.
      type: int
    latency_ms:
      description: Milliseconds from sending the request to reading the whole response (or the failure).
      type: int
    ok:
      description: Whether this endpoint passed its checks.
      type: bool
metrics_found:
  description: Metric family names found in the C(/metrics) text, sorted.
  returned: when C(/metrics) answered
  type: list
  elements: str
  sample: [mlflow_exporter_info, mlflow_http_request_total]
metrics_missing:
  description: The O(expected_metrics) that were not found.
  returned: failure
  type: list
  elements: str
  sample: [mlflow_http_request_total]
attempts:
  description: How many attempts were made.
  returned: always
  type: int
  sample: 3
elapsed_ms:
  description: Milliseconds from the first request to the end.
  returned: always
  type: int
  sample: 4210
failure_kind:
  description:
    - The class of the last failure, one of V(connection_refused), V(dns), V(tls), V(host_check), V(auth),
      V(http_status), V(timeout), V(connection), V(invalid_response), V(version_mismatch),
      V(missing_metrics).
  returned: failure
  type: str
  sample: host_check
failed_endpoint:
  description: The endpoint path whose check failed last.
  returned: failure
  type: str
  sample: /metrics
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import (
    MlflowClient,
    MlflowError,
    mlflow_connection_argument_spec,
)
from ansible_collections.carbon254.mlflow.plugins.module_utils.prometheus_text import (
    missing_metrics,
    parse_metric_names,
)

MAX_DELAY = 30.0
MIN_REQUEST_TIMEOUT = 0.5


def argument_spec():
    spec = mlflow_connection_argument_spec()
    spec.update(
        expected_version=dict(type="str"),
        check_metrics=dict(type="bool", default=True),
        expected_metrics=dict(type="list", elements="str", default=[]),
        retries=dict(type="int", default=10),
        delay=dict(type="float", default=2),
        overall_timeout=dict(type="float", default=120),
    )
    return spec


class HealthCheck(object):
    def __init__(self, client, params, clock=time.monotonic, sleep=time.sleep):
        self.client = client
        self.params = params
        self.clock = clock
        self.sleep = sleep
        self.endpoints = {}
        self.result = {}

    def _get(self, name, path, timeout):
        entry = dict(url=self.client.base_url + path, status_code=None, latency_ms=None, ok=False)
        self.endpoints[name] = entry
        try:
            response = self.client.request("GET", path, timeout=timeout)
        except MlflowError as exc:
            entry.update(status_code=exc.status_code, latency_ms=exc.latency_ms)
            raise
        entry.update(status_code=response.status, latency_ms=response.latency_ms, ok=True)
        return response

    def attempt(self, timeout):
        self.endpoints = {}
        self.result = {}
        self._get("health", "/health", timeout)
        response = self._get("version", "/version", timeout)
        version = response.text().strip()
        self.result["version"] = version
        expected = self.params.get("expected_version")
        if expected and version != expected:
            self.endpoints["version"]["ok"] = False
            raise MlflowError(
                "version_mismatch",
                "the server runs %r, expected %r" % (version, expected),
                endpoint="/version",
                url=response.url,
                status_code=response.status,
            )
        if self.params.get("check_metrics", True):
            response = self._get("metrics", "/metrics", timeout)
            text = response.text()
            families, samples = parse_metric_names(text)
            self.result["metrics_found"] = sorted(families or samples)
            missing = missing_metrics(text, self.params.get("expected_metrics") or [])
            if missing:
                self.endpoints["metrics"]["ok"] = False
                self.result["metrics_missing"] = missing
                raise MlflowError(
                    "missing_metrics",
                    "%s not exposed (found: %s)"
                    % (", ".join(missing), ", ".join(self.result["metrics_found"]) or "no metrics at all"),
                    endpoint="/metrics",
                    url=response.url,
                    status_code=response.status,
                )

    def run(self):
        """Retry until healthy. Returns (ok, result dict, last MlflowError or None)."""
        retries = max(0, self.params.get("retries", 10))
        delay = max(0.0, self.params.get("delay", 2.0))
        overall = max(0.0, self.params.get("overall_timeout", 120.0))
        timeout = self.params.get("timeout") or 10.0
        start = self.clock()
        deadline = start + overall
        attempts = 0
        error = None
        while True:
            attempts += 1
            request_timeout = max(MIN_REQUEST_TIMEOUT, min(timeout, deadline - self.clock()))
            try:
                self.attempt(request_timeout)
                error = None
                break
            except MlflowError as exc:
                error = exc
            if not error.retryable or attempts > retries:
                break
            pause = min(delay * (2 ** (attempts - 1)), MAX_DELAY)
            if self.clock() + pause >= deadline:
                break
            self.sleep(pause)
        result = dict(self.result)
        result.update(
            changed=False,
            endpoints=self.endpoints,
            attempts=attempts,
            elapsed_ms=int((self.clock() - start) * 1000),
        )
        if error is not None:
            result.update(failure_kind=error.kind, failed_endpoint=error.endpoint)
        return error is None, result, error


def failure_message(url, result, error):
    how = "not retried: a configuration error" if not error.retryable else "retries or overall_timeout exhausted"
    return "MLflow at %s is not healthy after %d attempt(s) in %d ms (%s). %s" % (
        url,
        result["attempts"],
        result["elapsed_ms"],
        how,
        error.message,
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    client = MlflowClient.from_params(module.params)
    ok, result, error = HealthCheck(client, module.params).run()
    if not ok:
        module.fail_json(msg=failure_message(client.base_url, result, error), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
