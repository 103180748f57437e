"""The README's quick start, literally: `make demo`, an MLflow client on the URL it prints, `make demo-down`.

Before `make demo`, site.yml --check --diff on the still empty sandbox; after it, again on the converged one.

Runs in a sandbox of its own (state directory, ports and pod network set through the SANDBOX_* variables the
Makefile and `python -m sandbox` honour), so it never touches the shared sandbox of the other stages nor a
developer's own `make demo`. The stage `quickstart` of `make test` runs it; on a fresh clone in CI this is the proof
that the two README commands work.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from harness.ansible import MLFLOW_VERSION
from harness.client import MLFLOW_CLIENT_PYTHON, read_env_file
from harness.kube import writes_since
from harness.stores import s3_client
from tests.demo.helpers import printed, recap_changed, site

pytestmark = pytest.mark.integration

CLIENT = """
import json, os, sys
import mlflow
mlflow.set_experiment(sys.argv[1])
with mlflow.start_run() as run:
    mlflow.log_param("source", "make-demo-test")
    mlflow.log_metric("accuracy", 0.93)
    mlflow.log_artifact(sys.argv[2], artifact_path="model")
print(json.dumps({"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                  "artifact_uri": run.info.artifact_uri}))
"""


def test_site_check_diff_on_an_empty_sandbox_reports_the_changes_and_writes_nothing(demo):
    check, empty = demo["empty"]["check"], demo["empty"]
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert (recap_changed(check) or 0) >= 10, check.stdout[-3000:]
    assert "--- before" in check.stdout  # the diffs of what would be created
    assert empty["writes"] == []
    assert empty["databases"] == [] and empty["roles"] == [] and "mlflow-artifacts" not in empty["buckets"], empty


def test_make_demo_prints_a_url_and_credentials_that_serve_mlflow_to_its_python_client(demo):
    proc = demo["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert recap_changed(proc) is not None, proc.stdout[-3000:]
    url = printed(proc.stdout, "MLflow URL")
    credentials = printed(proc.stdout, "MLflow credentials")
    assert url and re.fullmatch(r"http://127\.0\.0\.1:\d+", url), proc.stdout[-2000:]
    # How to point a client at it: the release to install and the line that loads the settings.
    assert printed(proc.stdout, "MLflow client").startswith(f"pip install mlflow=={MLFLOW_VERSION}")
    assert credentials, "the sandbox enables basic-auth, so make demo must print the credentials file"

    env_file = Path(credentials)
    assert env_file.stat().st_mode & 0o777 == 0o600
    settings = read_env_file(env_file)
    assert settings["MLFLOW_TRACKING_URI"] == url
    assert settings["MLFLOW_TRACKING_USERNAME"] == "admin"
    password = settings["MLFLOW_TRACKING_PASSWORD"]
    assert len(password) >= 12
    assert password not in proc.stdout and password not in proc.stderr

    # Basic-auth is really on: without the credentials the tracking API answers 401.
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url + "/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)  # noqa: S310
    assert denied.value.code == 401

    # An MLflow client with nothing but the env file: a run, a param, a metric and an artifact.
    payload = demo["state"].parent / "model.txt"
    content = f"trained by the make demo test {uuid.uuid4()}\n"
    payload.write_text(content)
    client_env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MLFLOW_"))}
    client = subprocess.run([str(MLFLOW_CLIENT_PYTHON), "-c", CLIENT, f"demo-test-{uuid.uuid4().hex[:8]}", str(payload)],
                            env={**client_env, **settings}, capture_output=True, text=True, timeout=300,
                            check=False)  # fmt: skip
    assert client.returncode == 0, client.stderr[-3000:]
    run = json.loads(client.stdout.strip().splitlines()[-1])
    # Uploaded through the server's artifact proxy (the client has no S3 credentials) ...
    assert run["artifact_uri"].startswith("mlflow-artifacts:"), run

    # ... into the artifact bucket.
    facts = json.loads((demo["state"] / "facts.json").read_text())
    s3 = s3_client(facts)
    prefix = f"{run['experiment_id']}/{run['run_id']}/artifacts/model/"
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="mlflow-artifacts", Prefix=prefix).get("Contents", [])]
    assert keys == [prefix + "model.txt"], keys
    body = s3.get_object(Bucket="mlflow-artifacts", Key=keys[0])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(content.encode()).hexdigest()


def test_site_check_diff_on_the_converged_demo_reports_no_change_and_writes_nothing(demo):
    assert demo["proc"].returncode == 0, "make demo failed (see the first test)"
    facts = json.loads((demo["state"] / "facts.json").read_text())
    start = time.time()
    proc = site(demo["env"], "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert recap_changed(proc) == 0, proc.stdout[-4000:]
    # No diff printed either: every object, the database and the bucket already are as asked.
    assert "--- before" not in proc.stdout
    assert writes_since(facts, start) == []
