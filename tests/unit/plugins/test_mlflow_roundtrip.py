"""carbon254.mlflow.mlflow_roundtrip against a fake MLflow (and fake S3) that misbehaves on purpose."""

from __future__ import annotations

import hashlib

from ansible_collections.carbon254.mlflow.plugins.modules import mlflow_roundtrip

API = "/api/2.0/mlflow/"
ART = "/api/2.0/mlflow-artifacts/artifacts/"


def s3_args(server, **extra):
    return {"s3_endpoint_url": server.url, "s3_bucket": "bucket", "s3_access_key": "AKIDTEST",
            "s3_secret_key": "very-secret-key-123", **extra}  # fmt: skip


def deletes(server) -> list[str]:
    """The cleanup requests the server received, in order."""
    seen = []
    for r in server.app.requests:
        if r.method == "DELETE":
            seen.append("artifact")
        elif r.route == API + "runs/delete":
            seen.append("run")
        elif r.route == API + "experiments/delete":
            seen.append("experiment")
    return seen


def test_round_trip_ok_and_cleaned_up(server, run_module):
    result = run_module(mlflow_roundtrip, {"url": server.url, "experiment_prefix": "unit-", "artifact_size": 1000})
    assert not result.get("failed"), result
    assert result["changed"] is False and result["cleaned_up"] is True
    assert result["cleanup"] == {"artifact": "deleted", "run": "deleted", "experiment": "deleted"}
    assert result["experiment_name"].startswith("unit-")
    exp, run = result["experiment_id"], result["run_id"]
    assert server.app.experiments[exp]["name"] == result["experiment_name"]
    assert server.app.experiments[exp]["lifecycle_stage"] == "deleted"
    assert server.app.runs[run]["lifecycle_stage"] == "deleted"
    assert result["artifact_path"].startswith(f"{exp}/{run}/artifacts/roundtrip-")
    assert server.app.artifacts == {}  # deleted again
    put = next(r for r in server.app.requests if r.method == "PUT")
    assert put.route == ART + result["artifact_path"]
    assert len(put.body) == 1000 and hashlib.sha256(put.body).hexdigest() == result["artifact_sha256"]
    assert put.headers["Content-Type"] == "application/octet-stream"
    batch = next(r for r in server.app.requests if r.route == API + "runs/log-batch").json()
    assert batch["run_id"] == run and batch["params"][0]["key"] == "roundtrip_param"
    assert deletes(server) == ["artifact", "run", "experiment"]
    assert {"create_experiment", "create_run", "log_batch", "server_info", "upload_artifact", "download_artifact",
            "get_run", "delete_artifact", "delete_run", "delete_experiment", "total"} == set(result["timings"])  # fmt: skip
    assert result["server_info"] == {"multipart_downloads_enabled": False, "multipart_uploads_enabled": False}
    assert result["presigned"]["download"] == result["presigned"]["upload"] == "not advertised"
    assert "s3_object" not in result
    assert "Cleanup worked" in result["msg"]


def test_two_runs_use_different_experiments(server, run_module):
    first = run_module(mlflow_roundtrip, {"url": server.url})
    second = run_module(mlflow_roundtrip, {"url": server.url})
    assert first["experiment_name"] != second["experiment_name"]
    assert first["changed"] is False and second["changed"] is False


def test_checksum_mismatch_fails_and_still_cleans_up(server, run_module):
    server.app.corrupt_download = True
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"]
    assert result["failure_kind"] == "checksum_mismatch" and result["failed_step"] == "download_artifact"
    assert "artifact checksum mismatch" in result["msg"] and result["artifact_sha256"] in result["msg"]
    assert "Cleanup worked: deleted artifact, run, experiment" in result["msg"]
    assert deletes(server) == ["artifact", "run", "experiment"]
    delete = next(r for r in server.app.requests if r.method == "DELETE")
    assert delete.route == ART + result["artifact_path"]
    assert result["cleaned_up"] is True
    assert "get_run" not in [r.route for r in server.app.requests]


def test_wrong_metric_read_back(server, run_module):
    server.app.wrong_metric = True
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "value_mismatch" and result["failed_step"] == "get_run"
    assert "metric roundtrip_metric is" in result["msg"]
    assert deletes(server) == ["artifact", "run", "experiment"]


