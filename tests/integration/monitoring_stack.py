"""The monitoring stack users run beside MLflow, from the upstream releases' own manifests, for the sandbox's cluster.

- the Prometheus Operator: its release's RBAC and Deployment (example/rbac/prometheus-operator in its Go module),
  with our locally built image and config-reloader image put in, as one would point them at a private registry;
- a `Prometheus` object the operator reconciles into a StatefulSet, with the release's Prometheus RBAC
  (example/rbac/prometheus), selecting ServiceMonitors and PrometheusRules by the labels kube-prometheus-stack uses;
- kube-state-metrics from its release's examples/standard, and ServiceMonitors for it and for the kubelet's
  cAdvisor endpoint (the operator keeps the kube-system/kubelet Service's endpoints), as kube-prometheus has them.

Everything namespaced goes into one namespace of the test's; the cluster-scoped objects (ClusterRoles and their
bindings) get the test's suffix, so that a cluster's own operator installation is neither changed nor removed.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from sandbox.build import kube_state_metrics_module, prometheus_operator_module
from sandbox.pins import (
    CONFIG_RELOADER_IMAGE,
    KUBE_STATE_METRICS_IMAGE,
    PROMETHEUS_IMAGE,
    PROMETHEUS_OPERATOR_IMAGE,
    PROMETHEUS_RELEASE,
)

# The upstream manifests' cluster-scoped names (ClusterRole and ClusterRoleBinding each), before the suffix.
CLUSTER_SCOPED = ("prometheus-operator", "prometheus", "kube-state-metrics")
PROMETHEUS_NAME = "k8s"
NAMESPACED_KINDS = {"ServiceAccount", "Deployment", "Service", "Prometheus", "ServiceMonitor"}


def _load(directory: Path, *names: str) -> list[dict]:
    return [doc for name in names for doc in yaml.safe_load_all((directory / name).read_text()) if doc]


def _relocate(objects: list[dict], ns: str, suffix: str) -> list[dict]:
    """The upstream objects with their namespace (and the namespace of every binding's subject) set to `ns`, and
    the suffix on the ClusterRoles' names (and the bindings' references to them)."""
    out = copy.deepcopy(objects)
    for obj in out:
        if obj["kind"] in NAMESPACED_KINDS:
            obj["metadata"]["namespace"] = ns
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            obj["metadata"]["name"] += f"-{suffix}"
        if obj["kind"] == "ClusterRoleBinding":
            obj["roleRef"]["name"] += f"-{suffix}"
        for subject in obj.get("subjects", []):
            subject["namespace"] = ns
    return out


def _image(deployment: dict, image: str) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["image"] = image
    container["imagePullPolicy"] = "Never"
    return container


def operator_objects(ns: str, suffix: str) -> list[dict]:
    rbac = prometheus_operator_module() / "example" / "rbac" / "prometheus-operator"
    objects = _relocate(_load(rbac, "prometheus-operator-service-account.yaml", "prometheus-operator-cluster-role.yaml",
                              "prometheus-operator-cluster-role-binding.yaml",
                              "prometheus-operator-deployment.yaml"), ns, suffix)  # fmt: skip
    for obj in objects:
        if obj["kind"] == "Deployment":
            container = _image(obj, PROMETHEUS_OPERATOR_IMAGE)
            args = [a for a in container["args"] if not a.startswith("--prometheus-config-reloader=")]
            container["args"] = [*args, f"--prometheus-config-reloader={CONFIG_RELOADER_IMAGE}"]
    return objects


def prometheus_objects(ns: str, suffix: str, selector: dict[str, str], interval: str = "5s") -> list[dict]:
    rbac = prometheus_operator_module() / "example" / "rbac" / "prometheus"
    objects = _relocate(_load(rbac, "prometheus-service-account.yaml", "prometheus-cluster-role.yaml",
                              "prometheus-cluster-role-binding.yaml"), ns, suffix)  # fmt: skip
    pod_labels = {"operator.prometheus.io/name": PROMETHEUS_NAME}
    objects += [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": {"name": PROMETHEUS_NAME, "namespace": ns},
         "spec": {"image": PROMETHEUS_IMAGE, "version": f"v{PROMETHEUS_RELEASE}", "replicas": 1,
                  "serviceAccountName": "prometheus", "scrapeInterval": interval, "evaluationInterval": interval,
                  "serviceMonitorSelector": {"matchLabels": selector}, "serviceMonitorNamespaceSelector": {},
                  "ruleSelector": {"matchLabels": selector}, "ruleNamespaceSelector": {},
                  "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534},
                  "resources": {"limits": {"memory": "512Mi"}}}},
        # The operator makes a headless Service (prometheus-operated); users give the UI and API a Service of theirs.
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "prometheus", "namespace": ns},
         "spec": {"selector": pod_labels, "ports": [{"name": "web", "port": 9090, "targetPort": "web"}]}},
    ]  # fmt: skip
    return objects


def kube_state_metrics_objects(ns: str, suffix: str) -> list[dict]:
    standard = kube_state_metrics_module() / "examples" / "standard"
    objects = _relocate(_load(standard, "service-account.yaml", "cluster-role.yaml", "cluster-role-binding.yaml",
                              "deployment.yaml", "service.yaml"), ns, suffix)  # fmt: skip
    for obj in objects:
        if obj["kind"] == "Deployment":
            _image(obj, KUBE_STATE_METRICS_IMAGE)
    return objects


def service_monitors(ns: str, selector: dict[str, str], interval: str = "5s") -> list[dict]:
    """kube-state-metrics' and the kubelet's cAdvisor endpoint, with the labels the series carry themselves kept."""
    return [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
         "metadata": {"name": "kube-state-metrics", "namespace": ns, "labels": selector},
         "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "kube-state-metrics"}},
                  "endpoints": [{"port": "http-metrics", "interval": interval, "honorLabels": True}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
         "metadata": {"name": "kubelet", "namespace": ns, "labels": selector},
         "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "kubelet"}},
                  "namespaceSelector": {"matchNames": ["kube-system"]},
                  "endpoints": [{"port": "https-metrics", "scheme": "https", "path": "/metrics/cadvisor",
                                 "interval": interval, "honorLabels": True,
                                 "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                                 "tlsConfig": {"insecureSkipVerify": True}}]}},
    ]  # fmt: skip


def as_list(objects: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": objects}
