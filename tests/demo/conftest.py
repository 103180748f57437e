"""The quickstart stage's one deployment: `make demo` in a sandbox of its own, shared by every test here."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness.ansible import BIN, ROOT
from harness.client import Client, read_env_file
from harness.kube import writes_since
from tests.demo.helpers import (
    DEMO_SANDBOX,
    SNIPPET_LABEL,
    inventory_secrets,
    make,
    printed,
    secret_hits,
    site,
    what_exists,
)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """`make demo` in its own sandbox; `make demo-down` afterwards whatever happened."""
    state = tmp_path_factory.mktemp("demo") / ".sandbox"
    secrets: dict[str, str] = {}
    env = {**os.environ, **DEMO_SANDBOX, "SANDBOX_STATE_DIR": str(state)}
    # make test keeps its shared sandbox between stages; `make demo-down` must really stop this one.
    env.pop("SANDBOX_KEEP", None)
    try:
        # First the empty sandbox: site.yml --check --diff, and what it left behind (nothing, it must be).
        subprocess.run([str(BIN / "python"), "-m", "sandbox", "up"], cwd=ROOT, env=env, check=True,
                       capture_output=True, text=True)  # fmt: skip
        facts = json.loads((state / "facts.json").read_text())
        start = time.time()
        check = site(env, "--check", "--diff")
        empty = {"check": check, "writes": writes_since(facts, start), **what_exists(facts)}
        proc = make("demo", env)
        secrets = inventory_secrets(env, state.parent / "secrets.json") if proc.returncode == 0 else {}
        yield {"proc": proc, "env": env, "state": state, "empty": empty, "secrets": secrets}
    finally:
        # teardown.yml at -vvv: not one secret value in what it prints (site.yml and verify.yml: test_secrets.py).
        down = make("demo-down", {**env, "ANSIBLE_VERBOSITY": "3"})
        assert down.returncode == 0, down.stderr[-2000:]
        assert secret_hits(down.stdout + down.stderr, secrets) == [], "make demo-down printed a secret"
        status = subprocess.run([str(BIN / "python"), "-m", "sandbox", "status"], cwd=ROOT, env=env,
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert status.returncode != 0, f"the demo sandbox still runs after make demo-down:\n{status.stdout}"
        assert not (state / "mlflow-client.env").exists()


@pytest.fixture(scope="session")
def client(demo) -> Client:
    proc = demo["proc"]
    assert proc.returncode == 0, "make demo failed (see test_demo.py)"
    snippet = printed(proc.stdout, SNIPPET_LABEL)
    assert snippet and snippet.startswith("set -a; . "), proc.stdout[-2000:]
    env_file = Path(printed(proc.stdout, "MLflow credentials"))
    return Client(snippet=snippet, settings=read_env_file(env_file))


@pytest.fixture(scope="session")
def model(client) -> dict:
    """A pyfunc model logged in a run and registered, as a training job does."""
    name = f"clients-{uuid.uuid4().hex[:8]}"
    logged = client.step("log-model", f"clients-{uuid.uuid4().hex[:8]}", name, deadline=180)
    return {**logged, "name": name}
