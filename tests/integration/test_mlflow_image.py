"""The MLflow image the collection deploys, in the Kubernetes sandbox: the one podman built from
images/mlflow/Containerfile, with the MLflow release the collection pins, as the Containerfile's non-root user on a
read-only root filesystem. (What the role does with it: test_mlflow_k8s.py.)"""

from __future__ import annotations

import time
import urllib.error
import uuid

import pytest

from harness.ansible import MLFLOW_IMAGE, MLFLOW_VERSION, ROOT
from harness.kube import api, delete_namespace, kubectl

pytestmark = pytest.mark.integration
IMAGE = MLFLOW_IMAGE


def test_the_node_runs_the_image_built_from_the_containerfile(sandbox_facts):
    """The image the role deploys is the one podman built from images/mlflow/Containerfile: MLflow of the pinned
    version, as the Containerfile's non-root user, on a read-only root filesystem."""
    pinned = [line for line in (ROOT / "images" / "mlflow" / "requirements.txt").read_text().splitlines()
              if line.startswith("mlflow==")]  # fmt: skip
    assert pinned == [f"mlflow=={MLFLOW_VERSION}"]
    ns = f"image-{uuid.uuid4().hex[:8]}"
    code = "import os, mlflow; print(os.getuid(), mlflow.__version__); open('/probe', 'w')"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "probe", "image": IMAGE, "imagePullPolicy": "Never", "command": ["python", "-c", code],
               "securityContext": {"readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                   "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}  # fmt: skip
    try:
        api(sandbox_facts, "/api/v1/namespaces", "POST", {"metadata": {"name": ns}})
        deadline = time.monotonic() + 120
        while True:  # pods are admitted once the namespace's default ServiceAccount exists
            try:
                api(sandbox_facts, f"/api/v1/namespaces/{ns}/pods", "POST", pod)
                break
            except urllib.error.HTTPError as exc:
                assert exc.code == 403 and time.monotonic() < deadline, exc.read()
                time.sleep(0.5)
        while (phase := api(sandbox_facts, f"/api/v1/namespaces/{ns}/pods/probe")["status"].get("phase")) not in (
            "Succeeded", "Failed"):  # fmt: skip
            assert time.monotonic() < deadline, phase
            time.sleep(1)
        logs = kubectl(sandbox_facts, "logs", "-n", ns, "probe").stdout
        # uid 10001 from the Containerfile's USER, MLflow 3.17.2, and the root filesystem refused the write.
        assert f"10001 {MLFLOW_VERSION}" in logs and "Read-only file system" in logs, logs
    finally:
        delete_namespace(sandbox_facts, ns)
