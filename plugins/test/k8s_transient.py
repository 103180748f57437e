# Copyright: (c) 2026, carbon254 platform engineering <platform@254carbon.com>
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0.txt)
"""Test ``k8s_transient``: a kubernetes.core module result that failed for a reason worth retrying."""

from __future__ import annotations

from ansible_collections.carbon254.mlflow.plugins.module_utils.k8s_retry import transient_result


class TestModule:
    """Kubernetes API tests for carbon254.mlflow roles."""

    def tests(self) -> dict:
        return {"k8s_transient": transient_result}
