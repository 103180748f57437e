"""The k8s_transient test and the k8s_read lookup: which Kubernetes API failures are retried, how often, and what
the last one says. Exceptions are the kubernetes client's own classes, as kubernetes.core raises them."""

from __future__ import annotations

from typing import ClassVar

import pytest
import urllib3
from ansible.errors import AnsibleError
from ansible_collections.carbon254.mlflow.plugins.lookup import k8s_read
from ansible_collections.carbon254.mlflow.plugins.module_utils.k8s_retry import transient_exception, transient_result
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import api_exception


def api_error(status: int, headers: dict | None = None) -> Exception:
    """What the dynamic client raises for an answer with `status` (kubernetes.dynamic.exceptions.api_exception)."""
    exc = ApiException(status=status, reason="x")
    exc.body = b'{"kind":"Status","code":%d}' % status
    exc.headers = headers or {}
    return api_exception(exc)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_overload_and_unavailability_are_transient(status):
    assert transient_exception(api_error(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_client_errors_are_not(status):
    assert not transient_exception(api_error(status))


def test_connection_failures_are_transient_other_errors_not():
    refused = urllib3.exceptions.MaxRetryError(None, "/api", reason=ConnectionRefusedError(111, "Connection refused"))
    assert transient_exception(refused)
    assert transient_exception(ConnectionResetError(104, "reset"))
    assert not transient_exception(ValueError("Invalid kube-config file. No configuration found."))
    assert not transient_exception(KeyError("kind"))


def test_module_results():
    # A kubernetes.core module's failure (runner.run_module): reason from the cause, the Status body in msg.
    assert transient_result({"failed": True, "reason": "Service Unavailable", "msg": "Failed to patch object"})
    assert transient_result({"failed": True, "msg": "Failed to retrieve requested object: b'{\"code\":503}'"})
    assert transient_result({"failed": True, "msg": "HTTPSConnectionPool(host='127.0.0.1', port=6443): Max retries "
                                                    "exceeded with url: /api (Caused by ... Connection refused)"})  # fmt: skip
    assert not transient_result({"failed": True, "reason": "Forbidden", "msg": "b'{\"code\":403}'"})
    assert not transient_result({"failed": True, "reason": "Unprocessable Entity", "msg": "field is immutable"})
    assert not transient_result({"changed": False, "reason": "Service Unavailable"})  # did not fail
    assert not transient_result("not a result")


class Scripted:
    """Stands in for kubernetes.core's KubernetesLookup: raises the scripted errors in turn, then answers."""

    calls: ClassVar[list[dict]] = []
    script: ClassVar[list[Exception]] = []

    def run(self, terms, variables=None, **kwargs):
        Scripted.calls.append(kwargs)
        if Scripted.script:
            raise Scripted.script.pop(0)
        return [{"kind": "Namespace", "metadata": {"name": kwargs.get("resource_name")}}]


@pytest.fixture
def lookup(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(k8s_read, "KubernetesLookup", Scripted)
    monkeypatch.setattr(k8s_read.time, "sleep", sleeps.append)
    Scripted.calls, Scripted.script = [], []
    return k8s_read.LookupModule(), sleeps


def test_transient_errors_are_retried_with_the_delay_and_retry_after(lookup):
    module, sleeps = lookup
    Scripted.script = [api_error(503), api_error(429, {"Retry-After": "7"}), urllib3.exceptions.ProtocolError("reset")]
    found = module.run([], kind="Namespace", resource_name="mlflow", retries=5, delay=2)
    assert found == [{"kind": "Namespace", "metadata": {"name": "mlflow"}}]
    assert sleeps == [2, 7, 2]
    assert len(Scripted.calls) == 4
    assert all("retries" not in call and "delay" not in call for call in Scripted.calls)  # not passed on


def test_the_last_transient_error_fails_naming_the_object_and_the_tries(lookup):
    module, sleeps = lookup
    Scripted.script = [api_error(503) for _ in range(4)]
    with pytest.raises(AnsibleError) as failed:
        module.run([], kind="ConfigMap", namespace="mlflow", resource_name="mlflow-config", retries=2, delay=1)
    assert "did not answer reading ConfigMap mlflow/mlflow-config: HTTP 503 on each of 3 tries" in str(failed.value)
    assert sleeps == [1, 1]


def test_other_errors_fail_at_once(lookup):
    module, sleeps = lookup
    Scripted.script = [api_error(403)]
    with pytest.raises(Exception) as failed:
        module.run([], kind="Secret", namespace="mlflow", resource_name="s", retries=5, delay=1)
    assert getattr(failed.value, "status", None) == 403
    assert sleeps == [] and len(Scripted.calls) == 1