def test_failed_cleanup_is_reported(server, run_module):
    server.app.corrupt_download = True
    server.app.fail[API + "experiments/delete"] = (500, b'{"error_code": "INTERNAL_ERROR", "message": "db down"}')
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "checksum_mismatch"
    assert "Cleanup FAILED for experiment" in result["msg"] and "db down" in result["msg"]
    assert f"experiment_id={result['experiment_id']}" in result["msg"]
    assert result["cleaned_up"] is False
    assert result["cleanup"]["run"] == "deleted"


# Flask's page for an unhandled exception, what MLflow 3.17.2 sends when its S3 upload fails (measured).
FLASK_500 = (b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error"
             b"</h1>\n<p>The server encountered an internal error and was unable to complete your request.</p>\n")  # fmt: skip


def test_artifact_store_failure_on_upload_is_named_and_cleaned_up(server, run_module):
    server.app.fail["PUT " + ART + "*"] = (500, FLASK_500)
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "artifact_store"
    assert result["failed_step"] == "upload_artifact"
    msg = result["msg"]
    assert f"PUT {ART}" in msg and "artifact upload failed: HTTP 500: 500 Internal Server Error" in msg
    assert "<" not in msg.split("artifact upload failed")[1].split("Cleanup")[0]  # the HTML is reduced to text
    assert "could not write the artifact to its artifact store (--artifacts-destination)" in msg
    assert deletes(server) == ["artifact", "run", "experiment"]  # cleanup still ran


def test_a_4xx_on_upload_stays_an_http_status(server, run_module):
    server.app.fail["PUT " + ART + "*"] = (400, b'{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad path"}')
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failure_kind"] == "http_status" and "INVALID_PARAMETER_VALUE: bad path" in result["msg"]


def test_cleanup_failure_alone_fails_the_module(server, run_module):
    server.app.fail[API + "runs/delete"] = (500, b"{}")
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "cleanup"
    assert "passed, but Cleanup FAILED for run" in result["msg"]
    assert deletes(server) == ["artifact", "run", "experiment"]  # the experiment is still attempted


def test_cleanup_false_keeps_everything_and_reports_a_change(server, run_module):
    result = run_module(mlflow_roundtrip, {"url": server.url, "cleanup": False})
    assert not result.get("failed"), result
    assert result["changed"] is True and result["cleaned_up"] is False
    assert result["cleanup"] == {"experiment": "kept", "run": "kept", "artifact": "kept"}
    assert deletes(server) == []
    assert server.app.experiments[result["experiment_id"]]["lifecycle_stage"] == "active"


def test_check_mode_only_reads(server, run_module):
    result = run_module(mlflow_roundtrip, {"url": server.url, **s3_args(server)}, check_mode=True)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert [(r.method, r.route) for r in server.app.requests] == [
        ("GET", "/health"), ("POST", API + "experiments/search"), ("GET", "/api/3.0/mlflow/server-info"),
        ("HEAD", "/bucket")]  # fmt: skip
    assert server.app.experiments == {} and server.app.runs == {}
    assert result["experiment_id"] is None and result["run_id"] is None
    assert any(step.startswith("create experiment carbon254-roundtrip-") for step in result["planned_steps"])
    assert "HEAD the object" in " ".join(result["planned_steps"])


def test_check_mode_reports_a_host_check_failure(server, run_module):
    server.app.allowed_hosts = {"mlflow:5000"}
    result = run_module(mlflow_roundtrip, {"url": server.url}, check_mode=True)
    assert result["failed"] and result["failure_kind"] == "host_check" and result["failed_step"] == "search_experiments"
    assert server.app.experiments == {}


def test_host_check_on_create_needs_no_cleanup(server, run_module):
    server.app.allowed_hosts = {"mlflow:5000"}
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "host_check" and result["failed_step"] == "create_experiment"
    assert "Nothing was created, nothing to clean up." in result["msg"]
    assert deletes(server) == []
    result = run_module(mlflow_roundtrip, {"url": server.url, "host_header": "mlflow:5000"})
    assert not result.get("failed"), result


def test_401(server, run_module):
    server.app.auth = ("admin", "right-password-1")
    result = run_module(mlflow_roundtrip, {"url": server.url, "username": "admin", "password": "nope-nope-nope"})
    assert result["failed"] and result["failure_kind"] == "auth"
    assert "nope-nope-nope" not in str(result)
    result = run_module(mlflow_roundtrip, {"url": server.url, "username": "admin", "password": "right-password-1"})
    assert not result.get("failed"), result


