"""No secret where operators look: site.yml and verify.yml at -vvv, the objects in the cluster other than Secrets.

On the converged demo (the conftest's `make demo`); teardown.yml at -vvv is checked by the conftest when it removes
the demo (`make demo-down`). The values are the sandbox inventory's own, as site.yml resolves them. The S3 access key
ID is not among them: it is an identifier that S3 itself puts in the clear (every SigV4 Authorization header, the
X-Amz-Credential of each presigned URL MLflow hands to clients); it is kept in the Secret beside its secret key all
the same (docs/security.md).
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from harness.ansible import BIN, ROOT
from harness.kube import api
from tests.demo.helpers import recap_changed, secret_hits

pytestmark = pytest.mark.integration

NAMESPACE = "mlflow"  # inventories/sandbox: mlflow_namespace


def test_site_and_verify_at_vvv_print_no_secret(demo):
    assert demo["proc"].returncode == 0, "make demo failed (see test_demo.py)"
    secrets = demo["secrets"]
    assert len(secrets) >= 5 and all(len(value) >= 12 for value in secrets.values()), sorted(secrets)
    env = {**demo["env"], "ANSIBLE_VERBOSITY": "3"}
    for playbook in ("playbooks/site.yml", "playbooks/verify.yml"):
        proc = subprocess.run([str(BIN / "ansible-playbook"), playbook, "-i", "inventories/sandbox"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output[-3000:]
        # -vvv really was on: every module's arguments are printed, where a secret would show.
        assert '"module_args"' in output or "'module_args'" in output, output[-2000:]
        assert secret_hits(output, secrets) == [], playbook
        if playbook == "playbooks/site.yml":
            assert recap_changed(proc) == 0, output[-3000:]


def test_configmaps_and_pod_templates_hold_no_secret(demo):
    assert demo["proc"].returncode == 0, "make demo failed (see test_demo.py)"
    facts = json.loads((demo["state"] / "facts.json").read_text())
    found = {}
    for path in (f"/api/v1/namespaces/{NAMESPACE}/configmaps", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
                 f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs",
                 f"/api/v1/namespaces/{NAMESPACE}/pods", f"/api/v1/namespaces/{NAMESPACE}/services"):  # fmt: skip
        items = api(facts, path)["items"]
        found[path] = len(items)
        assert secret_hits(json.dumps(items), demo["secrets"]) == [], path
    # The reads found what there is to read (a deployment with its config, pods, the migration jobs).
    assert all(found[path] > 0 for path in found if "services" not in path), found
    # ... while the Secrets do hold them, decoded: the same comparison finds what is there.
    decoded = [base64.b64decode(value).decode(errors="replace")
               for item in api(facts, f"/api/v1/namespaces/{NAMESPACE}/secrets")["items"]
               for value in (item.get("data") or {}).values()]  # fmt: skip
    assert {"mlflow_db_password", "mlflow_s3_secret_key"} <= set(secret_hits("\n".join(decoded), demo["secrets"]))
