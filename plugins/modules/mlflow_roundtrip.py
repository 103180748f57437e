#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: carbon254 platform team
# Apache License 2.0 (see galaxy.yml)

from __future__ import absolute_import, division, print_function

__metaclass__ = type
# ruff: noqa: E402 - validate-modules wants the imports after DOCUMENTATION, EXAMPLES and RETURN

DOCUMENTATION = r"""
module: mlflow_roundtrip
short_description: Prove an MLflow tracking server works end to end with a throwaway experiment
version_added: 0.1.0
description:
  - Goes through the MLflow REST API (C(/api/2.0/mlflow/...)) the way a training job does, and removes what it
    made afterwards.
  - Creates a uniquely named experiment (O(experiment_prefix) plus a UTC timestamp and a random suffix) and a
    run in it, logs one parameter and one metric (C(runs/log-batch)), uploads an artifact of O(artifact_size)
    random bytes through the server's proxied artifact API
    (C(PUT /api/2.0/mlflow-artifacts/artifacts/<experiment_id>/<run_id>/artifacts/<file>), the run's
    C(mlflow-artifacts:) artifact URI), downloads it again and compares SHA-256 checksums, then reads the run
    back and compares the logged parameter and metric.
  - When the S3 options are given, also checks with a signed S3 C(HEAD Object) that the artifact really is in
    the bucket at O(s3_prefix)/<experiment_id>/<run_id>/artifacts/<file> with the uploaded size, and after the
    cleanup that it is gone.
  - With O(cleanup=true) (the default) it then deletes the artifact, the run and the experiment, also when a
    step failed; a failure message says whether that cleanup worked and what was left behind.
  - MLflow only marks deleted runs and experiments as deleted (C(lifecycle_stage=deleted)); C(mlflow gc)
    removes them for good. The artifact object is deleted from the bucket (a versioned bucket keeps a
    noncurrent version until its lifecycle rule expires it).
  - Reports C(changed=false) because nothing it creates is kept, so a play that runs it twice stays idempotent.
    With O(cleanup=false) the experiment and run are kept and C(changed=true) is reported.
  - The server must run with C(--serve-artifacts) (proxied artifacts); a run whose artifact URI is not
    C(mlflow-artifacts:) fails the module with that explanation.
author:
  - carbon254 platform team (@carbon254)
extends_documentation_fragment:
  - carbon254.mlflow.mlflow_connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - In check mode only read-only probes run (C(GET /health), C(POST experiments/search) with
        C(max_results=1), and an S3 C(HEAD Bucket) when the S3 options are given); nothing is created and
        RV(planned_steps) lists what a real run would do.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  experiment_prefix:
    description:
      - Start of the throwaway experiment's name; a UTC timestamp and a random suffix follow.
    type: str
    default: carbon254-roundtrip-
  artifact_size:
    description:
      - Size in bytes of the random artifact uploaded and downloaded.
    type: int
    default: 4096
  cleanup:
    description:
      - Delete the artifact, the run and the experiment at the end, also after a failed step.
      - With V(false) they are kept for inspection and the module reports a change.
    type: bool
    default: true
  s3_endpoint_url:
    description:
      - URL of the S3 (MinIO) endpoint holding the server's artifacts, for example
        V(https://minio.minio.svc.cluster.local:9000). Objects are addressed path-style.
      - With O(s3_bucket), O(s3_access_key) and O(s3_secret_key), turns on the check that the artifact
        reached the bucket.
    type: str
  s3_bucket:
    description:
      - The bucket of the server's C(--artifacts-destination) (V(mlflow-artifacts) for
        C(s3://mlflow-artifacts/prod)).
    type: str
  s3_prefix:
    description:
      - The path part of the server's C(--artifacts-destination) (V(prod) for C(s3://mlflow-artifacts/prod));
        empty when artifacts go to the bucket's root.
    type: str
    default: ""
  s3_access_key:
    description:
      - S3 access key ID. Needs read access (C(s3:GetObject)/C(s3:ListBucket)) to the bucket.
    type: str
  s3_secret_key:
    description:
      - S3 secret access key. Never logged.
    type: str
  s3_region:
    description:
      - Region used in the S3 request signature (AWS Signature Version 4).
    type: str
    default: us-east-1
  s3_validate_certs:
    description:
      - Verify the S3 endpoint's TLS certificate.
    type: bool
    default: true
  s3_ca_path:
    description:
      - PEM file with the certificate authorities to trust for an C(https) S3 endpoint.
    type: path
notes:
  - The account used needs permission to create and delete experiments when the server runs with
    C(--app-name basic-auth).
seealso:
  - module: carbon254.mlflow.mlflow_health
  - name: MLflow REST API
    description: The tracking API this module calls.
    link: https://mlflow.org/docs/latest/api_reference/rest-api.html
"""

