"""The collection builds, installs into an empty collections path, and its roles are usable from there."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=300)
    assert proc.returncode == 0, f"{argv}: {proc.stdout}\n{proc.stderr}"
    return proc


def test_build_install_and_use(tmp_path: Path):
    collections = tmp_path / "collections"
    # Only the built and installed copy may be visible, not this checkout (make links it for the other stages).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)

    run([str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT), "--output-path", str(tmp_path)], env=env)
    [tarball] = tmp_path.glob("carbon254-mlflow-*.tar.gz")

    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "roles/postgres_init/meta/argument_specs.yml" in names
    assert "roles/minio_bucket/tasks/main.yml" in names
    for excluded in ("sandbox", "tests", "molecule", ".ci", "Makefile", ".venv", ".sandbox", "bench", "harness"):
        assert not [n for n in names if n == excluded or n.startswith(excluded + "/")], excluded

    # --no-deps: the dependencies come from the `ansible` package already installed (Galaxy is unreachable).
    run(
        [str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(collections), "--no-deps"],
        env=env,
    )
    installed = collections / "ansible_collections" / "carbon254" / "mlflow"
    assert (installed / "MANIFEST.json").exists()

    listing = run([str(BIN / "ansible-galaxy"), "collection", "list", "carbon254.mlflow"], env=env).stdout
    assert "carbon254.mlflow" in listing and "0.1.0" in listing and str(collections) in listing

    roles = run([str(BIN / "ansible-doc"), "-t", "role", "-l", "carbon254.mlflow"], env=env).stdout
    assert "carbon254.mlflow.postgres_init" in roles and "carbon254.mlflow.minio_bucket" in roles
    doc = run(
        [str(BIN / "ansible-doc"), "-t", "role", "carbon254.mlflow.postgres_init"], env={**env, "ANSIBLE_NOCOLOR": "1"}
    ).stdout
    assert f"({installed})" in doc.splitlines()[0]  # documented from the installed copy
    assert "postgres_init_db_password" in doc
    run([str(BIN / "ansible-doc"), "-l", "carbon254.mlflow"], env=env)

    # The installed role runs: argument validation rejects a bad port before any connection.
    playbook = tmp_path / "use.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n"
        "    - role: carbon254.mlflow.postgres_init\n      postgres_init_login_port: not-a-port\n"
    )
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "argument 'postgres_init_login_port' is of type" in proc.stdout + proc.stderr
