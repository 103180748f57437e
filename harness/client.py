"""The MLflow Python client of the deployed release as users set it up: the settings file `make demo` (site.yml)
writes, its snippet, then harness/client_steps.py run one step at a time and timed inside the client."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The MLflow Python client of the deployed release as a user installs it (`pip install mlflow==<version>`, no S3
# libraries): `make setup` puts it there (scripts/install-opt-venv.sh mlflow-client).
MLFLOW_CLIENT_PYTHON = Path(
    os.environ.get("SANDBOX_MLFLOW_CLIENT_PYTHON", "/opt/carbon254-sandbox/mlflow-client/bin/python")
)
CLIENT_STEPS = Path(__file__).with_name("client_steps.py")
FOUR_MIB = 4 * 1024 * 1024


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as a shell reads them (values are shell-quoted by playbooks/verify.yml)."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = shlex.split(value)[0] if value else ""
    return values


class StepFailed(AssertionError):
    pass


@dataclass
class Client:
    """The MLflow client as `make demo` tells users to set it up: its printed snippet, then python."""

    snippet: str
    settings: dict[str, str]

    def env(self) -> dict[str, str]:
        return {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "AWS_"))}

    def run(self, step: str, *args: str, deadline: float, before: str = "", extra: dict | None = None,
            expect_ok: bool = True) -> subprocess.CompletedProcess:  # fmt: skip
        """`bash -c '<snippet>; <before>; exec python client_steps.py STEP ARGS'`, killed at the deadline."""
        script = f'{self.snippet}\n{before}\nexec "$@"'
        argv = ["bash", "-c", script, "bash", str(MLFLOW_CLIENT_PYTHON), str(CLIENT_STEPS), step, *args]
        try:
            proc = subprocess.run(argv, env={**self.env(), **(extra or {})}, capture_output=True, text=True,
                                  timeout=deadline, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            tail = (exc.stderr or b"")[-4000:]
            tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
            raise StepFailed(
                f"client step {step} {args} did not finish within {deadline:.0f} s (a hang):\n{tail}"
            ) from None
        if expect_ok and proc.returncode != 0:
            raise StepFailed(f"client step {step} {args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc

    def step(self, step: str, *args: str, deadline: float) -> dict:
        proc = self.run(step, *args, deadline=deadline)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        TIMINGS.setdefault(step, []).append(result["seconds"])
        return result


TIMINGS: dict[str, list[float]] = {}