EXAMPLES = r"""
- name: Round trip through MLflow, checking the artifact landed in MinIO
  carbon254.mlflow.mlflow_roundtrip:
    url: http://mlflow.mlflow.svc.cluster.local:5000
    s3_endpoint_url: https://minio.minio.svc.cluster.local:9000
    s3_bucket: mlflow-artifacts
    s3_access_key: "{{ vault_minio_access_key }}"
    s3_secret_key: "{{ vault_minio_secret_key }}"
    s3_ca_path: /etc/ssl/certs/minio-ca.pem
  register: roundtrip

- name: Show the slowest step
  ansible.builtin.debug:
    msg: "{{ roundtrip.timings | dict2items | sort(attribute='value') | last }}"

- name: Through a port-forward, with basic auth, keeping what it makes
  carbon254.mlflow.mlflow_roundtrip:
    url: http://127.0.0.1:5000
    host_header: mlflow.mlflow.svc.cluster.local:5000
    username: admin
    password: "{{ vault_mlflow_admin_password }}"
    experiment_prefix: smoke-
    cleanup: false
"""

RETURN = r"""
experiment_id:
  description: ID of the throwaway experiment (null in check mode or when it could not be created).
  returned: always
  type: str
  sample: "7"
experiment_name:
  description: Name of the throwaway experiment (in check mode, an example of the name it would get).
  returned: always
  type: str
  sample: carbon254-roundtrip-20261126T154200Z-3f9a1c2e
run_id:
  description: ID of the run (null in check mode or when it could not be created).
  returned: always
  type: str
  sample: 5d1f0f8a2b6a4f5e9c0e2d7b1a3c4e5f
artifact_uri:
  description: The run's artifact URI as the server reported it.
  returned: when the run was created
  type: str
  sample: mlflow-artifacts:/7/5d1f0f8a2b6a4f5e9c0e2d7b1a3c4e5f/artifacts
artifact_path:
  description: The artifact's path below the proxied artifact root.
  returned: when the run was created
  type: str
  sample: 7/5d1f0f8a2b6a4f5e9c0e2d7b1a3c4e5f/artifacts/roundtrip-3f9a1c2e.bin
artifact_sha256:
  description: SHA-256 of the uploaded artifact (the download matched it when the module succeeded).
  returned: when the artifact was generated
  type: str
  sample: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
s3_object:
  description: The artifact's object as seen through S3 after the upload.
  returned: when the S3 options are given and the object was checked
  type: dict
  contains:
    bucket:
      description: Bucket name.
      type: str
    key:
      description: Object key.
      type: str
    size:
      description: Size in bytes reported by C(HEAD Object).
      type: int
    etag:
      description: ETag reported by C(HEAD Object).
      type: str
    deleted:
      description: Whether a C(HEAD Object) after the cleanup found the object gone (null when not cleaned up).
      type: bool
  sample: {bucket: mlflow-artifacts, key: "prod/7/5d1f.../artifacts/roundtrip-3f9a1c2e.bin", size: 4096, etag: "...", deleted: true}
timings:
  description: Milliseconds per step that ran, plus V(total).
  returned: always
  type: dict
  sample: {create_experiment: 31, create_run: 25, log_batch: 18, upload_artifact: 60, download_artifact: 22,
           s3_head_object: 5, get_run: 14, delete_artifact: 30, s3_head_deleted: 4, delete_run: 12,
           delete_experiment: 11, total: 240}
cleaned_up:
  description: Whether everything created was deleted again (false with O(cleanup=false) or when a deletion failed).
  returned: always
  type: bool
  sample: true
cleanup:
  description: What happened to each created thing at cleanup, V(deleted), V(kept) or the error.
  returned: when something was created
  type: dict
  sample: {artifact: deleted, run: deleted, experiment: deleted}
planned_steps:
  description: In check mode, the steps a real run would take.
  returned: check mode
  type: list
  elements: str
  sample: [create experiment carbon254-roundtrip-..., create a run, ...]
failure_kind:
  description:
    - The class of the failure, for example V(host_check), V(auth), V(tls), V(checksum_mismatch),
      V(value_mismatch), V(not_found), V(http_status), V(artifact_store) (the server answered the artifact
      upload with a 5xx, so it could not write to its artifact store), or V(cleanup) when only the cleanup
      failed.
  returned: failure
  type: str
  sample: checksum_mismatch
failed_step:
  description: The step that failed.
  returned: failure
  type: str
  sample: download_artifact
"""

