"""DataHub's own ingestion (`datahub ingest`, acryl-datahub[mlflow]) runs the recipe render.yml writes.

Against `make demo`'s MLflow, with the recipe as the sandbox inventory renders it; only the sink differs (a file
instead of a DataHub server, which cannot run here), and with it the stateful ingestion that needs that server. The
registered model and its version must appear in what DataHub emits, under the environment the recipe names.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.ansible import BIN, ROOT

pytestmark = pytest.mark.integration

# scripts/install-opt-venv.sh datahub -r tests/demo/datahub-requirements.txt (make setup)
DATAHUB = Path(os.environ.get("SANDBOX_DATAHUB", "/opt/carbon254-sandbox/datahub/bin/datahub"))


@pytest.fixture(scope="module")
def recipe(demo, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("render")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "playbooks/render.yml", "-i", "inventories/sandbox", "-e",
                           f"mlflow_render_dir={out}"], cwd=ROOT, env=demo["env"], capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return yaml.safe_load((out / "integrations" / "datahub-mlflow-recipe.yml").read_text())


def ingest(recipe: dict, where: Path, client, password: str | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    """`datahub ingest -c` of the recipe with a file sink, in the executor's environment the recipe asks for."""
    sink = where / "mces.json"
    local = {**recipe, "sink": {"type": "file", "config": {"filename": str(sink)}}}
    local["source"] = {**recipe["source"], "config": dict(recipe["source"]["config"])}
    del local["source"]["config"]["stateful_ingestion"]  # needs a DataHub server ("A graph instance is required")
    path = where / "recipe.yml"
    path.write_text(yaml.safe_dump(local, sort_keys=False))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_", "DATAHUB_"))}
    env.update(MLFLOW_TRACKING_USERNAME=client.settings["MLFLOW_TRACKING_USERNAME"],
               MLFLOW_TRACKING_PASSWORD=password or client.settings["MLFLOW_TRACKING_PASSWORD"],
               DATAHUB_TELEMETRY_ENABLED="false", DATAHUB_GMS_URL="http://127.0.0.1:9", DATAHUB_GMS_TOKEN="unused",
               HOME=str(where))  # fmt: skip
    proc = subprocess.run([str(DATAHUB), "ingest", "-c", str(path)], env=env, cwd=where, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    return proc, sink


def test_the_rendered_recipe_is_what_datahub_runs(recipe, client):
    config = recipe["source"]["config"]
    assert recipe["source"]["type"] == "mlflow" and recipe["sink"]["type"] == "datahub-rest"
    assert config["tracking_uri"] == config["registry_uri"] == client.settings["MLFLOW_TRACKING_URI"]
    assert config["env"] == "SANDBOX" and recipe["pipeline_name"] == "mlflow-sandbox"
    assert config["username"] == "${MLFLOW_TRACKING_USERNAME}" and config["password"] == "${MLFLOW_TRACKING_PASSWORD}"


def test_datahub_ingestion_emits_the_registered_model_and_its_version(recipe, client, model, tmp_path):
    proc, sink = ingest(recipe, tmp_path, client)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert client.settings["MLFLOW_TRACKING_PASSWORD"] not in proc.stdout + proc.stderr
    records = json.loads(sink.read_text())
    aspects = {(r["entityUrn"], r["aspectName"]): r["aspect"]["json"] for r in records if "aspect" in r}
    group = f"urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,{model['name']},SANDBOX)"
    version = f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,{model['name']}_{model['version']},SANDBOX)"
    assert (group, "mlModelGroupProperties") in aspects, sorted({urn for urn, _ in aspects})
    assert aspects[(version, "versionProperties")]["version"]["versionTag"] == model["version"]
    properties = aspects[(version, "mlModelProperties")]
    assert group in properties["groups"]
    assert properties["externalUrl"].endswith(f"/#/models/{model['name']}/versions/{model['version']}")
    # The run that trained it, with its metric, as the model version's training job.
    (training,) = properties["trainingJobs"]
    run = aspects[(training, "mlTrainingRunProperties")]
    assert run["id"] == model["run_id"]
    assert {"name": "accuracy", "value": "0.93"} in run["trainingMetrics"]


def test_datahub_with_a_wrong_password_fails_with_401(recipe, client, tmp_path):
    proc, _ = ingest(recipe, tmp_path, client, password="wrong-password-123")
    assert proc.returncode != 0
    assert "401" in proc.stdout + proc.stderr, proc.stdout[-3000:] + proc.stderr[-2000:]
