"""The podman the AWX tests' execution node uses (sandbox/ee.py: execution_node_podman).

Debian 12's podman 4.3 sometimes loses the race between `podman run` and the cleanup process that records the
container's exit code (containers/podman#18860): the job ran to its end, `run` says "no such exit code" and fails.
The wrapper then asks `podman wait` for the real exit code. A stand-in podman first on PATH plays that race here
(the real one cannot be made to lose it on demand); the wrapper's namespaces and tmpfs are real.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sandbox.ee import execution_node_podman

CID = "0123456789abcdef" * 4
RACING_PODMAN = f"""#!/bin/sh
echo "$@" >> "{{log}}"
for a in "$@"; do case "$a" in
  run) echo job-output
       echo 'level=error msg="Waiting for container {CID}: getting exit code of container {CID} from DB: no such exit code (container in state running)"' >&2
       exit "${{RUN_RC:-1}}";;
  wait) echo 7; exit 0;;
  rm) exit 0;;
esac; done
"""


@pytest.fixture
def racing_podman(tmp_path: Path) -> tuple[dict[str, str], Path]:
    log = tmp_path / "calls"
    fake = tmp_path / "bin" / "podman"
    fake.parent.mkdir()
    fake.write_text(RACING_PODMAN.replace("{log}", str(log)))
    fake.chmod(0o755)
    return {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}, log


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(execution_node_podman()), *args], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


def test_a_lost_exit_code_race_returns_the_containers_own_exit_code(racing_podman):
    env, log = racing_podman
    result = run(env, "run", "--rm", "image", "ansible-playbook")
    assert result.returncode == 7, result
    assert result.stdout == "job-output\n"
    assert "no such exit code" in result.stderr, "podman's complaint is still shown"
    calls = log.read_text().splitlines()
    assert " run --runtime runc " in calls[0] and calls[0].endswith("--rm image ansible-playbook")
    assert calls[1].endswith(f"wait {CID}") and calls[2].endswith(f"rm --force {CID}")


def test_a_run_that_succeeds_is_not_second_guessed(racing_podman):
    env, log = racing_podman
    result = run({**env, "RUN_RC": "0"}, "run", "--rm", "image", "true")
    assert result.returncode == 0
    assert len(log.read_text().splitlines()) == 1, "no wait, no rm"


def test_other_commands_pass_through(racing_podman):
    env, log = racing_podman
    assert run(env, "images").returncode == 0
    assert log.read_text().split()[-1] == "images"