import datetime
import hashlib
import math
import os
import random
import time
import uuid
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import (
    MlflowClient,
    MlflowError,
    mlflow_connection_argument_spec,
    s3_head,
    s3_key,
)

ARTIFACT_API = "/api/2.0/mlflow-artifacts/artifacts/"
PARAM_KEY = "roundtrip_param"
METRIC_KEY = "roundtrip_metric"
S3_OPTIONS = ("s3_endpoint_url", "s3_bucket", "s3_access_key", "s3_secret_key")


def argument_spec():
    spec = mlflow_connection_argument_spec()
    spec.update(
        experiment_prefix=dict(type="str", default="carbon254-roundtrip-"),
        artifact_size=dict(type="int", default=4096),
        cleanup=dict(type="bool", default=True),
        s3_endpoint_url=dict(type="str"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default=""),
        s3_access_key=dict(type="str", no_log=False),
        s3_secret_key=dict(type="str", no_log=True),
        s3_region=dict(type="str", default="us-east-1"),
        s3_validate_certs=dict(type="bool", default=True),
        s3_ca_path=dict(type="path"),
    )
    return spec


def proxied_artifact_root(artifact_uri):
    """`<exp>/<run>/artifacts` from `mlflow-artifacts:/<exp>/<run>/artifacts` (or `mlflow-artifacts://host/...`)."""
    scheme = "mlflow-artifacts:"
    if not artifact_uri or not artifact_uri.startswith(scheme):
        return None
    rest = artifact_uri[len(scheme) :]
    if rest.startswith("//"):
        rest = rest[2:]
        rest = rest.split("/", 1)[1] if "/" in rest else ""
    return rest.strip("/")


