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
  - Reads C(/api/3.0/mlflow/server-info) as the MLflow client does. When the server advertises presigned
    transfers there (C(multipart_downloads_enabled), C(multipart_uploads_enabled); MLflow 3.1x does whenever it
    proxies an S3 artifact store) and O(presigned_transfers=true), it takes the path MLflow clients then take - it
    asks for a presigned download URL of the artifact (C(GET /api/2.0/mlflow-artifacts/presigned/...)) and fetches
    it from this host, and uploads a second artifact through a presigned multipart upload (C(mpu/create), the part
    C(PUT) to S3, C(mpu/complete)) and reads it back. Those URLs are signed for the S3 endpoint the server uses;
    when this host cannot reach it, the module fails naming that endpoint and what fixes it.
  - When the S3 options are given, also checks with a signed S3 C(HEAD Object) (botocore) that the artifact really
    is in the bucket at O(s3_prefix)/<experiment_id>/<run_id>/artifacts/<file> with the uploaded size, and after
    the cleanup that it is gone.
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
        C(max_results=1), C(GET /api/3.0/mlflow/server-info), and an S3 C(HEAD Bucket) when the S3 options are
        given); nothing is created and RV(planned_steps) lists what a real run would do.
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
  presigned_transfers:
    description:
      - Whether the clients this check stands for transfer artifacts directly with S3 when the server advertises
        presigned transfers, as every MLflow client does unless C(MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD) and
        C(MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD) are V(false) in its environment.
      - V(true) checks those transfers from this host (see the description) and fails when they do not work.
      - V(false) checks the proxied path only, the one clients with both variables set to V(false) take; what the
        server advertises is still reported in RV(presigned). The collection's playbooks pass
        C(mlflow_client_presigned_transfers) here.
    type: bool
    default: true
  presigned_validate_certs:
    description:
      - Verify the TLS certificate of the S3 endpoint a presigned URL points at (an MLflow client verifies it unless
        C(MLFLOW_S3_IGNORE_TLS) is set).
    type: bool
    default: true
  presigned_ca_path:
    description:
      - PEM file with the certificate authorities to trust for an C(https) presigned URL, like a client's
        C(REQUESTS_CA_BUNDLE). Defaults to O(s3_ca_path).
    type: path
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
  - The S3 check needs the C(botocore) Python library on the host running the module; the rest needs nothing
    beyond ansible-core.
  - The presigned URLs the server hands out are credentials for a few minutes; they never appear in the module's
    output, only the origin (scheme, host and port) they point at.
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

- name: Clients are configured with MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD/UPLOAD=false, so check the proxied path
  carbon254.mlflow.mlflow_roundtrip:
    url: https://mlflow.254carbon.com
    presigned_transfers: false

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
  sample: {create_experiment: 31, create_run: 25, log_batch: 18, server_info: 4, upload_artifact: 60,
           download_artifact: 22, presigned_download: 12, presigned_upload: 45, s3_head_object: 5, get_run: 14,
           delete_presigned_artifact: 20, delete_artifact: 30, s3_head_deleted: 4, delete_run: 12,
           delete_experiment: 11, total: 240}
server_info:
  description:
    - What C(/api/3.0/mlflow/server-info) advertises about artifact transfers (empty when the server has no such
      endpoint, as before MLflow 3.x).
  returned: when the server was reached
  type: dict
  sample: {multipart_downloads_enabled: true, multipart_uploads_enabled: true}
presigned_artifact_path:
  description: The path of the artifact uploaded through the presigned multipart upload, below the proxied root.
  returned: when that upload was started
  type: str
  sample: 7/5d1f0f8a2b6a4f5e9c0e2d7b1a3c4e5f/artifacts/roundtrip-3f9a1c2e-presigned.bin
presigned:
  description:
    - The presigned transfer checks - what was advertised, whether it was checked (O(presigned_transfers)), the
      origin of the S3 endpoint the presigned URLs point at, and the result of each direction (V(ok),
      V(not advertised), V(not checked) or the error).
  returned: when the server_info step ran
  type: dict
  sample: {downloads_advertised: true, uploads_advertised: true, checked: true, endpoint: "http://127.0.0.1:9000",
           download: ok, upload: ok}
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
      upload with a 5xx, so it could not write to its artifact store), V(presigned_transfer) (a presigned URL the
      server handed out did not work from this host), or V(cleanup) when only the cleanup failed.
  returned: failure
  type: str
  sample: checksum_mismatch
