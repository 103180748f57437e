"""Every version the sandbox builds or runs, and where the builds live: the one place to change a pin.

The other modules import from here and never from each other's constants (kind keeps its pins in
pkg/build/nodeimage/defaults.go the same way); sandbox/build.py builds the binaries, sandbox/images.py the images,
and the CLI composes the two.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from .config import REPO_ROOT

# Builds are cached outside any checkout, keyed by their inputs: every clone on the machine finds them.
OPT = Path(os.environ.get("SANDBOX_OPT_PREFIX", "/opt/carbon254-sandbox"))
IMAGES = OPT / "images"
PODMAN_ROOT = OPT / "podman"

# Our Go program on the pinned k8s.io/kubernetes release (its go.mod holds that pin): every control-plane and node
# component, each a symlink to it (dispatch on argv[0]).
MODULE = REPO_ROOT / "sandbox" / "cluster"
COMPONENTS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl", "etcd"]
CNI_PLUGINS = "github.com/containernetworking/plugins"
CNI_VERSION = "v1.10.0"
CNI_PACKAGES = ["plugins/main/bridge", "plugins/main/loopback", "plugins/ipam/host-local", "plugins/meta/portmap"]
CONTAINERD = "github.com/containerd/containerd/v2"
CONTAINERD_VERSION = "v2.4.2"
# Prometheus itself (Debian's 2.42 has no Kubernetes service discovery): the module's v0.3MM.P tags are release
# 3.MM.P. The monitoring tests run it as a pod, discovering MLflow's pods through the API server.
PROMETHEUS = "github.com/prometheus/prometheus"
PROMETHEUS_VERSION = "v0.316.0"
PROMETHEUS_RELEASE = "3.16.0"
# The Prometheus Operator release the monitoring tests run: its CRDs (example/prometheus-operator-crd in its module),
# the operator and its config reloader (cmd/operator, cmd/prometheus-config-reloader).
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.93.0"
# The two modules nested in it: its go.mod points them at subdirectories a module zip leaves out (so `go install
# ...@version` refuses it); the build takes them from the module proxy at the same version.
PROMETHEUS_OPERATOR_NESTED = ("pkg/apis/monitoring", "pkg/client")
# kube-state-metrics, for the dashboard's replica and restart panels and the alerts that read its series.
KUBE_STATE_METRICS = "k8s.io/kube-state-metrics/v2"
KUBE_STATE_METRICS_VERSION = "v2.18.0"

# The images, all built here (no registry is reachable).
MLFLOW_CONTEXT = REPO_ROOT / "images" / "mlflow"
BASE_SCRIPT = REPO_ROOT / "images" / "python-base" / "build.sh"
BASE_IMAGE = "localhost/carbon254/python:3.11-bookworm"
PAUSE_IMAGE = "localhost/carbon254/pause:1"
TESTTOOL_IMAGE = "localhost/carbon254/testtool:1"
PROMETHEUS_IMAGE = f"localhost/carbon254/prometheus:{PROMETHEUS_RELEASE}"
PROMETHEUS_OPERATOR_IMAGE = f"localhost/carbon254/prometheus-operator:{PROMETHEUS_OPERATOR_VERSION}"
CONFIG_RELOADER_IMAGE = f"localhost/carbon254/prometheus-config-reloader:{PROMETHEUS_OPERATOR_VERSION}"
KUBE_STATE_METRICS_IMAGE = f"localhost/carbon254/kube-state-metrics:{KUBE_STATE_METRICS_VERSION}"
# Older MLflow releases for the upgrade tests: images/mlflow/releases/<version>/requirements.txt each, built from the
# same Containerfile with that directory as the context.
MLFLOW_RELEASES = MLFLOW_CONTEXT / "releases"


def older_mlflow_images() -> dict[str, Path]:
    """ghcr.io/carbon254/mlflow:<version> -> its build context, for every older release pinned under releases/."""
    return {
        f"ghcr.io/carbon254/mlflow:{d.name}": d
        for d in sorted(MLFLOW_RELEASES.iterdir())
        if (d / "requirements.txt").is_file()
    }


# Images only some tests run (monitoring, upgrades): `up` leaves them out and those tests import them.
ON_DEMAND = frozenset(
    {
        PROMETHEUS_IMAGE,
        PROMETHEUS_OPERATOR_IMAGE,
        CONFIG_RELOADER_IMAGE,
        KUBE_STATE_METRICS_IMAGE,
        *older_mlflow_images(),
    }
)


@cache
def mlflow_version() -> str:
    """The MLflow release the collection deploys: the one images/mlflow/requirements.txt pins (the role's default
    mlflow_k8s_version is the same; tests/unit/test_mlflow_k8s_render.py checks)."""
    pinned = re.search(r"^mlflow==(\S+)$", (MLFLOW_CONTEXT / "requirements.txt").read_text(), re.MULTILINE)
    if not pinned:
        raise ValueError("images/mlflow/requirements.txt pins no mlflow==<version>")
    return pinned.group(1)


def mlflow_image() -> str:
    """The image the role deploys by default: ghcr.io/carbon254/mlflow:<mlflow_version()>."""
    return f"ghcr.io/carbon254/mlflow:{mlflow_version()}"
