"""Ansible as the tests and benchmarks run it: a role through ansible-playbook, this checkout as the collection,
and what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sandbox.build import artifacts
from sandbox.pins import mlflow_image, mlflow_version

ROOT = Path(__file__).resolve().parent.parent
# The MLflow release the collection deploys (images/mlflow/requirements.txt pins it): tests say it once.
MLFLOW_VERSION = mlflow_version()
MLFLOW_IMAGE = mlflow_image()


def promtool() -> str:
    """The promtool of the Prometheus the monitoring tests run (built from its module): one version checks and serves
    the rules."""
    return str(artifacts().prometheus_dir / "promtool")


INVENTORY = ROOT / "tests" / "integration" / "inventory.yml"
ROLE_PLAYBOOK = ROOT / "tests" / "integration" / "playbooks" / "role.yml"
BIN = Path(sys.executable).parent


def ansible_env(**extra: str) -> dict[str, str]:
    """The environment `make` gives Ansible: this checkout as carbon254.mlflow, no Galaxy, no colour."""
    collections = ROOT / ".cache" / "collections"
    link = collections / "ansible_collections" / "carbon254" / "mlflow"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT, target_is_directory=True)
    return {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        **extra,
    }


@dataclass
class PlayResult:
    rc: int
    stdout: str
    stderr: str
    report: dict | None

    @property
    def stats(self) -> dict[str, int]:
        assert self.report is not None, self.output
        return self.report["stats"]["localhost"]

    @property
    def changed(self) -> int:
        return self.stats["changed"]

    @property
    def failed(self) -> bool:
        return self.rc != 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def failure_messages(self) -> list[str]:
        """The `msg` of every failed task result (with per-item failures), for asserting error texts."""
        messages: list[str] = []
        for play in (self.report or {}).get("plays", []):
            for task in play["tasks"]:
                for result in task["hosts"].values():
                    items = result.get("results") or [result]
                    for item in items:
                        if item.get("failed"):
                            messages.append(str(item.get("msg", "")))
                            messages.extend(str(err) for err in item.get("argument_errors", []))
        return messages

    def changed_tasks(self) -> list[str]:
        names = []
        for play in (self.report or {}).get("plays", []):
            for task in play["tasks"]:
                if any(result.get("changed") for result in task["hosts"].values()):
                    names.append(task["task"]["name"])
        return names


def json_report(stdout: str) -> dict | None:
    """The ansible.posix.json callback's report in a playbook's stdout (None when there is none: a crash)."""
    try:
        return json.loads(stdout[stdout.index("{") :])
    except ValueError:
        return None


def run_role(role: str, variables: dict, check: bool = False, diff: bool = False, verbosity: int = 0) -> PlayResult:
    """Run carbon254.mlflow.<role> on localhost with `variables` as extra vars; JSON report parsed."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"role_under_test": role, **variables}, handle)
        vars_file = handle.name
    argv = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(ROLE_PLAYBOOK), "-e", f"@{vars_file}"]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    if verbosity:
        argv.append("-" + "v" * verbosity)
    callback = "ansible.posix.json" if not verbosity else "default"
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, env=ansible_env(ANSIBLE_STDOUT_CALLBACK=callback), capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
    finally:
        os.unlink(vars_file)
    report = json_report(proc.stdout) if callback == "ansible.posix.json" else None
    return PlayResult(proc.returncode, proc.stdout, proc.stderr, report)


SANDBOX_INVENTORY = ROOT / "inventories" / "sandbox"


def play(playbook: Path, *args: str, inventories: tuple[Path, ...] = (SANDBOX_INVENTORY,), extra: dict | None = None,
         tmp_path: Path | None = None, timeout: float = 900) -> PlayResult:  # fmt: skip
    """Run a playbook with the JSON callback; `extra` goes in as a JSON extra-vars file in `tmp_path` (real bools)."""
    argv = [str(BIN / "ansible-playbook"), str(playbook)]
    for inventory in inventories:
        argv += ["-i", str(inventory)]
    if extra is not None:
        assert tmp_path is not None
        with tempfile.NamedTemporaryFile("w", suffix=".json", dir=tmp_path, delete=False) as handle:
            json.dump(extra, handle)
        argv += ["-e", f"@{handle.name}"]
    argv += list(args)
    proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"),
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    return PlayResult(proc.returncode, proc.stdout, proc.stderr, json_report(proc.stdout))


def deployment_play(variables: dict, name: str, tmp_path: Path, *args: str, **extra: object) -> PlayResult:
    """A playbook of playbooks/ for a test's own deployment (`variables`: its namespace, databases, bucket), with the
    client settings and scrape files written under `tmp_path`; `extra` on top."""
    merged = {**variables, "mlflow_client_env_file": str(tmp_path / "client.env"),
              "monitoring_scrape_config_dir": str(tmp_path / "monitoring"), **extra}  # fmt: skip
    return play(ROOT / "playbooks" / name, *args, extra=merged, tmp_path=tmp_path)