failed_step:
  description: The step that failed.
  returned: failure
  type: str
  sample: download_artifact
"""

import contextlib
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
    KINDS,
    MlflowClient,
    MlflowError,
    mlflow_connection_argument_spec,
    presigned_request,
    s3_head,
    s3_key,
    url_origin,
)

ARTIFACT_API = "/api/2.0/mlflow-artifacts/artifacts/"
# MLflow 3.17.2's artifact transfer endpoints beside the proxied one (mlflow/server/handlers.py, and the client's
# mlflow/store/artifact/http_artifact_repo.py and mlflow_artifacts_repo.py, which decide from /server-info).
SERVER_INFO = "/api/3.0/mlflow/server-info"
PRESIGNED_API = "/api/2.0/mlflow-artifacts/presigned/"
MPU_API = "/api/2.0/mlflow-artifacts/mpu/"
DOWNLOADS_FLAG = "multipart_downloads_enabled"
UPLOADS_FLAG = "multipart_uploads_enabled"
PROXY_DOWNLOAD_ENV = "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"
PROXY_UPLOAD_ENV = "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"
PARAM_KEY = "roundtrip_param"
METRIC_KEY = "roundtrip_metric"
S3_OPTIONS = ("s3_endpoint_url", "s3_bucket", "s3_access_key", "s3_secret_key")


def argument_spec():
    spec = mlflow_connection_argument_spec()
    spec.update(
        experiment_prefix=dict(type="str", default="carbon254-roundtrip-"),
        artifact_size=dict(type="int", default=4096),
        cleanup=dict(type="bool", default=True),
        presigned_transfers=dict(type="bool", default=True),
        presigned_validate_certs=dict(type="bool", default=True),
        presigned_ca_path=dict(type="path"),
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

    # -- presigned transfers (what MLflow clients do when /server-info advertises them) -----------------------

    def _server_info(self, step):
        try:
            body = self._timed(step, self.client.request, "GET", SERVER_INFO).json()
        except MlflowError as exc:
            if exc.kind != "http_status" or exc.status_code != 404:
                raise
            body = {}  # no /server-info (MLflow 2.x): clients take the proxied path
        except ValueError:
            raise MlflowError("invalid_response", "not JSON", endpoint=SERVER_INFO, method="GET") from None
        info = dict((flag, bool(body.get(flag, False))) for flag in (DOWNLOADS_FLAG, UPLOADS_FLAG) if flag in body)
        self.result["server_info"] = info
        self.result["presigned"] = dict(
            downloads_advertised=info.get(DOWNLOADS_FLAG, False),
            uploads_advertised=info.get(UPLOADS_FLAG, False),
            checked=bool(self.params.get("presigned_transfers", True)),
            endpoint=None,
            download="not reached" if info.get(DOWNLOADS_FLAG) else "not advertised",
            upload="not reached" if info.get(UPLOADS_FLAG) else "not advertised",
        )

    def _presigned_wanted(self, direction):
        presigned = self.result.get("presigned") or {}
        if not presigned.get("%ss_advertised" % direction):
            return False
        if not presigned.get("checked"):
            presigned[direction] = "not checked (presigned_transfers=false)"
            return False
        return True

    def _presigned_call(self, method, url, **kwargs):
        self.result["presigned"]["endpoint"] = url_origin(url)
        p = self.params
        return presigned_request(
            method,
            url,
            timeout=p.get("timeout") or 10.0,
            validate_certs=p.get("presigned_validate_certs", True),
            ca_path=p.get("presigned_ca_path") or p.get("s3_ca_path"),
            **kwargs,
        )

    def _presigned_error(self, exc, direction, url):
        variable = PROXY_DOWNLOAD_ENV if direction == "download" else PROXY_UPLOAD_ENV
        flag = DOWNLOADS_FLAG if direction == "download" else UPLOADS_FLAG
        calls = (
            "mlflow.pyfunc.load_model() and mlflow.artifacts.download_artifacts() hang retrying"
            if direction == "download"
            else "uploads of artifacts from MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE (500 MiB) up fail"
        )
        what = "%s: %s" % (KINDS.get(exc.kind, exc.kind), exc.detail)
        self.result["presigned"][direction] = what
        return MlflowError(
            "presigned_transfer",
            "%s. The server advertises %s in %s, so MLflow clients %s artifacts directly with %s (the S3 endpoint "
            "the server itself uses, its MLFLOW_S3_ENDPOINT_URL), not through the server; from this host that "
            "fails, and a client here: %s. Either make %s reachable for clients (an S3 endpoint both the pods and "
            "clients reach, set as mlflow_k8s_s3_endpoint_url), or keep clients on the proxied path with %s=false "
            "in their environment (the collection writes it into every client configuration when "
            "mlflow_client_presigned_transfers is false; this module's option presigned_transfers=false)"
            % (what, flag, SERVER_INFO, direction, url_origin(url), calls, url_origin(url), variable),
            endpoint=exc.endpoint,
            method=exc.method,
            url=exc.url,
            status_code=exc.status_code,
            latency_ms=exc.latency_ms,
        )

    def _presigned_download(self, step):
        if not self._presigned_wanted("download"):
            return
        start = self.clock()
        try:
            answer = self.client.request("GET", PRESIGNED_API + quote(self.artifact_relative, safe="/")).json()
            url = answer["url"]
            headers = dict(answer.get("headers") or {})
            size = answer.get("file_size")
            if size is None:
                # The client then falls back to the proxied download, which download_artifact checked.
                self.result["presigned"]["download"] = "no file_size given: clients use the proxied download"
                return
            if size:
                headers["Range"] = "bytes=0-%d" % (int(size) - 1)  # the client fetches ranges of the object
            try:
                response = self._presigned_call("GET", url, headers=headers)
            except MlflowError as exc:
                raise self._presigned_error(exc, "download", url) from None
        finally:
            self.timings[step] = int((self.clock() - start) * 1000)
        got = hashlib.sha256(response.body).hexdigest()
        if got != self.result["artifact_sha256"]:
            raise MlflowError(
                "checksum_mismatch",
                "downloaded %d bytes with sha256 %s through the presigned URL, uploaded %d with sha256 %s"
                % (len(response.body), got, len(self.payload), self.result["artifact_sha256"]),
                endpoint=response.url,
                method="GET",
            )
        self.result["presigned"]["download"] = "ok"

    def _presigned_upload(self, step):
        if not self._presigned_wanted("upload"):
            return
        name = "roundtrip-%s-presigned.bin" % self.token
        root = self.artifact_relative.rsplit("/", 1)[0] if "/" in self.artifact_relative else ""
        relative = "%s/%s" % (root, name) if root else name
        payload = os.urandom(max(1, self.params["artifact_size"]))
        digest = hashlib.sha256(payload).hexdigest()
        where = quote(root, safe="/")
        start = self.clock()
        try:
            # As the client's _try_multipart_upload: create (the server starts an S3 multipart upload and signs a
            # URL per part), PUT each part to S3 from here, complete with the parts' ETags (abort on failure).
            create = self.client.request(
                "POST", MPU_API + "create/" + where, json_body={"path": name, "num_parts": 1}
            ).json()
            self.extra_artifacts.append(relative)
            self.result["presigned_artifact_path"] = relative
            credential = create["credentials"][0]
            try:
                put = self._presigned_call(
                    "PUT", credential["url"], data=payload, headers=dict(credential.get("headers") or {})
                )
            except MlflowError as exc:
                self._abort_upload(where, name, create.get("upload_id"))
                raise self._presigned_error(exc, "upload", credential["url"]) from None
            etag = dict((k.lower(), v) for k, v in put.headers.items()).get("etag", "")
            self.client.request(
                "POST",
                MPU_API + "complete/" + where,
                json_body={
                    "path": name,
                    "upload_id": create.get("upload_id"),
                    "parts": [
                        {"part_number": credential.get("part_number", 1), "etag": etag, "url": credential["url"]}
                    ],
                },
            )
            back = self.client.request("GET", self._artifact_url_path(relative))
        finally:
            self.timings[step] = int((self.clock() - start) * 1000)
        got = hashlib.sha256(back.body).hexdigest()
        if got != digest:
            raise MlflowError(
                "checksum_mismatch",
                "uploaded %d bytes with sha256 %s through a presigned multipart upload, the server returned %d "
                "bytes with sha256 %s" % (len(payload), digest, len(back.body), got),
                endpoint=self._artifact_url_path(relative),
                method="GET",
            )
        self.result["presigned"]["upload"] = "ok"

    def _abort_upload(self, where, name, upload_id):
        # A failed abort leaves an incomplete upload that the bucket's lifecycle rule (minio_bucket) removes.
        with contextlib.suppress(MlflowError):
            self.client.request("POST", MPU_API + "abort/" + where, json_body={"path": name, "upload_id": upload_id})

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
