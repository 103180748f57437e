#!/usr/bin/env bash
# Redraw docs/images/mlflow-dashboard.png: tests/integration/test_monitoring_prometheus.py against a sandbox of its
# own (ports and pod network apart from the others), with a few minutes of traffic, every dashboard panel drawn by
# matplotlib from the real Prometheus' answers to the panel's query. About 10 minutes. Run after `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
export SANDBOX_STATE_DIR="${SANDBOX_STATE_DIR:-$PWD/.cache/picture-sandbox}" SANDBOX_PG_PORT=27732 SANDBOX_S3_PORT=27733 \
  SANDBOX_K8S_PORT=27743 SANDBOX_WEED_PORT_BASE=27750 SANDBOX_POD_CIDR=10.219.0.0/16
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$PWD/.cache/collections" ANSIBLE_ROLES_PATH="$PWD/roles"
export MLFLOW_DASHBOARD_PICTURE=docs/images/mlflow-dashboard.png
mkdir -p .cache/collections/ansible_collections/carbon254 && ln -sfn "$PWD" .cache/collections/ansible_collections/carbon254/mlflow
exec python -m pytest -q -p no:cacheprovider tests/integration/test_monitoring_prometheus.py -k "picture or targets"