class RoundTrip(object):
    def __init__(self, client, params, clock=time.monotonic, now=None, rng=None):
        self.client = client
        self.params = params
        self.clock = clock
        self.now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.rng = rng or random.SystemRandom()
        token = uuid.uuid4().hex[:8]
        self.token = token
        self.experiment_name = "%s%s-%s" % (
            params.get("experiment_prefix", ""),
            self.now().strftime("%Y%m%dT%H%M%SZ"),
            token,
        )
        self.artifact_name = "roundtrip-%s.bin" % token
        self.timings = {}
        self.started = clock()
        self.result = dict(experiment_id=None, experiment_name=self.experiment_name, run_id=None)
        self.s3_enabled = all(params.get(name) for name in S3_OPTIONS)

    # -- helpers -----------------------------------------------------------------------------------------

    def _timed(self, step, func, *args, **kwargs):
        start = self.clock()
        try:
            return func(*args, **kwargs)
        finally:
            self.timings[step] = int((self.clock() - start) * 1000)

    def _s3_head(self, key):
        p = self.params
        return s3_head(
            p["s3_endpoint_url"],
            p["s3_bucket"],
            key,
            access_key=p["s3_access_key"],
            secret_key=p["s3_secret_key"],
            region=p.get("s3_region") or "us-east-1",
            validate_certs=p.get("s3_validate_certs", True),
            ca_path=p.get("s3_ca_path"),
            timeout=p.get("timeout") or 10.0,
        )

    def _artifact_url_path(self, relative):
        return ARTIFACT_API + quote(relative, safe="/")

    # -- check mode --------------------------------------------------------------------------------------

    def probe(self):
        """Read-only probes for check mode. Returns (ok, result, error, failed_step)."""
        steps = [
            "create experiment %s" % self.experiment_name,
            "create a run in it",
            "log param %s and metric %s (runs/log-batch)" % (PARAM_KEY, METRIC_KEY),
            "upload %s (%d random bytes) through the proxied artifact API"
            % (self.artifact_name, self.params["artifact_size"]),
            "download it and compare SHA-256",
        ]
        if self.s3_enabled:
            steps.append(
                "HEAD the object in s3://%s/%s"
                % (
                    self.params["s3_bucket"],
                    s3_key(self.params.get("s3_prefix"), "<experiment_id>/<run_id>/artifacts/" + self.artifact_name),
                )
            )
        steps.append("read the run back and compare the param and metric")
        if self.params.get("cleanup", True):
            steps.append("delete the artifact, the run and the experiment")
        self.result["planned_steps"] = steps
        step = "health"
        try:
            self._timed("health", self.client.request, "GET", "/health")
            step = "search_experiments"
            self._timed(step, self.client.api, "POST", "experiments/search", {"max_results": 1})
            if self.s3_enabled:
                step = "s3_head_bucket"
                head = self._timed(step, self._s3_head, None)
                if head["status"] == 404:
                    raise MlflowError(
                        "not_found",
                        "bucket %r does not exist" % self.params["s3_bucket"],
                        endpoint="S3 s3://%s" % self.params["s3_bucket"],
                        method="HEAD",
                    )
        except MlflowError as exc:
            return False, self._finish(), exc, step
        return True, self._finish(), None, None

    # -- the round trip ----------------------------------------------------------------------------------

    def run(self):
        """Returns (ok, result, error, failed_step); cleanup (if enabled) has run either way."""
        self.created = dict(experiment=False, run=False, artifact=False)
        self.artifact_relative = None
        error = None
        step = None
        try:
            for step, action in (
                ("create_experiment", self._create_experiment),
                ("create_run", self._create_run),
                ("log_batch", self._log_batch),
                ("upload_artifact", self._upload_artifact),
                ("download_artifact", self._download_artifact),
                ("s3_head_object", self._s3_head_object),
                ("get_run", self._get_run),
            ):
                action(step)
        except MlflowError as exc:
            error = exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            error = MlflowError(
                "invalid_response", "unexpected response shape (%s: %s)" % (type(exc).__name__, exc), endpoint=step
            )
        if self.params.get("cleanup", True):
            self._cleanup(self.created, self.artifact_relative)
        else:
            self.result["cleaned_up"] = False
            if any(self.created.values()):
                self.result["cleanup"] = dict((name, "kept") for name, made in self.created.items() if made)
        return error is None, self._finish(), error, (step if error is not None else None)

    def _create_experiment(self, step):
        body = self._timed(step, self.client.api, "POST", "experiments/create", {"name": self.experiment_name})
        self.result["experiment_id"] = str(body["experiment_id"])
        self.created["experiment"] = True

    def _create_run(self, step):
        self.start_ms = int(time.time() * 1000)
        body = self._timed(
            step,
            self.client.api,
            "POST",
            "runs/create",
            {
                "experiment_id": self.result["experiment_id"],
                "start_time": self.start_ms,
                "run_name": "roundtrip-%s" % self.token,
                "tags": [{"key": "carbon254.mlflow.roundtrip", "value": "true"}],
            },
        )
        info = body["run"]["info"]
        self.result["run_id"] = info.get("run_id") or info["run_uuid"]
        self.created["run"] = True
        artifact_uri = info.get("artifact_uri")
        self.result["artifact_uri"] = artifact_uri
        root = proxied_artifact_root(artifact_uri)
        if root is None:
            raise MlflowError(
                "invalid_response",
                "the run's artifact_uri is %r, not a proxied mlflow-artifacts: URI; start the server with "
                "--serve-artifacts (and --artifacts-destination)" % artifact_uri,
                endpoint="/api/2.0/mlflow/runs/create",
                method="POST",
            )
        self.artifact_relative = "%s/%s" % (root, self.artifact_name) if root else self.artifact_name
        self.result["artifact_path"] = self.artifact_relative

    def _log_batch(self, step):
        # One runs/log-batch call: params are strings, metrics doubles with a timestamp (REST API reference,
        # https://mlflow.org/docs/latest/api_reference/rest-api.html#log-batch).
        self.param_value = "v-%s" % self.token
        self.metric_value = self.rng.randint(1, 10**6) / 1024.0  # exactly representable as a double
        self._timed(
            step,
            self.client.api,
            "POST",
            "runs/log-batch",
            {
                "run_id": self.result["run_id"],
                "params": [{"key": PARAM_KEY, "value": self.param_value}],
                "metrics": [{"key": METRIC_KEY, "value": self.metric_value, "timestamp": self.start_ms, "step": 0}],
            },
        )

    def _upload_artifact(self, step):
        self.payload = os.urandom(max(0, self.params["artifact_size"]))
        self.result["artifact_sha256"] = hashlib.sha256(self.payload).hexdigest()
        self.result["artifact_size"] = len(self.payload)
        self.created["artifact"] = True  # a failed PUT may still have stored something: always try to delete
        # The proxied artifact API answers the PUT with 200 and an empty body (measured on 3.17.2).
        try:
            self._timed(
                step, self.client.request, "PUT", self._artifact_url_path(self.artifact_relative), data=self.payload
            )
        except MlflowError as exc:
            if exc.kind != "http_status" or exc.status_code is None or exc.status_code < 500:
                raise
            # MLflow 3.17.2 answers a failed write to its artifact store (wrong S3 credentials, unknown bucket,
            # unreachable endpoint) with Flask's bare HTML 500 page; the cause is only in the server's log.
            raise MlflowError(
                "artifact_store",
                "%s; the server could not write the artifact to its artifact store (--artifacts-destination): "
                "check the store's endpoint, bucket and credentials the server uses, its log names the cause"
                % exc.detail,
                endpoint=exc.endpoint,
                method=exc.method,
                url=exc.url,
                status_code=exc.status_code,
                latency_ms=exc.latency_ms,
            ) from None

    def _download_artifact(self, step):
        path = self._artifact_url_path(self.artifact_relative)
        response = self._timed(step, self.client.request, "GET", path)
        got = hashlib.sha256(response.body).hexdigest()
        if got != self.result["artifact_sha256"]:
            raise MlflowError(
                "checksum_mismatch",
                "uploaded %d bytes with sha256 %s, downloaded %d bytes with sha256 %s"
                % (len(self.payload), self.result["artifact_sha256"], len(response.body), got),
                endpoint=path,
                method="GET",
                url=response.url,
                status_code=response.status,
            )

    def _s3_head_object(self, step):
        if not self.s3_enabled:
            return
        bucket = self.params["s3_bucket"]
        key = s3_key(self.params.get("s3_prefix"), self.artifact_relative)
        head = self._timed(step, self._s3_head, key)
        self.result["s3_object"] = dict(bucket=bucket, key=key, size=head["size"], etag=head["etag"], deleted=None)
        where = dict(endpoint="S3 s3://%s/%s" % (bucket, key), method="HEAD")
        if head["status"] == 404:
            raise MlflowError(
                "not_found",
                "the object is not in the bucket after the upload; does s3_prefix match the path of the server's "
                "--artifacts-destination?",
                **where,
            )
        if head["size"] is not None and head["size"] != len(self.payload):
            raise MlflowError(
                "value_mismatch",
                "the object has %s bytes, %d were uploaded" % (head["size"], len(self.payload)),
                **where,
            )

    def _get_run(self, step):
        body = self._timed(step, self.client.api, "GET", "runs/get", query={"run_id": self.result["run_id"]})
        data = body.get("run", {}).get("data", {})
        params = dict((item.get("key"), item.get("value")) for item in data.get("params", []))
        metrics = dict((item.get("key"), item.get("value")) for item in data.get("metrics", []))
        problems = []
        if params.get(PARAM_KEY) != self.param_value:
            problems.append("param %s is %r, logged %r" % (PARAM_KEY, params.get(PARAM_KEY), self.param_value))
        read = metrics.get(METRIC_KEY)
        if not isinstance(read, (int, float)) or not math.isclose(read, self.metric_value, rel_tol=1e-12):
            problems.append("metric %s is %r, logged %r" % (METRIC_KEY, read, self.metric_value))
        if problems:
            raise MlflowError("value_mismatch", "; ".join(problems), endpoint="/api/2.0/mlflow/runs/get", method="GET")

    def _cleanup(self, created, artifact_relative):
        summary = {}
        ok = True
        if created["artifact"] and artifact_relative:
            try:
                self._timed(
                    "delete_artifact", self.client.request, "DELETE", self._artifact_url_path(artifact_relative)
                )
                summary["artifact"] = "deleted"
            except MlflowError as exc:
                summary["artifact"] = exc.message
                ok = False
            obj = self.result.get("s3_object")
            if obj is not None and summary["artifact"] == "deleted":
                try:
                    head = self._timed("s3_head_deleted", self._s3_head, obj["key"])
                    obj["deleted"] = head["status"] == 404
                except MlflowError as exc:
                    obj["deleted"] = None
                    summary["artifact"] = "deleted through MLflow, but the S3 check failed: %s" % exc.message
                    ok = False
                if obj["deleted"] is False:
                    summary["artifact"] = "DELETE answered, but s3://%s/%s is still in the bucket" % (
                        obj["bucket"],
                        obj["key"],
                    )
                    ok = False
        if created["run"]:
            try:
                self._timed("delete_run", self.client.api, "POST", "runs/delete", {"run_id": self.result["run_id"]})
                summary["run"] = "deleted"
            except MlflowError as exc:
                summary["run"] = exc.message
                ok = False
        if created["experiment"]:
            try:
                self._timed(
                    "delete_experiment",
                    self.client.api,
                    "POST",
                    "experiments/delete",
                    {"experiment_id": self.result["experiment_id"]},
                )
                summary["experiment"] = "deleted"
            except MlflowError as exc:
                summary["experiment"] = exc.message
                ok = False
        if summary:
            self.result["cleanup"] = summary
        self.result["cleaned_up"] = ok

    def _finish(self):
        self.timings["total"] = int((self.clock() - self.started) * 1000)
        self.result["timings"] = self.timings
        self.result.setdefault("cleaned_up", False)
        return self.result


