#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)

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
  - carbon254.mlflow.mlflow_s3
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_client import (
    MlflowClient,
    mlflow_connection_argument_spec,
)
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_roundtrip import (
    S3_OPTIONS,
    RoundTrip,
    cleanup_sentence,
)
from ansible_collections.carbon254.mlflow.plugins.module_utils.mlflow_s3 import mlflow_s3_argument_spec


def argument_spec():
    spec = mlflow_connection_argument_spec()
    spec.update(
        experiment_prefix=dict(type="str", default="carbon254-roundtrip-"),
        artifact_size=dict(type="int", default=4096),
        cleanup=dict(type="bool", default=True),
        presigned_transfers=dict(type="bool", default=True),
        presigned_validate_certs=dict(type="bool", default=True),
        presigned_ca_path=dict(type="path"),
    )
    spec.update(mlflow_s3_argument_spec())
    return spec


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
