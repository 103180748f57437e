# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""S3 checks of the verification modules through botocore (the execution environment has it for amazon.aws):
botocore signs, this classifies the failures the way the MLflow client does (mlflow_client.MlflowError)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import (
    TIMEOUT_DETAIL,
    USER_AGENT,
    MlflowError,
    classify_network_error,
    short,
)

try:
    import botocore.config
    import botocore.exceptions
    import botocore.session

    HAS_BOTOCORE = True
    BOTOCORE_IMPORT_ERROR = None
except ImportError as exc:  # only the S3 options need it
    HAS_BOTOCORE = False
    BOTOCORE_IMPORT_ERROR = str(exc)


def mlflow_s3_argument_spec():
    """mlflow_roundtrip's S3 options (where its artifacts must land); documented by the carbon254.mlflow.mlflow_s3 doc fragment."""
    return dict(
        s3_endpoint_url=dict(type="str"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default=""),
        s3_access_key=dict(type="str", no_log=False),
        s3_secret_key=dict(type="str", no_log=True),
        s3_region=dict(type="str", default="us-east-1"),
        s3_validate_certs=dict(type="bool", default=True),
        s3_ca_path=dict(type="path"),
    )


def s3_key(prefix, relative_path):
    prefix = (prefix or "").strip("/")
    return "%s/%s" % (prefix, relative_path) if prefix else relative_path


def _s3_client(endpoint_url, *, access_key, secret_key, region, validate_certs, ca_path, timeout):
    if not HAS_BOTOCORE:
        raise MlflowError("connection", "the S3 checks need the botocore Python library: %s" % BOTOCORE_IMPORT_ERROR)
    key = (endpoint_url, access_key, secret_key, region, validate_certs, ca_path, timeout)
    if key not in _S3_CLIENTS:
        session = botocore.session.get_session()
        _S3_CLIENTS[key] = session.create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            verify=(ca_path or True) if validate_certs else False,
            config=botocore.config.Config(
                s3={"addressing_style": "path"},  # what MinIO and SeaweedFS serve
                connect_timeout=timeout,
                read_timeout=timeout,
                retries={"max_attempts": 1},  # the modules retry on their own terms
                user_agent_extra=USER_AGENT,
            ),
        )
    return _S3_CLIENTS[key]


_S3_CLIENTS = {}


def _classify_botocore_error(exc):
    """(kind, detail) for a botocore exception that is not an S3 error answer."""
    if isinstance(exc, botocore.exceptions.SSLError):
        return "tls", short(exc)
    if isinstance(exc, (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError)):
        return "timeout", TIMEOUT_DETAIL
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        cause = getattr(exc, "kwargs", {}).get("error")
        return classify_network_error(cause if isinstance(cause, BaseException) else exc)
    return classify_network_error(exc)


def s3_head(
    endpoint_url,
    bucket,
    key,
    *,
    access_key,
    secret_key,
    region="us-east-1",
    validate_certs=True,
    ca_path=None,
    timeout=10.0,
    clock=time.monotonic,
):
    """HEAD an object (key None: the bucket). Returns dict(status, size, etag, latency_ms); 404 gives status 404.

    Other failures raise MlflowError (401/403 from S3 are reported as http_status with S3's error code).
    """
    endpoint = "S3 s3://%s/%s" % (bucket, key or "")
    url = "%s/%s/%s" % (endpoint_url.rstrip("/"), bucket, key or "")
    start = clock()
    try:
        client = _s3_client(
            endpoint_url,
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            validate_certs=validate_certs,
            ca_path=ca_path,
            timeout=timeout,
        )
        answer = client.head_bucket(Bucket=bucket) if key is None else client.head_object(Bucket=bucket, Key=key)
    except MlflowError:
        raise
    except Exception as exc:  # every failure is classified, none escapes raw
        latency = int((clock() - start) * 1000)
        if HAS_BOTOCORE and isinstance(exc, botocore.exceptions.ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code")
            if status == 404:
                return dict(status=404, size=None, etag=None, latency_ms=latency)
            raise MlflowError(
                "http_status",
                "HTTP %s%s from the S3 endpoint" % (status, " (%s)" % code if code and code != str(status) else ""),
                endpoint=endpoint,
                method="HEAD",
                url=url,
                status_code=status,
                latency_ms=latency,
            ) from None
        kind, detail = _classify_botocore_error(exc) if HAS_BOTOCORE else classify_network_error(exc)
        raise MlflowError(kind, detail, endpoint=endpoint, method="HEAD", url=url, latency_ms=latency) from None
    latency = int((clock() - start) * 1000)
    size = answer.get("ContentLength")
    return dict(
        status=answer.get("ResponseMetadata", {}).get("HTTPStatusCode", 200),
        size=int(size) if key is not None and size is not None else None,
        etag=(answer.get("ETag") or "").strip('"') or None,
        latency_ms=latency,
    )
