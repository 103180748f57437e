"""Client side of bench/auth_cache.py, run by the MLflow client of the deployed release (mlflow-client venv).

    client_load.py sequential N          N mlflow log_metric calls one after the other: each call's ms
    client_load.py concurrent T SECONDS  T threads calling log_metric for SECONDS: calls, errors, calls/s
    client_load.py health N              N unauthenticated GET /health (the cheapest request MLflow serves)

The tracking URI and credentials come from the environment (the client settings file of one deployment). Prints
one JSON object.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import mlflow
import requests
from mlflow import MlflowClient


def new_run(client: MlflowClient) -> str:
    experiment = mlflow.set_experiment("bench-auth-cache")
    return client.create_run(experiment.experiment_id).info.run_id


def sequential(count: str) -> dict:
    client = MlflowClient()
    run_id = new_run(client)
    client.log_metric(run_id, "warmup", 0.0)
    times = []
    for step in range(int(count)):
        start = time.perf_counter()
        client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
        times.append((time.perf_counter() - start) * 1000)
    return {"ms": times}


def concurrent(threads: str, seconds: str) -> dict:
    client = MlflowClient()
    run_id = new_run(client)
    deadline = time.monotonic() + float(seconds)
    counts = {"calls": 0, "errors": 0}
    lock = threading.Lock()

    def worker(index: int) -> None:
        own = MlflowClient()
        step = 0
        while time.monotonic() < deadline:
            try:
                own.log_metric(run_id, f"load_{index}", float(step), step=step)
                key = "calls"
            except Exception:  # counted, not raised: the figure is the error count
                key = "errors"
            with lock:
                counts[key] += 1
            step += 1

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(int(threads))]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started
    return {**counts, "seconds": elapsed, "per_second": counts["calls"] / elapsed}


def health(count: str) -> dict:
    url = mlflow.get_tracking_uri().rstrip("/") + "/health"
    session = requests.Session()
    times = []
    for _ in range(int(count)):
        start = time.perf_counter()
        session.get(url, timeout=30).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return {"ms": times}


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    print(json.dumps({"sequential": sequential, "concurrent": concurrent, "health": health}[mode](*args)))
