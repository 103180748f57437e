"""Real clients on `make demo`'s deployment, from where users stand, with only what the collection hands them.

The MLflow Python client of the deployed release (installed as a user would) runs each step of
harness/client_steps.py in the environment the snippet `make demo` prints sets up, and nothing else (no MLFLOW_* or
AWS_* variables of the test runner, no S3 keys). Every step has a deadline: a client that hangs (as MLflow clients do
when they follow a presigned URL to an S3 endpoint they cannot reach) fails the test instead of stalling it.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.error
import urllib.request

import pytest

from harness.ansible import BIN, ROOT
from harness.client import FOUR_MIB, StepFailed
from tests.demo.helpers import PROXY_VARIABLES

pytestmark = pytest.mark.integration


def test_the_snippet_make_demo_prints_sets_up_a_client_and_nothing_else(client):
    assert set(client.settings) == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                    *PROXY_VARIABLES}  # fmt: skip
    assert all(client.settings[name] == "false" for name in PROXY_VARIABLES)


def test_a_registered_model_loads_back_by_its_models_uri_and_predicts(client, model):
    assert model["version"] == "1" and model["model_uri"].startswith("models:/m-")
    loaded = client.step("load-model", f"models:/{model['name']}/{model['version']}", deadline=120)
    assert loaded["prediction"] == [3.0, 6.0, 21.0]


def test_a_4_mib_artifact_goes_up_and_comes_back_unchanged(client, model):
    result = client.step("artifact", model["run_id"], str(FOUR_MIB), deadline=180)
    assert result["size"] == FOUR_MIB and result["got_sha256"] == result["sent_sha256"]


def test_a_model_loads_by_its_alias(client, model):
    result = client.step("alias", model["name"], model["version"], "champion", deadline=120)
    assert result["version"] == model["version"] and result["prediction"] == [3.0, 6.0, 21.0]


def test_runs_are_found_by_their_metric(client, model):
    result = client.step("search", model["experiment_id"], deadline=60)
    assert result["run_ids"] == [model["run_id"]] and result["above_099"] == 0


def test_wrong_credentials_get_401_and_read_nothing(client, model):
    proc = client.run("list-experiments", deadline=120, extra={}, before="MLFLOW_TRACKING_PASSWORD=wrong-password-123",
                      expect_ok=False)  # fmt: skip
    assert proc.returncode != 0
    assert "401" in proc.stderr or "Unauthorized" in proc.stderr or "not authenticated" in proc.stderr, proc.stderr[
        -2000:
    ]
    assert model["name"] not in proc.stdout
    # The same through plain HTTP: 401 and no experiment in the body.
    url = client.settings["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/experiments/search?max_results=100"
    token = base64.b64encode(f"{client.settings['MLFLOW_TRACKING_USERNAME']}:wrong-password-123".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})  # noqa: S310 - the demo URL
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert denied.value.code == 401
    assert "clients-" not in denied.value.read().decode(errors="replace")


def test_without_the_printed_settings_load_model_hangs_on_the_unreachable_presigned_url(client, model, demo):
    """The trap the settings avoid, kept visible: MLflow 3.17.2 advertises presigned downloads, and a client left
    to follow them fetches from the S3 endpoint the pods use (the sandbox node's gateway), unreachable from here,
    retrying for minutes. Should a release stop doing this, this test fails and docs/artifacts.md needs a look."""
    facts = json.loads((demo["state"] / "facts.json").read_text())
    gateway = facts["kubernetes"]["node"]["s3_endpoint_url"].split("//", 1)[1].rsplit(":", 1)[0]
    unset = "unset " + " ".join(PROXY_VARIABLES)
    uri = f"models:/{model['name']}/{model['version']}"
    with pytest.raises(StepFailed) as hung:
        client.run("load-model", uri, deadline=45, before=unset, extra={"MLFLOW_LOGGING_LEVEL": "DEBUG"},
                   expect_ok=False)  # fmt: skip
    message = str(hung.value)
    assert "did not finish within 45 s" in message, message[-2000:]
    # The client's own log: chunked downloads from the presigned URL at the gateway, failing and retried.
    assert re.search(r"(Failed to download chunk|Retry failed for chunk)", message), message[-2000:]
    assert f"host='{gateway}'" in message or f"//{gateway}:" in message, message[-2000:]


def test_verification_with_presigned_transfers_names_the_unreachable_endpoint(demo):
    facts = json.loads((demo["state"] / "facts.json").read_text())
    endpoint = facts["kubernetes"]["node"]["s3_endpoint_url"]
    proc = subprocess.run([str(BIN / "ansible-playbook"), "playbooks/verify.yml", "-i", "inventories/sandbox", "-e",
                           "mlflow_client_presigned_transfers=true"], cwd=ROOT, env=demo["env"], capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert re.search(r"presigned S3 transfer failed from this host", proc.stdout), proc.stdout[-3000:]
    assert endpoint in proc.stdout and "mlflow_client_presigned_transfers" in proc.stdout
    assert "X-Amz-Signature" not in proc.stdout
