# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Requests to the presigned S3 URLs MLflow hands out (its direct artifact transfers): plain HTTP to wherever the
server signed the URL for, with none of our credentials, and errors that never show the signature."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import os
import re
import time
from urllib.error import HTTPError
from urllib.parse import quote, urlsplit

from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import (
    KINDS,
    USER_AGENT,
    MlflowError,
    Response,
    classify_network_error,
    open_request,
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


def url_origin(url):
    """scheme://host:port of a URL, without path and query: a presigned URL's query is a credential."""
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc.rsplit("@", 1)[-1])


def presigned_request(method, url, *, headers=None, data=None, timeout=10.0, validate_certs=True, ca_path=None,
                      clock=time.monotonic):  # fmt: skip
    """Send one request to a presigned URL as an MLflow client does (no credentials of ours).

    Returns a Response for 2xx; raises MlflowError otherwise. Neither the URL's query (its signature) nor the
    headers appear in an error: the error names the URL's origin and path only.
    """
    parts = urlsplit(url)
    shown = "%s%s" % (url_origin(url), parts.path)
    where = dict(endpoint=shown, method=method, url=url_origin(url))
    start = clock()
    try:
        response = open_request(
            url,
            method=method,
            data=data,
            headers=dict(headers or {}),
            timeout=timeout,
            validate_certs=validate_certs,
            ca_path=ca_path,
            http_agent=USER_AGENT,
            follow_redirects="none",
            use_netrc=False,
        )
        try:
            body = response.read()
            status = response.getcode()
            response_headers = dict(response.headers.items())
        finally:
            response.close()
    except HTTPError as exc:
        latency = int((clock() - start) * 1000)
        try:
            text = exc.read() or b""
        except Exception:  # a body we cannot read is reported as empty
            text = b""
        code = re.search(rb"<Code>([^<]+)</Code>", text)
        raise MlflowError(
            "http_status",
            "HTTP %s%s from the presigned URL" % (exc.code, " (%s)" % code.group(1).decode() if code else ""),
            status_code=exc.code,
            latency_ms=latency,
            **where,
        ) from None
    except Exception as exc:  # every network failure is classified
        latency = int((clock() - start) * 1000)
        kind, detail = classify_network_error(exc)
        if kind == "timeout":
            detail = "no answer within %g s (request timeout)" % timeout
        raise MlflowError(kind, detail, latency_ms=latency, **where) from exc
    return Response(status, body, response_headers, int((clock() - start) * 1000), shown)


class PresignedSteps(object):
    """The round trip's presigned-transfer steps (what MLflow clients do when /server-info advertises them), as a
    mixin of mlflow_roundtrip.RoundTrip: it uses the round trip's client, params, result, timings, _timed(),
    artifact_relative, payload, token, extra_artifacts and _artifact_url_path()."""

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
