"""What role mlflow_k8s needs to deploy an older MLflow release and to upgrade from it, without a cluster.

- the older releases' pinned images (images/mlflow/releases/) hold what the role relies on;
- an older release is rendered with only the server options it knows and the basic-auth admin where it reads it;
- the migration Job's script makes a new database's tables and migrates an existing one, run here with the
  deployed release's MLflow against SQLite;
- files/mlflow_backup.py's `schema` report (what decides a stop-the-world upgrade) computed from the deployed
  release's own migration scripts: the chain from each older head, an unknown (newer) revision, the 3.13 auth
  migration that drops NO_PERMISSIONS denies.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from harness.ansible import ROOT
from tests.unit.test_mlflow_k8s_render import BASE, EVERYTHING, MLFLOW_PYTHON, by_kind, render

RELEASES = ROOT / "images" / "mlflow" / "releases"


def test_every_older_release_pins_what_the_role_relies_on():
    releases = sorted(p for p in RELEASES.iterdir() if p.is_dir())
    assert [p.name for p in releases] == ["2.22.5", "3.10.1"]
    for release in releases:
        pins = (release / "requirements.txt").read_text().splitlines()
        assert f"mlflow=={release.name}" in pins
        for package in ("psycopg2-binary==", "boto3==", "prometheus_flask_exporter==", "Flask-WTF==", "alembic=="):
            assert any(line.startswith(package) for line in pins), (release.name, package)
        (sqlalchemy,) = [line for line in pins if line.startswith("SQLAlchemy==")]
        assert sqlalchemy.startswith("SQLAlchemy==2.0."), sqlalchemy


def server(files: dict) -> tuple[list[str], str]:
    (deployment,) = by_kind(files, "Deployment")
    (secret,) = by_kind(files, "Secret")
    ini = secret.get("stringData", {}).get("basic_auth.ini") or base64.b64decode(secret["data"]["basic_auth.ini"])
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"], str(ini)


@pytest.mark.parametrize("version", ["2.22.5", "3.10.1"])
def test_an_older_release_gets_only_the_options_it_knows(tmp_path, version):
    proc, files = render(tmp_path / version, {**EVERYTHING, "mlflow_k8s_version": version})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args, ini = server(files)
    # --allowed-hosts came with MLflow 3.5.0; before 3.17 the admin is read from the ini only.
    assert any(a.startswith("--allowed-hosts=") for a in args) == (version != "2.22.5"), args
    assert "admin_username = admin" in ini and f"admin_password = {EVERYTHING['mlflow_k8s_auth_admin_password']}" in ini
    (deployment,) = by_kind(files, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/carbon254/mlflow:{version}"


def test_the_current_release_keeps_the_admin_out_of_the_ini(tmp_path):
    proc, files = render(tmp_path, EVERYTHING)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args, ini = server(files)
    assert any(a.startswith("--allowed-hosts=") for a in args)
    assert "admin_password" not in ini


def migrate_script(tmp_path: Path) -> str:
    proc, files = render(tmp_path, BASE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (job,) = [
        j for j in by_kind(files, "Job") if j["metadata"]["labels"]["app.kubernetes.io/component"] == "db-migration"
    ]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-c"]
    return command[2]


def test_the_migration_job_makes_a_new_database_and_migrates_an_existing_one(tmp_path):
    script, db = migrate_script(tmp_path), tmp_path / "mlflow.db"
    env = {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{db}", "PATH": f"{MLFLOW_PYTHON.parent}:/usr/bin:/bin",
           "HOME": str(tmp_path)}  # fmt: skip
    first = subprocess.run([str(MLFLOW_PYTHON), "-c", script], env=env, capture_output=True, text=True, timeout=300,
                           check=False)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    assert "created MLflow's tables in the new database" in first.stdout
    again = subprocess.run([str(MLFLOW_PYTHON), "-c", script], env=env, capture_output=True, text=True, timeout=300,
                           check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "created" not in again.stdout  # the second time it is `mlflow db upgrade`, with nothing to do


def pending(store: str, revision: list[str]) -> dict:
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT / 'roles/mlflow_k8s/files')!r}); import mlflow_backup as b; "
        f"print(json.dumps(b.pending({store!r}, {revision!r})))"
    )
    proc = subprocess.run([str(MLFLOW_PYTHON), "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_schema_report_knows_each_older_head_and_what_would_run():
    heads = {"tracking": "dc11669786a5", "auth": "f1a2b3c4d5e6"}  # 3.17.2's (docs/research/mlflow-migrations.md)
    from_2x = pending("tracking", ["0584bdc529eb"])  # 2.22.5's head
    assert from_2x["head"] == heads["tracking"] and from_2x["known"] and len(from_2x["pending"]) == 39
    assert from_2x["pending"][0] == "400f98739977" and from_2x["pending"][-1] == heads["tracking"]
    from_310 = pending("tracking", ["1b5f0d9ad7c1"])
    assert from_310["known"] and len(from_310["pending"]) == 18
    assert pending("tracking", [heads["tracking"]])["pending"] == []
    assert pending("tracking", [])["pending"] == []  # a new database: nothing runs under a server
    newer = pending("tracking", ["ffffffffffff"])
    assert newer["known"] is False and newer["pending"] == []
    # 3.10.1's auth database: the 3.13 migration that drops NO_PERMISSIONS would run (the deny report's trigger).
    auth = pending("auth", ["2ed73881770d"])
    assert auth["head"] == heads["auth"] and "e5f6a7b8c9d0" in auth["pending"]
    # An auth database from before 3.6 migrated on: the alembic_version_auth revision (listed last) counts.
    assert pending("auth", ["8606fa83a998", heads["auth"]])["pending"] == []
