# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How a verification module reaches the S3 store behind MLflow's proxied artifacts, to see objects land there.
    # Keep in sync with plugins/module_utils/mlflow_s3.py:mlflow_s3_argument_spec().
    DOCUMENTATION = r"""
options:
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
"""
