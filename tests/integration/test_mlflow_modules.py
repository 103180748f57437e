"""carbon254.mlflow.mlflow_health and mlflow_roundtrip against a real MLflow 3.17.2 server.

The server runs as a plain process on 127.0.0.1 (not in the Kubernetes sandbox): sandbox PostgreSQL as backend
store (a throwaway database and role), sandbox S3 as artifact destination (a throwaway bucket, below a prefix),
--expose-prometheus and an explicit --allowed-hosts list as our deployments use (harness/modules.py starts it and
runs the play). The modules run through ansible-playbook with this checkout as the collection
(tests/integration/playbooks/mlflow_modules.yml), and what they claim is checked independently: PostgreSQL rows,
S3 objects (boto3), the REST API.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from harness.ansible import MLFLOW_VERSION
from harness.modules import (
    HEALTH,
    ROUNDTRIP,
    SERVICE_HOST,
    experiments,
    http,
    mlflow_server,
    objects,
    play,
    s3_vars,
    task,
)
from harness.stores import admin_conn

pytestmark = pytest.mark.integration
PASSWORD = "pw-Not-Checked-By-This-Server-7781"  # basic-auth is off: MLflow ignores it, but it must never be logged
# Always exposed by MLflow 3.17.2 with --expose-prometheus, even before the first API request (seen on /metrics).
ALWAYS_EXPOSED = ["mlflow_exporter_info", "mlflow_otlp_request_duration_seconds"]


@pytest.fixture(scope="module")
def mlflow(sandbox_facts, tmp_path_factory):
    """A real MLflow 3.17.2 server on its own database, bucket and port; removed again afterwards."""
    with mlflow_server(sandbox_facts, tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


def test_health_and_roundtrip_through_a_port_forward_host(mlflow):
    """Both modules pass, send the allowed Host, leave nothing behind, and report changed=0 twice over."""
    before = experiments(mlflow)
    result = play(mlflow, host_header=SERVICE_HOST, expected_version=MLFLOW_VERSION, expected_metrics=ALWAYS_EXPOSED,
                  **s3_vars(mlflow))  # fmt: skip
    assert result.rc == 0, result.output[-5000:]
    assert result.changed == 0
    health = task(result, HEALTH)
    assert health["version"] == MLFLOW_VERSION
    assert set(ALWAYS_EXPOSED) <= set(health["metrics_found"])
    assert {name: e["status_code"] for name, e in health["endpoints"].items()} == {
        "health": 200,
        "version": 200,
        "metrics": 200,
    }

    trip = task(result, ROUNDTRIP)
    exp, run = trip["experiment_id"], trip["run_id"]
    assert trip["artifact_uri"] == f"mlflow-artifacts:/{exp}/{run}/artifacts"  # the layout the module relies on
    key = f"{mlflow['prefix']}/{exp}/{run}/artifacts/{trip['artifact_path'].rsplit('/', 1)[1]}"
    assert trip["s3_object"] == {"bucket": mlflow["bucket"], "key": key, "size": 2048, "etag": trip["s3_object"]["etag"],
                                 "deleted": True}  # fmt: skip
    assert trip["cleaned_up"] is True and trip["changed"] is False
    assert {"create_experiment", "upload_artifact", "s3_head_object", "delete_experiment", "total"} <= set(
        trip["timings"]
    )
    # MLflow 3.17.2 proxying an S3 store advertises presigned transfers (mlflow/mlflow#24341), so the module took
    # the clients' path too; here the server's S3 endpoint (127.0.0.1) is also this host's, so both worked.
    # Should a release stop advertising them, this fails and the collection's client settings need a second look.
    assert trip["server_info"] == {"multipart_downloads_enabled": True, "multipart_uploads_enabled": True}
    assert trip["presigned"] == {"downloads_advertised": True, "uploads_advertised": True, "checked": True,
                                 "endpoint": mlflow["facts"]["s3"]["endpoint_url"], "download": "ok",
                                 "upload": "ok"}  # fmt: skip
    assert {"presigned_download", "presigned_upload", "delete_presigned_artifact"} <= set(trip["timings"])

    # Independently: the experiment and run are deleted (soft, as MLflow does), the object is gone.
    after = experiments(mlflow)
    assert after[: len(before)] == before
    assert after[len(before) :] == [(trip["experiment_name"], "deleted")]
    status, body = http(f"{mlflow['url']}/api/2.0/mlflow/runs/get?run_id={run}")
    assert status == 200 and json.loads(body)["run"]["info"]["lifecycle_stage"] == "deleted"
    assert objects(mlflow) == []

    again = play(mlflow, host_header=SERVICE_HOST, **s3_vars(mlflow))
    assert again.rc == 0 and again.changed == 0, again.output[-3000:]
    assert task(again, ROUNDTRIP)["experiment_name"] != trip["experiment_name"]


def test_roundtrip_without_cleanup_leaves_the_real_object(mlflow):
    """With cleanup=false the artifact the module verified is really in the bucket, byte for byte."""
    result = play(mlflow, run_health=False, roundtrip_cleanup=False, **s3_vars(mlflow))
    assert result.rc == 0, result.output[-5000:]
    trip = task(result, ROUNDTRIP)
    assert trip["changed"] is True and result.changed == 1
    obj = mlflow["s3"].get_object(Bucket=mlflow["bucket"], Key=trip["s3_object"]["key"])
    data = obj["Body"].read()
    assert len(data) == 2048 and hashlib.sha256(data).hexdigest() == trip["artifact_sha256"]
    with admin_conn(mlflow["facts"], mlflow["db"]) as conn, conn.cursor() as cur:
        cur.execute("select key, value from params where run_uuid = %s", (trip["run_id"],))
        params = dict(cur.fetchall())
        cur.execute("select key from metrics where run_uuid = %s", (trip["run_id"],))
        metric_keys = [row[0] for row in cur.fetchall()]
    assert params["roundtrip_param"].startswith("v-") and metric_keys == ["roundtrip_metric"]
    # Clean up by hand, through the same API paths the module's cleanup uses.
    api = mlflow["url"]
    assert trip["cleanup"] == {"experiment": "kept", "run": "kept", "artifact": "kept", "presigned_artifact": "kept"}
    for path in (trip["artifact_path"], trip["presigned_artifact_path"]):
        assert http(f"{api}/api/2.0/mlflow-artifacts/artifacts/{path}", "DELETE")[0] == 200
    assert http(f"{api}/api/2.0/mlflow/runs/delete", "POST", {"run_id": trip["run_id"]})[0] == 200
    assert http(f"{api}/api/2.0/mlflow/experiments/delete", "POST", {"experiment_id": trip["experiment_id"]})[0] == 200
    assert objects(mlflow) == []


def test_check_mode_creates_nothing(mlflow):
    before, objs = experiments(mlflow), objects(mlflow)
    result = play(mlflow, check=True, **s3_vars(mlflow))
    assert result.rc == 0, result.output[-5000:]
    assert result.changed == 0
    trip = task(result, ROUNDTRIP)
    assert trip["experiment_id"] is None and trip["run_id"] is None
    assert trip["planned_steps"][0].startswith("create experiment carbon254-it-")
    assert set(trip["timings"]) == {"health", "search_experiments", "server_info", "s3_head_bucket", "total"}
    assert experiments(mlflow) == before
    assert objects(mlflow) == objs


def test_expected_version_mismatch_fails(mlflow):
    result = play(mlflow, run_roundtrip=False, expected_version="3.16.0", health_retries=0)
    assert result.rc != 0
    (message,) = result.failure_messages()
    assert "GET /version" in message and "version mismatch" in message
    assert f"'{MLFLOW_VERSION}'" in message and "'3.16.0'" in message
    assert task(result, HEALTH)["failure_kind"] == "version_mismatch"


def test_host_header_not_allowed_is_a_classified_403(mlflow):
    """The real server's --allowed-hosts check: /health and /version pass for any Host, /metrics and the API don't."""
    status, body = http(mlflow["url"] + "/metrics", host="evil.example:5000")
    assert (status, body) == (403, b"Invalid Host header - possible DNS rebinding attack detected")

    result = play(mlflow, host_header="evil.example:5000", health_retries=5)
    assert result.rc != 0
    health = task(result, HEALTH)
    assert health["failure_kind"] == "host_check" and health["failed_endpoint"] == "/metrics"
    assert health["attempts"] == 1  # a configuration error is not retried
    assert health["endpoints"]["health"]["ok"] and health["endpoints"]["metrics"]["status_code"] == 403
    (message,) = result.failure_messages()
    assert "Invalid Host header" in message and "'evil.example:5000'" in message and "--allowed-hosts" in message


def test_roundtrip_rejected_by_the_host_check_creates_nothing(mlflow):
    before = experiments(mlflow)
    result = play(mlflow, run_health=False, host_header="evil.example:5000")
    assert result.rc != 0
    trip = task(result, ROUNDTRIP)
    assert trip["failure_kind"] == "host_check" and trip["failed_step"] == "create_experiment"
    assert "Nothing was created" in trip["msg"]
    assert experiments(mlflow) == before


def test_wrong_s3_prefix_fails_and_cleans_up(mlflow):
    before = experiments(mlflow)
    result = play(mlflow, run_health=False, **{**s3_vars(mlflow), "s3_prefix": "not/the/prefix"})
    assert result.rc != 0
    trip = task(result, ROUNDTRIP)
    assert trip["failure_kind"] == "not_found" and trip["failed_step"] == "s3_head_object"
    assert "Cleanup worked: deleted presigned_artifact, artifact, run, experiment" in trip["msg"]
    assert experiments(mlflow)[len(before) :] == [(trip["experiment_name"], "deleted")]
    assert objects(mlflow) == []


def test_http_request_metrics_appear_after_api_traffic(mlflow):
    """The metric families that count requests exist once the API has been used (as a roundtrip does)."""
    assert http(mlflow["url"] + "/api/2.0/mlflow/experiments/search", "POST", {"max_results": 1})[0] == 200
    result = play(mlflow, run_roundtrip=False,
                  expected_metrics=["mlflow_http_request_total", "mlflow_http_request_duration_seconds"])  # fmt: skip
    assert result.rc == 0, result.output[-3000:]


def test_vvv_output_hides_the_secrets(mlflow):
    secret = mlflow["facts"]["s3"]["secret_key"]
    result = play(mlflow, verbosity=3, mlflow_username="admin", mlflow_password=PASSWORD, **s3_vars(mlflow))
    assert result.rc == 0, result.output[-5000:]
    assert "carbon254.mlflow.mlflow_roundtrip" in result.output or "mlflow_roundtrip" in result.output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in result.output  # the invocation args were printed, masked
    assert PASSWORD not in result.output
    assert secret not in result.output
