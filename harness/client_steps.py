"""What data scientists do with the MLflow Python client, one step per call, for tests/demo/test_clients.py
and bench/real_clients.py (harness.client.Client runs it).

Run by the MLflow client of the deployed release (`make setup` installs it as a user would), in nothing but the
environment `make demo` tells users to load; it prints one JSON object with the step's results and `seconds` (the
step itself, without interpreter start and imports). Usage: client_steps.py STEP [ARGS...]
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient


class Doubler(mlflow.pyfunc.PythonModel):
    """The smallest model that proves a round trip: its prediction depends on the loaded parameters."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: list[float]) -> list[float]:
        return [value * self.factor for value in model_input]


def log_model(experiment: str, name: str) -> dict:
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("factor", 3)
        mlflow.log_metric("accuracy", 0.93)
        info = mlflow.pyfunc.log_model(name="model", python_model=Doubler(3), registered_model_name=name)
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id, "model_uri": info.model_uri,
            "version": str(info.registered_model_version)}  # fmt: skip


def load_model(uri: str) -> dict:
    model = mlflow.pyfunc.load_model(uri)
    return {"prediction": model.predict([1.0, 2.0, 7.0])}


def artifact(run_id: str, size: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights.bin")
        data = os.urandom(int(size))
        with open(path, "wb") as handle:
            handle.write(data)
        start = time.monotonic()
        MlflowClient().log_artifact(run_id, path, artifact_path="data")
        logged = time.monotonic() - start
        start = time.monotonic()
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="data/weights.bin", dst_path=tmp + "/d"
        )
        downloaded = time.monotonic() - start
        with open(local, "rb") as handle:
            back = handle.read()
    return {"sent_sha256": hashlib.sha256(data).hexdigest(), "got_sha256": hashlib.sha256(back).hexdigest(),
            "size": len(back), "log_seconds": logged, "download_seconds": downloaded}  # fmt: skip


def download(run_id: str, path: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp)
        with open(local, "rb") as handle:
            return {"sha256": hashlib.sha256(handle.read()).hexdigest()}


def alias(name: str, version: str, alias_name: str) -> dict:
    client = MlflowClient()
    client.set_registered_model_alias(name, alias_name, version)
    resolved = client.get_model_version_by_alias(name, alias_name)
    model = mlflow.pyfunc.load_model(f"models:/{name}@{alias_name}")
    return {"version": resolved.version, "prediction": model.predict([1.0, 2.0, 7.0])}


def search(experiment_id: str) -> dict:
    runs = mlflow.search_runs(experiment_ids=[experiment_id], filter_string="metrics.accuracy > 0.9",
                              output_format="list")  # fmt: skip
    missed = mlflow.search_runs(experiment_ids=[experiment_id], filter_string="metrics.accuracy > 0.99",
                                output_format="list")  # fmt: skip
    return {"run_ids": sorted(run.info.run_id for run in runs), "above_099": len(missed)}


def ui_run(experiment: str, run_name: str, notes: str) -> dict:
    """A run to look at in the UI: a param, the metric accuracy and a small text artifact."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_param("learning_rate", 0.01)
        mlflow.log_metric("accuracy", 0.93)
        mlflow.log_text(notes, "model/notes.txt")
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}


def list_experiments() -> dict:
    return {"experiments": sorted(exp.name for exp in mlflow.search_experiments())}


STEPS = {"log-model": log_model, "load-model": load_model, "artifact": artifact, "download": download,
         "alias": alias, "search": search, "ui-run": ui_run, "list-experiments": list_experiments}  # fmt: skip


if __name__ == "__main__":
    step, args = sys.argv[1], sys.argv[2:]
    started = time.monotonic()
    result = STEPS[step](*args)
    print(json.dumps({**result, "seconds": time.monotonic() - started}))
