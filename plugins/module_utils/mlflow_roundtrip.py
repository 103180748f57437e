# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""The logic of carbon254.mlflow.mlflow_roundtrip: a run logged, its artifact written and read back through the
server the way MLflow clients do, found in the bucket, and everything cleaned up again."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import math
import os
import random
import time
import uuid
from urllib.parse import quote

from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import MlflowError
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_presigned import ARTIFACT_API, PresignedSteps
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_s3 import s3_head, s3_key

PARAM_KEY = "roundtrip_param"
METRIC_KEY = "roundtrip_metric"
S3_OPTIONS = ("s3_endpoint_url", "s3_bucket", "s3_access_key", "s3_secret_key")


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


class RoundTrip(PresignedSteps):
    """One verification run: an experiment, a run with a param and a metric, an artifact up and down through the
    server (and through presigned S3 URLs when the server advertises them: PresignedSteps), the object in the bucket,
    the run read back, everything cleaned up. `probe()` is the read-only check-mode version."""

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
        if self.params.get("presigned_transfers", True):
            steps.append(
                "where /api/3.0/mlflow/server-info advertises presigned transfers: download through the presigned "
                "URL and upload a second artifact through a presigned multipart upload, from this host"
            )
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
            step = "server_info"
            self._server_info(step)
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
        self.extra_artifacts = []  # further artifact paths to delete (the presigned upload's)
        error = None
        step = None
        try:
            for step, action in (
                ("create_experiment", self._create_experiment),
                ("create_run", self._create_run),
                ("log_batch", self._log_batch),
                ("server_info", self._server_info),
                ("upload_artifact", self._upload_artifact),
                ("download_artifact", self._download_artifact),
                ("presigned_download", self._presigned_download),
                ("presigned_upload", self._presigned_upload),
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
            self._cleanup(self.created, self.artifact_relative, self.extra_artifacts)
        else:
            self.result["cleaned_up"] = False
            if any(self.created.values()):
                self.result["cleanup"] = dict((name, "kept") for name, made in self.created.items() if made)
                if self.extra_artifacts:
                    self.result["cleanup"]["presigned_artifact"] = "kept"
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

    def _cleanup(self, created, artifact_relative, extra_artifacts=()):
        summary = {}
        ok = True
        for relative in extra_artifacts:
            try:
                self._timed(
                    "delete_presigned_artifact", self.client.request, "DELETE", self._artifact_url_path(relative)
                )
                summary["presigned_artifact"] = "deleted"
            except MlflowError as exc:
                summary["presigned_artifact"] = exc.message
                ok = False
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
            name for name in ("presigned_artifact", "artifact", "run", "experiment") if name in summary
        )
    failed = ["%s (%s)" % (name, value) for name, value in sorted(summary.items()) if value != "deleted"]
    return "Cleanup FAILED for %s; experiment_id=%s run_id=%s may be left behind." % (
        "; ".join(failed),
        result.get("experiment_id"),
        result.get("run_id"),
    )