def test_unproxied_artifact_uri_fails_with_advice(server, run_module):
    server.app.artifact_uri_format = "s3://bucket/{exp}/{run}/artifacts"
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failed_step"] == "create_run"
    assert "--serve-artifacts" in result["msg"]
    assert deletes(server) == ["run", "experiment"]


def test_s3_object_checked_and_gone_after_cleanup(server, run_module):
    server.app.artifact_uri_format = "mlflow-artifacts:/{exp}/{run}/artifacts"
    original = server.app.artifact

    def artifact(method, rel, body):  # mirror the proxy: PUT stores the object in the "bucket", DELETE removes it
        key = "prod/" + rel
        if method == "PUT":
            server.app.s3_objects[key] = len(body)
        if method == "DELETE":
            server.app.s3_objects.pop(key, None)
        return original(method, rel, body)

    server.app.artifact = artifact
    result = run_module(
        mlflow_roundtrip, {"url": server.url, **s3_args(server, s3_prefix="/prod/"), "artifact_size": 321}
    )
    assert not result.get("failed"), result
    obj = result["s3_object"]
    assert obj["bucket"] == "bucket" and obj["key"] == "prod/" + result["artifact_path"]
    assert obj["size"] == 321 and obj["deleted"] is True
    heads = [r for r in server.app.requests if r.method == "HEAD"]
    assert [h.route for h in heads] == ["/bucket/" + obj["key"]] * 2
    auth = heads[0].headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/") and "/us-east-1/s3/aws4_request" in auth
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date" in auth
    assert "very-secret-key-123" not in str(result) and "very-secret-key-123" not in str(heads[0].headers)
    assert result["invocation"]["module_args"]["s3_secret_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def test_s3_object_missing_fails_and_cleans_up(server, run_module):
    result = run_module(mlflow_roundtrip, {"url": server.url, **s3_args(server, s3_prefix="wrong")})
    assert result["failed"] and result["failure_kind"] == "not_found" and result["failed_step"] == "s3_head_object"
    assert "does s3_prefix match" in result["msg"] and "s3://bucket/wrong/" in result["msg"]
    assert deletes(server) == ["artifact", "run", "experiment"]


def test_s3_options_go_together(server, run_module):
    result = run_module(mlflow_roundtrip, {"url": server.url, "s3_bucket": "bucket"})
    assert result["failed"] and "parameters are required together" in result["msg"]
    assert server.app.requests == []


# --- presigned transfers: what MLflow clients do when /server-info advertises them ---------------------------

ADVERTISED = {"multipart_downloads_enabled": True, "multipart_uploads_enabled": True}
MPU = "/api/2.0/mlflow-artifacts/mpu/"


def test_advertised_presigned_transfers_are_taken_from_this_host(server, run_module):
    server.app.server_info = dict(ADVERTISED)
    result = run_module(mlflow_roundtrip, {"url": server.url, "artifact_size": 3000})
    assert not result.get("failed"), result
    assert result["presigned"] == {"downloads_advertised": True, "uploads_advertised": True, "checked": True,
                                   "endpoint": server.url, "download": "ok", "upload": "ok"}  # fmt: skip
    routes = [(r.method, r.route) for r in server.app.requests]
    root = result["artifact_path"].rsplit("/", 1)[0]
    # The download: a presigned URL asked from MLflow, the object fetched from "S3" by range, as the client does.
    assert ("GET", "/api/2.0/mlflow-artifacts/presigned/" + result["artifact_path"]) in routes
    fetch = next(r for r in server.app.requests if r.route.startswith("/presigned-s3/get/"))
    assert fetch.headers["Range"] == "bytes=0-2999" and "Authorization" not in fetch.headers
    # The upload: create, the part PUT straight to "S3", complete; the object read back through the server.
    assert [route for route in routes if route[1].startswith(MPU)] == [("POST", MPU + "create/" + root),
                                                                       ("POST", MPU + "complete/" + root)]  # fmt: skip
    put = next(r for r in server.app.requests if r.route.startswith("/presigned-s3/put/"))
    assert len(put.body) == 3000 and "Authorization" not in put.headers
    (upload,) = server.app.uploads.values()
    assert upload["state"] == "complete" and upload["rel"].endswith("-presigned.bin")
    # Both artifacts are gone again.
    assert server.app.artifacts == {}
    assert result["cleanup"]["presigned_artifact"] == "deleted"
    assert "Cleanup worked: deleted presigned_artifact, artifact, run, experiment" in result["msg"]
    assert {"presigned_upload", "presigned_download", "delete_presigned_artifact"} <= set(result["timings"])


def test_unreachable_presigned_upload_fails_naming_the_endpoint_and_the_fix(server, run_module, closed_port):
    server.app.server_info = {"multipart_downloads_enabled": False, "multipart_uploads_enabled": True}
    server.app.presigned_origin = f"http://127.0.0.1:{closed_port}"
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "presigned_transfer"
    assert result["failed_step"] == "presigned_upload"
    msg = result["msg"]
    assert f"http://127.0.0.1:{closed_port}" in msg and "connection refused" in msg
    assert "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=false" in msg and "mlflow_client_presigned_transfers" in msg
    assert "mlflow_k8s_s3_endpoint_url" in msg and "fake-sig" not in msg
    (upload,) = server.app.uploads.values()
    assert upload["state"] == "abort"
    assert "Cleanup worked" in msg and server.app.artifacts == {}


def test_unreachable_presigned_download_fails_naming_the_endpoint_and_the_fix(server, run_module, closed_port):
    server.app.server_info = {"multipart_downloads_enabled": True, "multipart_uploads_enabled": False}
    server.app.presigned_origin = f"http://127.0.0.1:{closed_port}"
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "presigned_transfer"
    assert result["failed_step"] == "presigned_download"
    msg = result["msg"]
    assert "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD=false" in msg and "load_model" in msg
    assert f"http://127.0.0.1:{closed_port}" in msg and "fake-sig" not in msg
    assert result["presigned"]["upload"] == "not advertised"
    assert result["presigned"]["download"].startswith("connection refused")
    assert deletes(server) == ["artifact", "run", "experiment"]


def test_a_failed_presigned_download_leaves_the_upload_not_reached(server, run_module, closed_port):
    server.app.server_info = dict(ADVERTISED)
    server.app.presigned_origin = f"http://127.0.0.1:{closed_port}"
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed_step"] == "presigned_download" and result["presigned"]["upload"] == "not reached"


def test_a_rejected_presigned_signature_is_a_presigned_failure(server, run_module):
    server.app.server_info = {"multipart_downloads_enabled": True, "multipart_uploads_enabled": False}
    server.app.presigned_signature = "signed-for-another-host"  # e.g. a proxy in front of S3 rewrote the Host
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert result["failed"] and result["failure_kind"] == "presigned_transfer"
    assert "HTTP 403 (SignatureDoesNotMatch) from the presigned URL" in result["msg"]
    assert "signed-for-another-host" not in result["msg"]


def test_presigned_transfers_false_checks_the_proxied_path_only(server, run_module, closed_port):
    server.app.server_info = dict(ADVERTISED)
    server.app.presigned_origin = f"http://127.0.0.1:{closed_port}"
    result = run_module(mlflow_roundtrip, {"url": server.url, "presigned_transfers": False})
    assert not result.get("failed"), result
    assert result["presigned"]["checked"] is False
    assert result["presigned"]["download"].startswith("not checked")
    assert result["presigned"]["upload"].startswith("not checked")
    assert not [r for r in server.app.requests if "presigned" in r.route or r.route.startswith(MPU)]


def test_no_server_info_endpoint_means_the_proxied_path(server, run_module):
    server.app.server_info = None
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert not result.get("failed"), result
    assert result["server_info"] == {} and result["presigned"]["downloads_advertised"] is False


def test_a_presigned_answer_without_file_size_leaves_the_client_on_the_proxied_download(server, run_module):
    server.app.server_info = {"multipart_downloads_enabled": True, "multipart_uploads_enabled": False}
    server.app.presigned_file_size = False
    result = run_module(mlflow_roundtrip, {"url": server.url})
    assert not result.get("failed"), result
    assert result["presigned"]["download"].startswith("no file_size")
    assert not [r for r in server.app.requests if r.route.startswith("/presigned-s3/")]