def cleanup_sentence(result, cleanup_enabled):
    summary = result.get("cleanup")
    if not summary:
        return "Nothing was created, nothing to clean up."
    if not cleanup_enabled:
        return "Cleanup skipped (cleanup=false): kept %s." % ", ".join(sorted(summary))
    if result.get("cleaned_up"):
        return "Cleanup worked: deleted %s." % ", ".join(
            name for name in ("artifact", "run", "experiment") if name in summary
        )
    failed = ["%s (%s)" % (name, value) for name, value in sorted(summary.items()) if value != "deleted"]
    return "Cleanup FAILED for %s; experiment_id=%s run_id=%s may be left behind." % (
        "; ".join(failed),
        result.get("experiment_id"),
        result.get("run_id"),
    )


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_together=[list(S3_OPTIONS)],
    )
    if module.params["artifact_size"] < 0:
        module.fail_json(msg="artifact_size must be 0 or more, got %d" % module.params["artifact_size"])
    client = MlflowClient.from_params(module.params)
    trip = RoundTrip(client, module.params)
    if module.check_mode:
        ok, result, error, step = trip.probe()
        result["changed"] = False
        if not ok:
            module.fail_json(
                msg="Check mode probe %s of MLflow at %s failed: %s" % (step, client.base_url, error.message),
                failure_kind=error.kind,
                failed_step=step,
                **result,
            )
        result["msg"] = "check mode: the server answers; a real run would %s" % "; ".join(result["planned_steps"])
        module.exit_json(**result)
    ok, result, error, step = trip.run()
    cleanup_enabled = module.params["cleanup"]
    result["changed"] = not cleanup_enabled and bool(result.get("cleanup"))
    if not ok:
        module.fail_json(
            msg="MLflow round trip against %s failed at step %s: %s. %s"
            % (client.base_url, step, error.message, cleanup_sentence(result, cleanup_enabled)),
            failure_kind=error.kind,
            failed_step=step,
            **result,
        )
    if cleanup_enabled and not result["cleaned_up"]:
        module.fail_json(
            msg="MLflow round trip against %s passed, but %s"
            % (client.base_url, cleanup_sentence(result, cleanup_enabled)),
            failure_kind="cleanup",
            failed_step="cleanup",
            **result,
        )
    result["msg"] = "round trip ok in %d ms. %s" % (
        result["timings"]["total"],
        cleanup_sentence(result, cleanup_enabled),
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
