"""Every MLflow client configuration the collection hands out keeps clients off presigned S3 URLs by default.

MLflow 3.17.2 advertises presigned transfers whenever it proxies an S3 store, and its client then downloads straight
from the S3 endpoint the server uses, which clients outside the cluster cannot reach (docs/artifacts.md). The
collection's answer is two client variables; these tests render each configuration (the env file verify.yml
writes, DolphinScheduler's env, the service catalog, the AWX credential type's injectors) and also break the
setting on purpose (mlflow_client_presigned_transfers: true) to show the check notices when the variables go.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from harness.ansible import BIN, INVENTORY, ROOT, ansible_env
from harness.client import read_env_file

PLAYBOOK = ROOT / "tests" / "unit" / "playbooks" / "client_settings.yml"
PROXIED = {"MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"}


def render(tmp_path: Path, **extra) -> dict[str, object]:
    out = tmp_path / "out"
    out.mkdir()
    variables = {"out_dir": str(out), "mlflow_k8s_auth_enabled": True, "mlflow_auth_admin_password": "pw-0123456789",
                 **extra}  # fmt: skip
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(PLAYBOOK), "-e",
                           json.dumps(variables)], cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {
        "client": read_env_file(out / "mlflow-client.env"),
        "dolphinscheduler": read_env_file(out / "dolphinscheduler.env"),
        "catalog": json.loads((out / "service-catalog.json").read_text())["client_environment"],
    }


def awx_client_env(presigned: bool) -> dict[str, str]:
    """The env the AWX credential type injects, evaluated as AWX does: Jinja over the credential's inputs."""
    types = yaml.safe_load((ROOT / "awx" / "credential_types.yml").read_text())["awx_credential_types"]
    (client,) = [t for t in types if t["name"] == "carbon254 MLflow tracking client"]
    # configure_awx.yml passes the file through Ansible's templating first ({{ '{{' }} -> {{).
    outer = jinja2.Environment(autoescape=False)  # noqa: S701 - environment variables, not HTML
    inputs = {"tracking_uri": "https://mlflow.example.test", "username": "u", "password": "p",
              "presigned_transfers": presigned}  # fmt: skip
    return {name: outer.from_string(outer.from_string(value).render()).render(**inputs)
            for name, value in client["injectors"]["env"].items()}  # fmt: skip


def test_by_default_every_client_configuration_keeps_artifacts_on_the_proxied_path(tmp_path):
    rendered = render(tmp_path)
    for name in ("client", "dolphinscheduler"):
        assert {key: rendered[name].get(key) for key in PROXIED} == PROXIED, (name, rendered[name])
    assert rendered["catalog"] == PROXIED
    assert rendered["client"]["MLFLOW_TRACKING_URI"] == "https://mlflow.example.test"
    assert {key: awx_client_env(presigned=False)[key] for key in PROXIED} == PROXIED


@pytest.mark.parametrize("setting", [True, "true"])
def test_the_check_notices_when_the_setting_is_broken(tmp_path, setting):
    """mlflow_client_presigned_transfers: true (the operator says clients reach S3): the variables are gone."""
    rendered = render(tmp_path, mlflow_client_presigned_transfers=setting)
    for name in ("client", "dolphinscheduler"):
        assert not set(PROXIED) & set(rendered[name]), (name, rendered[name])
    assert rendered["catalog"] == {}
    assert awx_client_env(presigned=True)["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] == "true"
